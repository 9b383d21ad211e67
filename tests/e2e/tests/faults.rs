//! Fault injection: the daemon is killed (SIGKILL, from an env-guarded
//! crash point) at every step of a pod's and a container's life, then
//! restarted; kubelet's cleanup must then succeed and leave nothing
//! behind: no mounts, pins, veths, addresses, firewall rules, cgroups,
//! shims, pod inits, files or rows. A shim killed with kill -9 ends its
//! container. A bounded chaos run kills the daemon at random moments of a
//! lifecycle load with the same accounting at the end.

use std::time::{Duration, Instant};

use vordr_e2e::setup::{setup_full, Setup};
use vordr_e2e::*;

/// A cgroup parent of this test's own, so its container cgroups can be
/// counted (and the parent removed at the end).
fn cgroup_parent(s: &Setup) -> String {
    format!("/vordr-e2e-{}", s.d.bridge)
}

/// `vordr-<id>` cgroups under `parent` in any hierarchy.
fn cgroups_under(parent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let mut dirs = vec![h.path().join(parent.trim_start_matches('/'))];
        if h.path().join("cgroup.controllers").exists() {
            // cgroup v2 mounted at the top.
            dirs =
                vec![std::path::Path::new("/sys/fs/cgroup").join(parent.trim_start_matches('/'))];
        }
        for d in dirs {
            if let Ok(rd) = std::fs::read_dir(&d) {
                out.extend(
                    rd.flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with("vordr-"))
                        .map(|e| e.path().display().to_string()),
                );
            }
        }
    }
    out
}

/// Removes this test's cgroup parent from every hierarchy (it made them).
fn remove_parent(parent: &str) {
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(h.path().join(parent.trim_start_matches('/')));
    }
}

/// A host port of this test's own.
fn host_port(s: &Setup) -> i32 {
    let b =
        s.d.bridge
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    20000 + (b % 20000) as i32
}

fn pod(s: &Setup, name: &str, port: i32) -> cri::PodSandboxConfig {
    let mut cfg = s.pod_config(name);
    let linux = cfg.linux.get_or_insert_with(Default::default);
    linux.cgroup_parent = cgroup_parent(s);
    cfg.port_mappings.push(cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port: port,
        host_ip: "127.0.0.1".into(),
    });
    cfg
}

/// The container: shares the pod's PID namespace, so the pod gets its init.
fn container(s: &Setup) -> cri::ContainerConfig {
    let mut cfg = s.config("work", &["sleep", "3600"]);
    let sc = cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.namespace_options.as_mut().unwrap().pid = cri::NamespaceMode::Pod as i32;
    cfg
}

/// A whole lifecycle, every call checked; stops at the first error.
async fn lifecycle(s: &mut Setup, name: &str, port: i32) -> Result<(), tonic::Status> {
    let cfg = pod(s, name, port);
    let pod_id = run_pod(&mut s.c, cfg.clone()).await?;
    let id = s.create(&(pod_id.clone(), cfg), container(s)).await?;
    let rt = &mut s.c.runtime;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 0,
    })
    .await?;
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id,
    })
    .await?;
    Ok(())
}

/// What kubelet does for pods it no longer wants: stop and remove each,
/// and every container it lists. Each call must succeed.
async fn kubelet_cleanup(s: &mut Setup, context: &str) {
    for c in list_containers(&mut s.c).await {
        for stop in [true, false] {
            let r = if stop {
                s.c.runtime
                    .stop_container(cri::StopContainerRequest {
                        container_id: c.id.clone(),
                        timeout: 0,
                    })
                    .await
                    .map(|_| ())
            } else {
                s.c.runtime
                    .remove_container(cri::RemoveContainerRequest {
                        container_id: c.id.clone(),
                    })
                    .await
                    .map(|_| ())
            };
            r.unwrap_or_else(|e| panic!("{context}: container {}: {e}\n{}", c.id, s.d.log()));
        }
    }
    for p in list_pods(&mut s.c).await {
        s.c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{context}: StopPodSandbox {}: {e}\n{}", p.id, s.d.log()));
        s.c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{context}: RemovePodSandbox {}: {e}\n{}", p.id, s.d.log()));
    }
}

