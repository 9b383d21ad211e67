//! The last step of restart reconciliation: whatever is on the machine
//! with no row in the database is released. Each kind is found from the
//! daemon's own directories or from the processes that name them, never
//! by guessing at things another daemon on the same machine may own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use vordr_shim_api::POD_INIT_VERB;

use crate::pod::cleanup;
use crate::recovery::Report;
use crate::state::Runtime;

/// Entry names in `dir` (nothing when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A running process: its pid, command line and working directory.
struct Proc {
    pid: i32,
    args: Vec<String>,
    cwd: PathBuf,
}

fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for name in names(Path::new("/proc")) {
        let Ok(pid) = name.parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // A deleted working directory reads as "<path> (deleted)".
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|p| {
                let s = p.to_string_lossy();
                PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s))
            })
            .unwrap_or_default();
        out.push(Proc { pid, args, cwd });
    }
    out
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Whether `name` is a container or pod id as Vordr makes them.
fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the database knows, and what runs, at the sweep.
struct Known<'a> {
    pods: &'a [vordr_store::PodRecord],
    pod_ids: HashSet<&'a str>,
    container_ids: HashSet<&'a str>,
    procs: Vec<Proc>,
}

/// Releases everything with no row; counts go into `report`.
pub async fn sweep(rt: &Runtime, report: &mut Report) {
    let pods = match rt.store.list_pods() {
        Ok(p) => p,
        Err(e) => {
            report.errors.push(format!("listing pods: {e}"));
            return;
        }
    };
    let containers = match rt.store.list_containers() {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(format!("listing containers: {e}"));
            return;
        }
    };
    let known = Known {
        pods: &pods,
        pod_ids: pods.iter().map(|p| p.id.as_str()).collect(),
        container_ids: containers.iter().map(|c| c.id.as_str()).collect(),
        procs: tokio::task::spawn_blocking(processes)
            .await
            .unwrap_or_default(),
    };
    pod_inits(rt, &known, report);
    cni_attachments(rt, &known, report).await;
    pins_and_pod_files(rt, &known, report).await;
    containers_of_no_row(rt, &known, report).await;
    container_cgroups(&known, report).await;
    addresses(rt, &known, report);
}

