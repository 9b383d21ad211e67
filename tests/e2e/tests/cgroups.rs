//! The pod-level cgroup (issue 14), on whatever this machine runs (v1,
//! hybrid or unified; the cgroupfs driver, or systemd when the harness's
//! `VORDR_E2E_CGROUP_DRIVER` says so): it exists while the pod runs,
//! holds the pod's containers, takes the pod's own resources when Vordr
//! names it, and is gone after RemovePodSandbox; a parent two pods share
//! stays until the last goes. Bad `unified` keys are refused by name.

use std::path::{Path, PathBuf};

use vordr_e2e::setup::{setup, Setup};
use vordr_e2e::*;

const ROOT: &str = "/sys/fs/cgroup";

fn systemd() -> bool {
    std::env::var("VORDR_E2E_CGROUP_DRIVER").is_ok_and(|d| d == "systemd")
}

fn unified() -> bool {
    nix::sys::statfs::statfs(ROOT)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// `pid`'s cgroup holding `controller` (on v2, its one cgroup) as
/// (hierarchy directory, path below it).
fn cgroup_of(pid: u32, controller: &str) -> (PathBuf, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if unified() && ctrls.is_empty() {
            return (PathBuf::from(ROOT), path.to_string());
        }
        if !unified() && ctrls.split(',').any(|c| c == controller) {
            return (Path::new(ROOT).join(ctrls), path.to_string());
        }
    }
    panic!("no {controller} cgroup for {pid}:\n{text}");
}

/// Where `rel` exists, in any hierarchy.
fn existing(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if unified() {
        let d = Path::new(ROOT).join(rel);
        return if d.is_dir() { vec![d] } else { vec![] };
    }
    std::fs::read_dir(ROOT)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

async fn remove_pod(s: &mut Setup, id: &str) {
    s.c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap();
    s.c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("remove: {e}\n{}", s.d.log()));
}