/// Nothing of any pod or container is left: rows included.
fn assert_clean(s: &Setup, context: &str) {
    let mut left = s.d.leftovers();
    // Port mappings name the pod's address and the host port, not the subnet.
    let prefix = s.d.subnet.trim_end_matches("0/24");
    let port = host_port(s);
    left.extend(
        s.d.firewall_rules_all()
            .into_iter()
            .filter(|r| {
                (r.contains(prefix) && !r.contains(&s.d.subnet))
                    || (port..port + 64).any(|p| r.contains(&format!("dport {p} ")))
            })
            .map(|r| format!("port mapping rule {r}")),
    );
    left.extend(
        cgroups_under(&cgroup_parent(s))
            .into_iter()
            .map(|c| format!("cgroup {c}")),
    );
    let db = rusqlite::Connection::open_with_flags(
        s.d.root.join("vordr.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    for table in ["pods", "containers"] {
        let n: i64 = db
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        if n > 0 {
            left.push(format!("{n} rows in {table}"));
        }
    }
    assert!(
        left.is_empty(),
        "{context}: left behind: {left:#?}\n{}",
        s.d.log()
    );
}

/// A daemon for these tests: no warm pool (its slots would count as
/// leftovers), the privileged profile (host ports).
async fn daemon(tag: &str) -> Option<Setup> {
    setup_full(tag, "pool_size = 0", PRIVILEGED).await
}

/// [`daemon`] with a pod `name` running the test container: (setup, pod
/// id, container id).
async fn running(tag: &str, name: &str) -> Option<(Setup, String, String)> {
    let mut s = daemon(tag).await?;
    let cfg = pod(&s, name, host_port(&s));
    let pod_id = run_pod(&mut s.c, cfg.clone()).await.unwrap();
    let id = s.run(&(pod_id.clone(), cfg), container(&s)).await;
    Some((s, pod_id, id))
}

/// kubelet's cleanup, then a clean node, then the test's cgroup parent goes.
async fn finish(s: &mut Setup, context: &str) {
    kubelet_cleanup(s, context).await;
    assert_clean(s, context);
    remove_parent(&cgroup_parent(s));
}

/// Restarts the daemon after a crash (without a crash point).
async fn restart(s: &mut Setup) {
    s.d.kill9();
    s.d.env.clear();
    s.d.spawn().await;
    s.c = s.d.client().await;
}

/// Crashes at each point in turn; after each, restart, clean up as kubelet
/// would, check the node is clean, then prove it still runs a whole
/// lifecycle with the same names.
async fn crash_at_each(tag: &str, points: &[&str]) {
    let Some(mut s) = daemon(tag).await else {
        return;
    };
    for (n, point) in points.iter().enumerate() {
        s.d.terminate();
        s.d.env = vec![(vordr_cri::faults::ENV.to_string(), point.to_string())];
        s.d.spawn().await;
        s.c = s.d.client().await;
        let name = format!("f{n}");
        let port = host_port(&s);
        let res = lifecycle(&mut s, &name, port).await;
        // The point was reached: the call failed and the daemon is dead.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.d.exited() {
            assert!(
                Instant::now() < deadline,
                "{point}: the daemon did not crash (lifecycle: {res:?})\n{}",
                s.d.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            res.is_err(),
            "{point}: the lifecycle finished after the crash"
        );
        restart(&mut s).await;
        kubelet_cleanup(&mut s, point).await;
        assert_clean(&s, point);
        lifecycle(&mut s, &name, port)
            .await
            .unwrap_or_else(|e| panic!("{point}: lifecycle after the crash: {e}\n{}", s.d.log()));
        assert_clean(&s, point);
    }
    remove_parent(&cgroup_parent(&s));
}

fn points(prefix: &str) -> Vec<&'static str> {
    vordr_cri::faults::POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_at_every_pod_step() {
    crash_at_each("fpod", &points("pod.")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_at_every_container_step() {
    crash_at_each("fctr", &points("container.")).await;
}

#[test]
fn every_crash_point_is_exercised() {
    assert_eq!(
        points("pod.").len() + points("container.").len() + points("cni.").len(),
        vordr_cri::faults::POINTS.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_shim_ends_its_container_and_teardown_completes() {
    let Some((mut s, _, id)) = running("fshim", "shimkill").await else {
        return;
    };
    let bundle = s.d.run_dir.join("bundles").join(&id);
    let shim =
        s.d.processes()
            .into_iter()
            .find(|p| {
                let pid = p.split(' ').next().unwrap();
                std::fs::read_link(format!("/proc/{pid}/cwd"))
                    .ok()
                    .as_deref()
                    == Some(&bundle)
            })
            .expect("the container's shim");
    let pid: i32 = shim.split(' ').next().unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = s.wait_exit(&id).await;
    assert_eq!(st.reason, "Unknown", "{st:?}");
    finish(&mut s, "shim killed").await;
}

/// Lifecycles with the daemon killed at random moments in between (a few
/// minutes at most); at the end everything is cleaned up as kubelet would
/// and nothing may be left.
#[tokio::test(flavor = "multi_thread")]
async fn chaos_kills_during_lifecycles_leak_nothing() {
    let Some(mut s) = daemon("fchaos").await else {
        return;
    };
    let rounds: u32 = std::env::var("VORDR_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut seed: u64 = std::env::var("VORDR_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    eprintln!("chaos: {rounds} rounds, seed {seed}");
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let started = Instant::now();
    let (mut kills, mut finished) = (0, 0);
    for round in 0..rounds {
        if started.elapsed() > Duration::from_secs(180) {
            break;
        }
        // A lifecycle, and a kill -9 after a random delay (0-1.5 s).
        let delay = Duration::from_millis(next() % 1500);
        let name = format!("chaos{round}");
        let pid = s.d.pid().unwrap();
        let killer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        });
        let port = host_port(&s) + round as i32;
        let res = lifecycle(&mut s, &name, port).await;
        let fired = killer.is_finished();
        killer.abort();
        if res.is_ok() && !fired {
            finished += 1;
            continue;
        }
        // Any error must come from the kill, never from the daemon itself.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !s.d.exited() {
            assert!(
                Instant::now() < deadline,
                "round {round}: {res:?} without a kill\n{}",
                s.d.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kills += 1;
        restart(&mut s).await;
        // Sometimes kubelet cleans up at once, sometimes later.
        if next() % 2 == 0 {
            kubelet_cleanup(&mut s, &name).await;
        }
    }
    if s.d.exited() {
        restart(&mut s).await;
    }
    eprintln!(
        "chaos: {kills} kills, {finished} lifecycles finished, {:?}",
        started.elapsed()
    );
    finish(&mut s, "chaos end").await;
}

/// kubelet's deadline passing mid-call (tonic drops the handler): the
/// work still finishes, and the retry gets the same pod and container
/// instead of AlreadyExists.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_cut_by_its_deadline_is_finished_and_the_retry_gets_it() {
    let Some(mut s) = daemon("fdeadline").await else {
        return;
    };
    let cfg = pod(&s, "deadline", host_port(&s));
    let mut req = tonic::Request::new(cri::RunPodSandboxRequest {
        config: Some(cfg.clone()),
        runtime_handler: String::new(),
    });
    req.set_timeout(Duration::from_millis(20));
    let cut = s.c.runtime.run_pod_sandbox(req).await;
    assert!(cut.is_err(), "RunPodSandbox finished within 20 ms: {cut:?}");
    let pod_id = run_pod(&mut s.c, cfg.clone())
        .await
        .unwrap_or_else(|e| panic!("the retry: {e}\n{}", s.d.log()));
    let pods = list_pods(&mut s.c).await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].id, pod_id);

    let mut req = tonic::Request::new(cri::CreateContainerRequest {
        pod_sandbox_id: pod_id.clone(),
        config: Some(container(&s)),
        sandbox_config: Some(cfg.clone()),
    });
    req.set_timeout(Duration::from_millis(20));
    let cut = s.c.runtime.create_container(req).await;
    assert!(
        cut.is_err(),
        "CreateContainer finished within 20 ms: {cut:?}"
    );
    let id = s
        .create(&(pod_id.clone(), cfg), container(&s))
        .await
        .unwrap_or_else(|e| panic!("the retry: {e}\n{}", s.d.log()));
    let all = list_containers(&mut s.c).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].id, id);
    finish(&mut s, "deadline").await;
}