/// Pod inits: of an unknown pod, or not the one the pod's pid file names.
fn pod_inits(rt: &Runtime, known: &Known<'_>, report: &mut Report) {
    let ns_root = rt.layout.namespaces_dir();
    for p in known
        .procs
        .iter()
        .filter(|p| p.args.iter().any(|a| a == POD_INIT_VERB))
    {
        let Some(dir) = flag(&p.args, "--pod").map(Path::new) else {
            continue;
        };
        if dir.parent() != Some(ns_root.as_path()) {
            continue; // another daemon's
        }
        let pod = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let recorded = crate::pod::init::recorded(&rt.layout, pod);
        if !known.pod_ids.contains(pod) || recorded != Some(p.pid) {
            report.orphan_inits += 1;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// CNI attachments of pods with no row (the cache says what ADD got).
/// (Also after a switch back to netavark: the cache outlives the driver.)
async fn cni_attachments(rt: &Runtime, known: &Known<'_>, report: &mut Report) {
    let cni_owned;
    let cni = match &rt.cni {
        Some(c) => c,
        None => {
            cni_owned = crate::net::cni::CniNetwork::new(&rt.config);
            &cni_owned
        }
    };
    for (id, _) in cni.cni.cached_attachments() {
        if known.pod_ids.contains(id.as_str()) {
            continue;
        }
        report.orphan_networks += 1;
        let netns = rt.layout.ns_pin(&id, "net");
        if let Err(e) = crate::net::cni::detach(cni, &id, &netns).await {
            report
                .errors
                .push(format!("orphan CNI attachment {id}: {e}"));
        }
    }

    // Spec 1.1 plugins also release what they hold for attachments no
    // longer in use (GC with the attachments still valid).
    if let Some(list) = rt.cni.as_ref().and_then(|c| c.current().ok()) {
        let valid: Vec<(String, String)> = cni
            .cni
            .cached_attachments()
            .into_iter()
            .filter(|(id, _)| known.pod_ids.contains(id.as_str()))
            .collect();
        if let Err(e) = cni.cni.gc(&list, &valid).await {
            report.errors.push(format!("CNI GC: {e}"));
        }
    }
}

/// Namespace pins (with the network attached in them), scratch
/// namespaces and pod files.
async fn pins_and_pod_files(rt: &Runtime, known: &Known<'_>, report: &mut Report) {
    for id in names(&rt.layout.namespaces_dir()) {
        if !known.pod_ids.contains(id.as_str()) {
            report.orphan_pins += 1;
            // Its network first, from the record kept beside the pins.
            if let Some(a) = cleanup::Attached::load(&rt.layout, &id) {
                report.orphan_networks += 1;
                if let Err(e) = cleanup::teardown_attached(rt, &a).await {
                    report.errors.push(format!("orphan network {id}: {e}"));
                    continue;
                }
            }
            if let Err(e) = cleanup::release_namespaces(rt, &id).await {
                report.errors.push(format!("orphan pins {id}: {e}"));
            }
        }
    }
    let scratch = rt.layout.teardown_ns_root();
    for id in names(&scratch) {
        report.orphan_scratch += 1;
        let dir = scratch.join(&id);
        let r = tokio::task::spawn_blocking(move || vordr_net::netns::release_dir(&dir)).await;
        if let Ok(Err(e)) = r {
            report.errors.push(format!("scratch namespace {id}: {e}"));
        }
    }
    // Idmap staging is released as soon as its create ends, and no create
    // runs yet: whatever is there was left by a crash.
    let idmap = rt.layout.idmap_root();
    for id in names(&idmap) {
        report.orphan_scratch += 1;
        let dir = idmap.join(&id);
        let r = tokio::task::spawn_blocking(move || crate::container::idmap::release(&dir)).await;
        if let Ok(Err(e)) = r {
            report.errors.push(format!("idmap staging {id}: {e}"));
        }
    }
    for id in names(&rt.layout.pods_dir()) {
        if !known.pod_ids.contains(id.as_str()) {
            report.orphan_files += 1;
            if let Err(e) = cleanup::remove_pod_files(rt, &id) {
                report.errors.push(format!("orphan files {id}: {e}"));
            }
        }
    }
}

/// Containers: shims (working in a bundle of ours), bundles with their
/// rootfs mounts, writable layers, image volumes (staged before the row is
/// written, so a crash can leave them alone).
async fn containers_of_no_row(rt: &Runtime, known: &Known<'_>, report: &mut Report) {
    let bundles = rt.layout.bundles_dir();
    let mut orphans: HashSet<String> = HashSet::new();
    for p in &known.procs {
        if p.cwd.parent() == Some(bundles.as_path()) {
            let id = p
                .cwd
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if is_id(id) && !known.container_ids.contains(id) {
                orphans.insert(id.to_string());
            }
        }
    }
    for dir in [
        bundles.clone(),
        rt.layout.containers_dir(),
        rt.layout.image_volumes_root(),
    ] {
        orphans.extend(
            names(&dir)
                .into_iter()
                .filter(|id| !known.container_ids.contains(id.as_str())),
        );
    }
    for id in orphans {
        report.orphan_containers += 1;
        let gone = crate::container::Gone {
            id: &id,
            shim_address: "",
            cgroup_parent: "",
        };
        if let Err(e) = crate::container::teardown(rt, &gone).await {
            report.errors.push(format!("orphan container {id}: {e}"));
        }
    }
}

/// Container cgroups (`vordr-<id>`, or `cri-vordr-<id>.scope` below a
/// slice) under pod cgroups of our own, in every hierarchy, v1 or v2
/// (kubelet gives every pod its own parent, and so does Vordr without
/// one; the shared default parent of older pods may hold other daemons'
/// containers and is left alone).
async fn container_cgroups(known: &Known<'_>, report: &mut Report) {
    tracing::info!(
        mode = crate::container::cgroup::mode::host().as_str(),
        "cgroup mode"
    );
    let mut stale = Vec::new();
    for pod in known
        .pods
        .iter()
        .filter(|p| !crate::container::cgroup::pod::is_shared(&p.cgroup_parent))
    {
        let rel = pod.cgroup_parent.trim_start_matches('/');
        for h in crate::container::cgroup::hierarchies() {
            for name in names(&h.join(rel)) {
                let scope = name
                    .strip_prefix(vordr_spec::cgroup::SCOPE_PREFIX)
                    .and_then(|n| n.strip_prefix('-')?.strip_suffix(".scope"));
                let Some(id) = scope.or_else(|| name.strip_prefix("vordr-")) else {
                    continue;
                };
                if is_id(id) && !known.container_ids.contains(id) {
                    stale.push(vordr_spec::cgroups_path(&pod.cgroup_parent, id));
                }
            }
        }
    }
    stale.sort();
    stale.dedup();
    for cg in stale {
        report.orphan_cgroups += 1;
        let shown = cg.display().to_string();
        match tokio::task::spawn_blocking(move || crate::container::cgroup::remove(&cg)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => report.errors.push(format!("orphan cgroup {shown}: {e}")),
            Err(e) => report.errors.push(format!("orphan cgroup {shown}: {e}")),
        }
    }
}

/// Addresses of pods with no row.
fn addresses(rt: &Runtime, known: &Known<'_>, report: &mut Report) {
    match rt.store.list_ip_allocations() {
        Ok(all) => {
            let mut holders: Vec<String> = all
                .into_iter()
                .map(|(_, _, pod)| pod)
                .filter(|p| !known.pod_ids.contains(p.as_str()))
                .collect();
            holders.sort();
            holders.dedup();
            for pod in holders {
                match rt.store.release_ips(&pod) {
                    Ok(n) => report.orphan_ips += n,
                    Err(e) => report.errors.push(format!("addresses of {pod}: {e}")),
                }
            }
        }
        Err(e) => report.errors.push(format!("listing addresses: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_flags() {
        assert!(is_id(&"a".repeat(64)));
        assert!(!is_id(&"a".repeat(63)));
        assert!(!is_id(&"g".repeat(64)));
        let args: Vec<String> = ["x", "--pod", "/run/vordr/ns/p", "--uid"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(flag(&args, "--pod"), Some("/run/vordr/ns/p"));
        assert_eq!(flag(&args, "--uid"), None);
        assert_eq!(flag(&args, "--gid"), None);
    }

    #[test]
    fn this_process_is_listed_with_its_working_directory() {
        let me = processes()
            .into_iter()
            .find(|p| p.pid == std::process::id() as i32)
            .expect("this process");
        assert_eq!(me.cwd, std::env::current_dir().unwrap());
        assert!(!me.args.is_empty());
    }
}