async fn pid_of(s: &mut Setup, id: &str) -> u32 {
    container_info(&mut s.c, id).await["pid"].as_u64().unwrap() as u32
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_cgroup_holds_containers_and_goes_with_the_pod() {
    let Some(mut s) = setup("podcg").await else {
        return;
    };
    // No parent from "kubelet": Vordr names the pod's cgroup and writes
    // the pod's resources to it.
    let mut cfg = s.pod_config("podcg");
    cfg.linux.get_or_insert_with(Default::default).resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 256 << 20,
        cpu_shares: 512,
        ..Default::default()
    });
    let pod = s.run_pod(cfg, "").await;
    let a = s.run(&pod, s.config("a", &["sleep", "300"])).await;
    let b = s.run(&pod, s.config("b", &["sleep", "300"])).await;

    let (mem_root, a_rel) = cgroup_of(pid_of(&mut s, &a).await, "memory");
    let (_, b_rel) = cgroup_of(pid_of(&mut s, &b).await, "memory");
    let a_path = Path::new(&a_rel);
    let pod_rel = a_path.parent().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        Path::new(&b_rel).parent(),
        a_path.parent(),
        "one pod cgroup"
    );
    let (pod_name, leaf) = (
        Path::new(&pod_rel).file_name().unwrap().to_string_lossy(),
        a_path.file_name().unwrap().to_string_lossy(),
    );
    if systemd() {
        assert_eq!(leaf, format!("cri-vordr-{a}.scope"));
        assert!(
            pod_rel.starts_with("/vordr.slice/vordr-pod") && pod_name.ends_with(".slice"),
            "{pod_rel}"
        );
    } else {
        assert_eq!(leaf, format!("vordr-{a}"));
        assert!(pod_rel.starts_with("/vordr/pod"), "{pod_rel}");
    }
    // The pod's own limits, v2 or v1 files.
    let pod_dir = mem_root.join(pod_rel.trim_start_matches('/'));
    if unified() {
        assert_eq!(read(&pod_dir.join("memory.max")), "268435456");
        // 512 shares as runc >= 1.3.2, crun and youki convert them.
        assert_eq!(read(&pod_dir.join("cpu.weight")), "59");
        let enabled = read(&pod_dir.join("cgroup.subtree_control"));
        for c in ["cpu", "memory", "pids"] {
            assert!(enabled.split(' ').any(|e| e == c), "{enabled}");
        }
    } else {
        assert_eq!(read(&pod_dir.join("memory.limit_in_bytes")), "268435456");
        let (cpu_root, _) = cgroup_of(pid_of(&mut s, &a).await, "cpu");
        let cpu_dir = cpu_root.join(pod_rel.trim_start_matches('/'));
        assert_eq!(read(&cpu_dir.join("cpu.shares")), "512");
    }

    // A unified key no cgroup has writable: refused by name.
    let e =
        s.c.runtime
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: a.clone(),
                linux: Some(cri::LinuxContainerResources {
                    unified: [("memory.stat".to_string(), "1".to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("unified[\"memory.stat\"]"), "{e:?}");
    if unified() {
        // v2 keys and shares reach the container's own v2 files.
        s.c.runtime
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: a.clone(),
                linux: Some(cri::LinuxContainerResources {
                    cpu_shares: 512,
                    unified: [("memory.high".to_string(), "200003584".to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("update: {e}\n{}", s.d.log()));
        let own = mem_root.join(a_rel.trim_start_matches('/'));
        assert_eq!(read(&own.join("memory.high")), "200003584");
        // youki (the default runtime) converts as runc >= 1.3.2.
        assert_eq!(read(&own.join("cpu.weight")), "59");
    }

    // Stopping the pod leaves it; removing the pod removes it everywhere.
    s.c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    assert!(!existing(&pod_rel).is_empty());
    remove_pod(&mut s, &pod.0).await;
    assert_eq!(existing(&pod_rel), Vec::<PathBuf>::new(), "{}", s.d.log());
}

/// Removes a test's own parent (kubelet's part) when the test ends.
struct Parent(String);

impl Drop for Parent {
    fn drop(&mut self) {
        for d in existing(&self.0) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_two_pods_share_stays_until_the_last_goes() {
    let Some(mut s) = setup("podcg-shared").await else {
        return;
    };
    // kubelet's parent, as each driver names it.
    let tag = s.d.bridge.clone();
    let (given, rel) = if systemd() {
        let stem = format!("vordre2e_{tag}");
        (format!("{stem}.slice"), format!("/{stem}.slice"))
    } else {
        let p = format!("/vordr-e2e-{tag}");
        (p.clone(), p)
    };
    let _cleanup = Parent(rel.clone());
    let mut pods = Vec::new();
    let mut pids = Vec::new();
    for name in ["shared-1", "shared-2"] {
        let mut cfg = s.pod_config(name);
        cfg.linux.get_or_insert_with(Default::default).cgroup_parent = given.clone();
        let pod = s.run_pod(cfg, "").await;
        assert!(!existing(&rel).is_empty(), "{rel} made with the pod");
        let c = s.run(&pod, s.config("c", &["sleep", "300"])).await;
        let pid = pid_of(&mut s, &c).await;
        let (_, cg) = cgroup_of(pid, "memory");
        assert!(cg.starts_with(&format!("{rel}/")), "{cg}");
        pods.push(pod.0);
        pids.push(pid);
    }
    remove_pod(&mut s, &pods[0]).await;
    assert!(!existing(&rel).is_empty(), "the other pod still uses {rel}");
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive(pids[1]), "the other pod's container was killed");
    remove_pod(&mut s, &pods[1]).await;
    assert_eq!(existing(&rel), Vec::<PathBuf>::new());
}

/// Without systemd as PID 1 (this host), a daemon configured with the
/// systemd driver does not start, and says what to set instead; it does not
/// wait for the first RunPodSandbox to fail.
#[tokio::test(flavor = "multi_thread")]
async fn the_systemd_driver_without_systemd_stops_the_start() {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return;
    }
    if Path::new("/run/systemd/system").is_dir() {
        eprintln!("skipped: systemd is the init system here");
        return;
    }
    let mut d = Daemon::start("nosystemd").await;
    d.terminate();
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    let driver = format!("[cgroup]\ndriver = {:?}\n", cgroup::driver());
    assert!(cfg.contains(&driver), "{cfg}");
    let cfg = cfg.replace(&driver, "[cgroup]\ndriver = \"systemd\"\n");
    std::fs::write(&d.config, cfg).unwrap();
    let stderr = d.serve_must_fail(&[]).await;
    assert!(
        stderr.contains("[cgroup] driver: the systemd cgroup driver needs systemd")
            && stderr.contains("set [cgroup] driver = \"cgroupfs\""),
        "{stderr}"
    );
}