/// An ExecSync whose caller gives up kills its process and removes its FIFOs.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_exec_sync_kills_its_process() {
    let Some((mut s, _, id)) = running("fexec", "execcut").await else {
        return;
    };
    let mut req = tonic::Request::new(cri::ExecSyncRequest {
        container_id: id.clone(),
        cmd: vec!["sleep".into(), "4242".into()],
        timeout: 0,
    });
    req.set_timeout(Duration::from_millis(500));
    let cut = s.c.runtime.exec_sync(req).await;
    assert!(cut.is_err(), "{cut:?}");
    let bundle = s.d.run_dir.join("bundles").join(&id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sleeping = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| c == b"sleep\x004242\x00")
                    .unwrap_or(false)
            })
            .count();
        let fifos = std::fs::read_dir(&bundle)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("exec-"))
            .count();
        if sleeping == 0 && fifos == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sleeping} exec processes and {fifos} FIFOs left\n{}",
            s.d.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finish(&mut s, "exec").await;
}

/// Rows lost (a database restored from a backup, or edited): everything on
/// the machine that no row accounts for is released at the next start, and
/// the start-up report names each kind.
#[tokio::test(flavor = "multi_thread")]
async fn objects_without_rows_are_released_at_start() {
    let Some((mut s, _, _)) = running("forphan", "orphan").await else {
        return;
    };
    assert!(!s.d.processes().is_empty());
    s.d.kill9();
    {
        let db = rusqlite::Connection::open(s.d.root.join("vordr.db")).unwrap();
        db.execute_batch("PRAGMA foreign_keys = OFF; DELETE FROM containers; DELETE FROM pods;")
            .unwrap();
    }
    restart(&mut s).await;
    let log = s.d.log();
    let report = log
        .lines()
        .rev()
        .find(|l| l.contains("reconciled state with the machine"))
        .expect("a start-up report")
        .to_string();
    for kind in [
        "orphan_inits: 1",
        "orphan_pins: 1",
        "orphan_files: 1",
        "orphan_containers: 1",
        "orphan_cgroups: 0",
        "orphan_ips: 1",
    ] {
        assert!(report.contains(kind), "{kind} in {report}");
    }
    // The pod's network went with its pins only if torn down: the
    // firewall rules, veth and bridge port must be gone too.
    assert_clean(&s, "orphans");
    remove_parent(&cgroup_parent(&s));
}

