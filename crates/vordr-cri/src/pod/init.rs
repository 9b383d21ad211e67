//! The init process of a pod whose containers share its PID namespace
//! (containerd's pause container does this): started on the first such
//! container, killed when the pod stops. Its pid lives next to the pod's
//! pinned namespaces, in the volatile run dir.
//!
//! The init is confined like a pause container: the shim's `__pod-init`
//! verb gives it an empty read-only root of its own, the pod's network, IPC
//! and UTS namespaces (and its user namespace, which then owns the PID
//! namespace), the pod's user (65535:65535 by default, as the pause image),
//! no capabilities, no_new_privs and the default seccomp profile, which the
//! daemon passes on the verb's stdin.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1::PodSandboxConfig;
use tokio::io::AsyncWriteExt;
use tonic::Status;
use vordr_net::netns::IdMaps;
use vordr_shim_api::POD_INIT_VERB;

use crate::shim::client::shim_binary;
use crate::state::errors::internal;
use crate::state::layout::Layout;
use crate::state::Runtime;

/// The user and group the init runs as when the pod names none (the pause
/// image's `65535:65535`).
pub const DEFAULT_INIT_ID: u32 = 65535;

/// How long `__pod-init` may take; it gives its init 10 seconds to report.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The pid the pod's init file records, running or not.
pub fn recorded(layout: &Layout, pod_id: &str) -> Option<i32> {
    std::fs::read_to_string(layout.init_pid_file(pod_id))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The pod init recorded for `pod_id`, if it still runs.
fn running(layout: &Layout, pod_id: &str) -> Option<i32> {
    let pid = recorded(layout, pod_id)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == POD_INIT_VERB.as_bytes());
    is_ours.then_some(pid)
}

/// The PID namespace of the pod's init, starting the init if needed. The
/// caller holds the pod's lock.
pub async fn pid_namespace(rt: &Runtime, pod: &vordr_store::PodRecord) -> Result<PathBuf, Status> {
    let dir = rt.layout.ns_dir(&pod.id);
    if let Some(pid) = running(&rt.layout, &pod.id) {
        return Ok(PathBuf::from(format!("/proc/{pid}/ns/pid")));
    }
    // The stored config is the one the gatekeeper judged.
    let sandbox: PodSandboxConfig =
        serde_json::from_str(&pod.config).map_err(|e| internal("reading pod config", e))?;
    let userns = crate::pod::validate::pod_id_maps(&sandbox);
    let (uid, gid) = init_ids(&sandbox, userns.as_ref()).map_err(Status::invalid_argument)?;
    let mut args: Vec<OsString> = vec![
        "--pod".into(),
        dir.clone().into(),
        "--uid".into(),
        uid.to_string().into(),
        "--gid".into(),
        gid.to_string().into(),
    ];
    for (flag, path) in [
        ("--net", &pod.netns_path),
        ("--ipc", &pod.ipc_path),
        ("--uts", &pod.uts_path),
    ] {
        if let Some(p) = path {
            args.push(flag.into());
            args.push(p.into());
        }
    }
    if userns.is_some() {
        args.push("--user".into());
        args.push(rt.layout.ns_pin(&pod.id, "user").into());
    }
    let profile = serde_json::to_vec(&init_seccomp())
        .map_err(|e| internal("the init's seccomp profile", e))?;
    let binary = shim_binary(&rt.config.runtime.shim_path);
    let pid = start(&binary, &args, profile)
        .await
        .map_err(|e| internal("starting the pod's init", e))?;
    let record = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(rt.layout.init_pid_file(&pod.id), format!("{pid}\n")));
    if let Err(e) = record {
        // Nobody would know of it: do not leave it running.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        return Err(internal("recording the pod's init", e));
    }
    tracing::info!(pod = %pod.id, pid, uid, gid, "pod init started for a shared PID namespace");
    Ok(PathBuf::from(format!("/proc/{pid}/ns/pid")))
}