/// A disk that stops answering (here: the database held by another
/// process's exclusive transaction, as a hung NFS mount would hold it)
/// stalls the calls that need it, never Version or Status.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_database_does_not_stall_version() {
    let Some(mut s) = daemon("fstall").await else {
        return;
    };
    let db = rusqlite::Connection::open(s.d.root.join("vordr.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let held = Instant::now();
    // More stuck calls than the daemon has async threads.
    let mut stuck = Vec::new();
    for n in 0..8 {
        let mut c = s.d.client().await;
        let cfg = s.pod_config(&format!("stall{n}"));
        stuck.push(tokio::spawn(async move {
            let _ = run_pod(&mut c, cfg).await;
            let _ = c
                .runtime
                .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                .await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut worst_version, mut worst_status) = (Duration::ZERO, Duration::ZERO);
    let mut unready = None;
    while held.elapsed() < Duration::from_millis(2500) {
        let t = Instant::now();
        s.c.runtime
            .version(cri::VersionRequest::default())
            .await
            .unwrap();
        worst_version = worst_version.max(t.elapsed());
        let t = Instant::now();
        let st =
            s.c.runtime
                .status(cri::StatusRequest::default())
                .await
                .unwrap()
                .into_inner();
        worst_status = worst_status.max(t.elapsed());
        let ready = st
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "RuntimeReady");
        if let Some(c) = ready.filter(|c| !c.status) {
            unready = Some(c.reason);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.execute_batch("ROLLBACK").unwrap();
    assert!(
        worst_version < Duration::from_secs(1),
        "Version took {worst_version:?} while the database was held"
    );
    // Status waits 1 s for the database, then says why the runtime is not ready.
    assert!(
        worst_status < Duration::from_millis(1500),
        "Status took {worst_status:?} while the database was held"
    );
    assert_eq!(unready.as_deref(), Some("StateStoreUnresponsive"));
    for t in stuck {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("the stalled calls finish once the database answers")
            .unwrap();
    }
    finish(&mut s, "stall").await;
}