/// Runs `__pod-init` with `args`, the seccomp profile on its stdin; the
/// init's host pid.
async fn start(binary: &Path, args: &[OsString], profile: Vec<u8>) -> Result<i32, String> {
    let mut child = tokio::process::Command::new(binary)
        .arg(POD_INIT_VERB)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let feed = async move {
        let res = stdin.write_all(&profile).await;
        drop(stdin);
        res
    };
    // On timeout the verb is killed (kill_on_drop); it kills its own child
    // after 10 seconds without a report, well before.
    let (fed, out) = tokio::time::timeout(START_TIMEOUT, async {
        tokio::join!(feed, child.wait_with_output())
    })
    .await
    .map_err(|_| format!("{POD_INIT_VERB} did not answer in {START_TIMEOUT:?}"))?;
    let out = out.map_err(|e| format!("waiting for {POD_INIT_VERB}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        return Err(format!("{POD_INIT_VERB} {}: {stderr}", out.status));
    }
    fed.map_err(|e| format!("passing the seccomp profile: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| format!("{POD_INIT_VERB} printed no pid: {stderr}"))
}

/// The init's uid and gid: the pod's `run_as_user` / `run_as_group`, else
/// [`DEFAULT_INIT_ID`]. In a pod with its own user namespace the ids are
/// ids of that namespace: one the pod names must be mapped there; the
/// default falls back to the highest mapped id when 65535 is not.
pub fn init_ids(sandbox: &PodSandboxConfig, userns: Option<&IdMaps>) -> Result<(u32, u32), String> {
    let sc = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let id = |field: &str, v: Option<i64>, maps: Option<&[(u32, u32, u32)]>| {
        let Some(v) = v else {
            return Ok(match maps {
                Some(m) if !is_mapped(m, DEFAULT_INIT_ID) => {
                    highest_mapped(m).ok_or_else(|| {
                        format!("linux.security_context: no id is mapped in the pod's user namespace for {field}")
                    })?
                }
                _ => DEFAULT_INIT_ID,
            });
        };
        let id = u32::try_from(v)
            .ok()
            .filter(|id| *id != u32::MAX)
            .ok_or_else(|| format!("linux.security_context.{field}: {v} is not a valid id"))?;
        match maps {
            Some(m) if !is_mapped(m, id) => Err(format!(
                "linux.security_context.{field}: {id} is not mapped in the pod's user namespace"
            )),
            _ => Ok(id),
        }
    };
    let uid = id(
        "run_as_user",
        sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value),
        userns.map(|m| m.uids.as_slice()),
    )?;
    let gid = id(
        "run_as_group",
        sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value),
        userns.map(|m| m.gids.as_slice()),
    )?;
    Ok((uid, gid))
}

/// Whether `id` (an id inside the namespace) is in one of the mappings
/// `(inside, host, count)`.
fn is_mapped(maps: &[(u32, u32, u32)], id: u32) -> bool {
    maps.iter().any(|&(inside, _, count)| {
        id >= inside && u64::from(id) < u64::from(inside) + u64::from(count)
    })
}

/// The highest id inside the namespace that is mapped.
fn highest_mapped(maps: &[(u32, u32, u32)]) -> Option<u32> {
    maps.iter()
        .filter(|(_, _, count)| *count > 0)
        .map(|&(inside, _, count)| {
            let last = u64::from(inside) + u64::from(count) - 1;
            u32::try_from(last.min(u64::from(u32::MAX - 1))).unwrap_or(u32::MAX - 1)
        })
        .max()
}

/// The seccomp profile of the init: the runtime's default profile as it
/// is computed for a process without capabilities (the init has none).
pub fn init_seccomp() -> impl serde::Serialize {
    vordr_spec::default_seccomp_for(&[])
}

/// Kills the pod's init, if it runs; every process left in the PID
/// namespace dies with it.
pub fn kill(layout: &Layout, pod_id: &str) {
    if let Some(pid) = running(layout, pod_id) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_file(layout.init_pid_file(pod_id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext};

    fn pod(user: Option<i64>, group: Option<i64>) -> PodSandboxConfig {
        PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    run_as_user: user.map(|value| Int64Value { value }),
                    run_as_group: group.map(|value| Int64Value { value }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn maps(count: u32) -> IdMaps {
        IdMaps {
            uids: vec![(0, 200_000, count)],
            gids: vec![(0, 300_000, count)],
        }
    }

    #[test]
    fn the_init_runs_as_the_pods_user_or_65535() {
        assert_eq!(
            init_ids(&PodSandboxConfig::default(), None),
            Ok((65535, 65535))
        );
        assert_eq!(init_ids(&pod(None, None), None), Ok((65535, 65535)));
        assert_eq!(init_ids(&pod(Some(1000), None), None), Ok((1000, 65535)));
        assert_eq!(
            init_ids(&pod(Some(1000), Some(2000)), None),
            Ok((1000, 2000))
        );
        assert_eq!(init_ids(&pod(Some(0), Some(0)), None), Ok((0, 0)));
        for bad in [-1, i64::from(u32::MAX), i64::MAX] {
            let e = init_ids(&pod(Some(bad), None), None).unwrap_err();
            assert!(e.contains("run_as_user"), "{e}");
            let e = init_ids(&pod(None, Some(bad)), None).unwrap_err();
            assert!(e.contains("run_as_group"), "{e}");
        }
    }

    #[test]
    fn in_a_user_namespace_the_ids_are_mapped_ones() {
        // kubelet maps 65536 ids: 65535 is one of them.
        assert_eq!(
            init_ids(&pod(None, None), Some(&maps(65536))),
            Ok((65535, 65535))
        );
        // A shorter mapping: the highest mapped id instead of the default.
        assert_eq!(
            init_ids(&pod(None, None), Some(&maps(1000))),
            Ok((999, 999))
        );
        let split = IdMaps {
            uids: vec![(0, 100_000, 10), (70_000, 400_000, 5)],
            gids: vec![(0, 100_000, 1)],
        };
        assert_eq!(init_ids(&pod(None, None), Some(&split)), Ok((70_004, 0)));
        // One the pod names must be mapped.
        assert_eq!(
            init_ids(&pod(Some(999), Some(5)), Some(&maps(1000))),
            Ok((999, 5))
        );
        let e = init_ids(&pod(Some(1000), None), Some(&maps(1000))).unwrap_err();
        assert!(e.contains("run_as_user") && e.contains("not mapped"), "{e}");
        let e = init_ids(&pod(Some(1), Some(1000)), Some(&maps(1000))).unwrap_err();
        assert!(e.contains("run_as_group"), "{e}");
        // Nothing mapped at all.
        let empty = IdMaps {
            uids: vec![],
            gids: vec![],
        };
        assert!(init_ids(&pod(None, None), Some(&empty)).is_err());
        assert!(!is_mapped(&[(u32::MAX - 1, 0, 1)], u32::MAX));
        assert!(is_mapped(&[(u32::MAX - 1, 0, 1)], u32::MAX - 1));
        assert_eq!(highest_mapped(&[(0, 0, u32::MAX)]), Some(u32::MAX - 1));
    }

    /// The syscalls the init makes once its filter is loaded (report, reap,
    /// wait for signals, exit, the allocator) are allowed by the profile
    /// unconditionally; anything else is refused with an errno.
    #[test]
    fn the_init_profile_allows_what_the_init_does() {
        let p = serde_json::to_value(init_seccomp()).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO", "{p}");
        let allowed: Vec<&str> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["action"] == "SCMP_ACT_ALLOW"
                    && s.get("args")
                        .is_none_or(|a| a.is_null() || a == &serde_json::json!([]))
            })
            .flat_map(|s| s["names"].as_array().unwrap())
            .filter_map(|n| n.as_str())
            .collect();
        for name in [
            "write",
            "close",
            "rt_sigprocmask",
            "rt_sigtimedwait",
            "wait4",
            "waitid",
            "exit",
            "exit_group",
            "brk",
            "mmap",
            "munmap",
            "madvise",
            "sigaltstack",
        ] {
            assert!(allowed.contains(&name), "{name} is not allowed");
        }
        // The init has no capabilities: nothing that needs one is allowed.
        for name in [
            "mount",
            "umount2",
            "pivot_root",
            "setns",
            "unshare",
            "chroot",
        ] {
            assert!(!allowed.contains(&name), "{name} is allowed");
        }
    }
}
