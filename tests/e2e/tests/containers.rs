//! Containers end to end: real images from a local registry, real shims,
//! youki and runc, logs, exec, stats, exits, and daemon restarts.

use std::time::{Duration, Instant};

use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;

/// Checks the CRI log format of every line.
fn assert_cri_log(log: &str) {
    for line in log.lines() {
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        assert!(parts.len() >= 3, "bad log line {line:?}");
        assert!(
            parts[0].ends_with('Z') && parts[0].contains('T'),
            "time in {line:?}"
        );
        assert!(
            ["stdout", "stderr"].contains(&parts[1]),
            "stream in {line:?}"
        );
        assert!(["P", "F"].contains(&parts[2]), "tag in {line:?}");
    }
}

async fn lifecycle(handler: &str) {
    let Some(mut s) = setup(&format!("ctr-{handler}")).await else {
        return;
    };
    let podname = format!(
        "life-{}",
        if handler.is_empty() { "youki" } else { handler }
    );
    let pod = s.pod(&podname, handler).await;
    let long = "x".repeat(20_000);
    let script = format!("echo hello; echo oops >&2; echo {long}; exec sleep 1000");
    let id = s.run(&pod, s.config("app", &["sh", "-c", &script])).await;

    let st = s.status(&id).await;
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    assert!(st.started_at > 0 && st.image_ref.contains("sha256:"));
    let log = s.wait_log(&podname, "app", "oops").await;
    let log = if log.contains(&long[..100]) {
        log
    } else {
        s.wait_log(&podname, "app", " F x").await
    };
    assert_cri_log(&log);
    assert!(log.contains(" stdout F hello\n"), "{log}");
    assert!(log.contains(" stderr F oops\n"), "{log}");
    // A 20000-byte line is one partial record of 16384 bytes and a full one.
    assert!(
        log.contains(&format!(" stdout P {}\n", "x".repeat(16384))),
        "no partial record"
    );
    assert!(log.contains(&format!(" stdout F {}\n", "x".repeat(20_000 - 16384))));

    // ExecSync: output, exit codes, the container's view, seccomp, timeout.
    let r = s
        .exec(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
        .await
        .unwrap();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"out\n"[..], &b"err\n"[..], 3)
    );
    // The pod's network namespace, not the host's (pods from the warm pool too).
    let r = s
        .exec(&id, &["readlink", "/proc/self/ns/net"], 10)
        .await
        .unwrap();
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let pod_net = std::fs::metadata(s.d.ns_dir(&pod.0).join("net")).unwrap();
    let inner = String::from_utf8_lossy(&r.stdout).trim().to_string();
    assert_ne!(
        inner,
        host_net.display().to_string(),
        "the container is in the host's network namespace"
    );
    assert_eq!(
        inner,
        format!("net:[{}]", std::os::unix::fs::MetadataExt::ino(&pod_net))
    );
    let r = s.exec(&id, &["hostname"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), podname);
    let r = s
        .exec(
            &id,
            &["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"],
            10,
        )
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        out.contains("Seccomp:\t2"),
        "exec runs without the seccomp filter: {out}"
    );
    // RuntimeDefault refuses unshare(2) without CAP_SYS_ADMIN, even for a
    // user namespace (which needs no capability): in the exec too.
    let r = s.exec(&id, &["unshare", "-U", "true"], 10).await.unwrap();
    assert_ne!(r.exit_code, 0, "unshare passed the RuntimeDefault filter");
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("Operation not permitted"),
        "{r:?}"
    );
    let r = s.exec(&id, &["cat", "/proc/1/cmdline"], 10).await.unwrap();
    assert!(
        String::from_utf8_lossy(&r.stdout).starts_with("sleep"),
        "exec is not in the container's pid namespace"
    );
    let r = s.exec(&id, &["no-such-binary"], 10).await.unwrap();
    assert_ne!(r.exit_code, 0);
    let t = Instant::now();
    let e = s.exec(&id, &["sleep", "30"], 1).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let r = s
        .exec(
            &id,
            &["sh", "-c", "ps -o args | grep -c '^sleep 30$' || true"],
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "0",
        "the timed-out exec still runs"
    );

    // Stats, listing.
    let stats =
        s.c.runtime
            .container_stats(cri::ContainerStatsRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
    assert!(stats.memory.unwrap().working_set_bytes.unwrap().value > 0);
    assert!(stats.cpu.unwrap().usage_core_nano_seconds.unwrap().value > 0);
    let listed =
        s.c.runtime
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: pod.0.clone(),
                    label_selector: [("c".to_string(), "app".to_string())].into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);

    // sleep as PID 1 ignores SIGTERM: Stop waits out the timeout, then kills.
    let t = Instant::now();
    s.c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 2,
        })
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_secs(2), "stopped too early");
    let st = s.status(&id).await;
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137);

    // Unconfined, the same unshare works: the filter is what refused it.
    let mut cfg = s.config("unconfined", &["sleep", "1000"]);
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .seccomp = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
        ..Default::default()
    });
    let free = s.run(&pod, cfg).await;
    let r = s.exec(&free, &["unshare", "-U", "true"], 10).await.unwrap();
    assert_eq!(r.exit_code, 0, "{r:?}");
    s.c.runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: free.clone(),
        })
        .await
        .unwrap();

    // A container that exits by itself.
    let id2 = s
        .run(&pod, s.config("quits", &["sh", "-c", "exit 7"]))
        .await;
    let st = s.wait_exit(&id2).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"));

    for id in [&id, &id2] {
        s.c.runtime
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
    }
    let e = s.status_err(&id).await;
    assert_eq!(e, Code::NotFound);
    s.c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    s.d.drain_pool().await;
    assert_eq!(s.d.leftovers(), Vec::<String>::new());
    drop(s.reg);
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_youki() {
    lifecycle("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_runc() {
    lifecycle("runc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oom_and_limits() {
    let Some(mut s) = setup("ctr-oom").await else {
        return;
    };
    let pod = s.pod("oom", "").await;
    let mut cfg = s.config(
        "hog",
        &[
            "sh",
            "-c",
            "exec dd if=/dev/zero of=/dev/null bs=64M count=1",
        ],
    );
    let linux = cfg.linux.get_or_insert_with(Default::default);
    linux.resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        cpu_quota: 20_000,
        cpu_period: 100_000,
        ..Default::default()
    });
    let id = s.run(&pod, cfg).await;
    let st = s.wait_exit(&id).await;
    assert_eq!(st.reason, "OOMKilled", "{st:?}");
    assert_eq!(st.exit_code, 137);

    // Limits land in the container's cgroup, and updates too.
    let id = s
        .run(&pod, {
            let mut c = s.config("limited", &["sleep", "1000"]);
            c.linux.get_or_insert_with(Default::default).resources =
                Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                });
            c
        })
        .await;
    let r = s
        .exec(&id, &["sh", "-c", cgroup::MEMORY_LIMIT_IN_CONTAINER], 10)
        .await
        .unwrap();
    let seen = String::from_utf8_lossy(&r.stdout).trim().to_string();
    // The host's view of the container's own cgroup (v1 or v2, either
    // driver), found from its init's /proc/PID/cgroup.
    let pid = container_info(&mut s.c, &id).await["pid"].as_u64().unwrap() as u32;
    assert_eq!(
        cgroup::memory_limit(pid),
        Some(64 << 20),
        "container saw {seen}"
    );
    s.set_memory_limit(&id, 96 << 20).await.unwrap();
    assert_eq!(cgroup::memory_limit(pid), Some(96 << 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn survives_daemon_restart() {
    let Some(mut s) = setup("ctr-restart").await else {
        return;
    };
    let pod = s.pod("restart", "").await;
    let id = s
        .run(
            &pod,
            s.config(
                "ticker",
                &["sh", "-c", "while true; do echo tick; sleep 0.2; done"],
            ),
        )
        .await;
    let quitter = s
        .run(&pod, s.config("quitter", &["sh", "-c", "sleep 2; exit 5"]))
        .await;
    s.wait_log("restart", "ticker", "tick").await;
    s.d.kill9();
    let before = s.log_of("restart", "ticker").lines().count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = s.log_of("restart", "ticker").lines().count();
    assert!(
        during > before + 3,
        "the container stopped logging while the daemon was down"
    );
    s.d.spawn().await;
    s.c = s.d.client().await;
    let st = s.status(&id).await;
    assert_eq!(
        st.state,
        cri::ContainerState::ContainerRunning as i32,
        "{st:?}"
    );
    let st = s.status(&quitter).await;
    assert_eq!(
        st.state,
        cri::ContainerState::ContainerExited as i32,
        "{st:?}"
    );
    assert_eq!(st.exit_code, 5);
    let r = s.exec(&id, &["echo", "still here"], 10).await.unwrap();
    assert_eq!(r.stdout, b"still here\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input() {
    let Some(mut s) = setup("ctr-bad").await else {
        return;
    };
    let pod = s.pod("bad", "").await;
    // Unknown pod, unknown image, bad mount source, unknown container.
    let e = s
        .create(&("nope".into(), pod.1.clone()), s.config("x", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let mut cfg = s.config("x", &["true"]);
    cfg.image.as_mut().unwrap().image = format!("{}/e2e/absent:1", s.reg.addr);
    let e = s.create(&pod, cfg).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert!(e.message().contains("absent"), "{e}");
    let mut cfg = s.config("x", &["true"]);
    cfg.mounts.push(cri::Mount {
        container_path: "/data".into(),
        host_path: "/no/such/dir".into(),
        ..Default::default()
    });
    let e = s.create(&pod, cfg).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("mounts[0].host_path"), "{e}");
    assert_eq!(s.status_err("0123456789ab").await, Code::NotFound);
    let e =
        s.c.runtime
            .start_container(cri::StartContainerRequest {
                container_id: "0123456789ab".into(),
            })
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Nothing of the failed creates is left: no bundle, no shim, no mount.
    let listed = list_containers(&mut s.c).await;
    assert!(listed.is_empty(), "{listed:?}");
    // A stopped pod takes no new containers.
    s.c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    let e = s
        .create(&pod, s.config("late", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    s.c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    s.d.drain_pool().await;
    assert_eq!(s.d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_pid_namespace() {
    let Some(mut s) = setup("ctr-pid").await else {
        return;
    };
    let pod = s.pod("pidshare", "").await;
    let shared = |mut c: cri::ContainerConfig| {
        let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
        sc.namespace_options.as_mut().unwrap().pid = cri::NamespaceMode::Pod as i32;
        c
    };
    let a = s.run(&pod, shared(s.config("a", &["sleep", "1001"]))).await;
    let b = s.run(&pod, shared(s.config("b", &["sleep", "1002"]))).await;
    // PID 1 is the pod's init, and each container sees the other's process.
    let r = s.exec(&b, &["cat", "/proc/1/cmdline"], 10).await.unwrap();
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("__pod-init"),
        "{r:?}"
    );
    let r = s.exec(&b, &["ps", "-o", "args"], 10).await.unwrap();
    let ps = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(
        ps.contains("sleep 1001") && ps.contains("sleep 1002"),
        "{ps}"
    );
    let r = s.exec(&a, &["ps", "-o", "args"], 10).await.unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("sleep 1002"));
    // Stopping the pod kills the init with everything in the namespace.
    let init = std::fs::read_to_string(s.d.ns_dir(&pod.0).join("init.pid")).unwrap();
    s.c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{}", init.trim())).exists() {
        assert!(Instant::now() < deadline, "the pod init outlived its pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.wait_exit(&a).await.exit_code, 137);
}

/// The container config `s.config` gives, in the pod's PID namespace.
fn in_pod_pid_namespace(mut c: cri::ContainerConfig) -> cri::ContainerConfig {
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.namespace_options.as_mut().unwrap().pid = cri::NamespaceMode::Pod as i32;
    c
}

/// One `Name:\tvalue` field of a /proc/<pid>/status, whitespace collapsed.
fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits for the pod's init (started with its first container) and
/// returns its host pid.
fn pod_init_pid(s: &Setup, pod: &str) -> u32 {
    let init = std::fs::read_to_string(s.d.ns_dir(pod).join("init.pid")).unwrap();
    init.trim().parse().unwrap()
}

/// Inode of a namespace file (a /proc link or a pin): equal inodes, same
/// namespace.
fn ns_inode(path: impl AsRef<std::path::Path>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
        .ino()
}

/// `sh -c script` in container `id`: exit code, stdout, stderr.
async fn sh_exec(s: &mut Setup, id: &str, script: &str) -> (i32, String, String) {
    let r = s.exec(id, &["sh", "-c", script], 10).await.unwrap();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

/// The init of a shared PID namespace is what a container holding
/// SYS_PTRACE sees of the node through /proc/1: it must give away nothing,
/// as a pause container does: an empty read-only root, the pod's network,
/// IPC and UTS namespaces, no capabilities, no_new_privs, the default
/// seccomp profile, and the pod's user or 65535.
#[tokio::test(flavor = "multi_thread")]
async fn pod_init_is_confined_like_a_pause_container() {
    // SYS_PTRACE is refused by the baseline profile.
    let Some(mut s) = setup_with("ctr-podinit", PRIVILEGED).await else {
        return;
    };
    let pod = s.pod("podinit", "").await;
    let mut cfg = in_pod_pid_namespace(s.config("tracer", &["sleep", "1000"]));
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_PTRACE".into()],
        ..Default::default()
    });
    let id = s.run(&pod, cfg).await;
    // PID 1 is the init, and SYS_PTRACE reaches its root: nothing of the
    // host's file system is there.
    let (code, out, err) = sh_exec(&mut s, &id, "cat /proc/1/cmdline").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("__pod-init"), "{out:?}");
    let (code, out, err) = sh_exec(&mut s, &id, "ls -a /proc/1/root/").await;
    assert_eq!(code, 0, "ls /proc/1/root: {err}");
    let entries: Vec<&str> = out.split_whitespace().collect();
    assert!(
        entries.iter().all(|e| *e == "." || *e == ".."),
        "the init's root shows {entries:?}"
    );
    // Read-only, even to a container root with DAC_OVERRIDE.
    let (code, _, err) = sh_exec(&mut s, &id, "touch /proc/1/root/x").await;
    assert_ne!(code, 0, "wrote into the init's root");
    assert!(err.contains("Read-only file system"), "{err}");

    let (code, status, err) = sh_exec(&mut s, &id, "cat /proc/1/status").await;
    assert_eq!(code, 0, "{err}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_field(&status, cap),
            "0000000000000000",
            "{cap}\n{status}"
        );
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{status}");
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");
    assert_eq!(status_field(&status, "Uid"), "65535 65535 65535 65535");
    assert_eq!(status_field(&status, "Gid"), "65535 65535 65535 65535");
    assert_eq!(status_field(&status, "Groups"), "");

    // The pod's network, IPC and UTS namespaces, not the host's; a mount
    // namespace of its own.
    for ns in ["net", "ipc", "uts"] {
        let (code, out, err) = sh_exec(
            &mut s,
            &id,
            &format!("readlink /proc/1/ns/{ns}; readlink /proc/self/ns/{ns}"),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let links: Vec<&str> = out.lines().collect();
        assert_eq!(links.len(), 2, "{out}");
        assert_eq!(links[0], links[1], "{ns} namespace");
    }
    let (_, out, _) = sh_exec(
        &mut s,
        &id,
        "readlink /proc/1/ns/mnt; readlink /proc/self/ns/mnt",
    )
    .await;
    let links: Vec<&str> = out.lines().collect();
    assert_eq!(links.len(), 2, "{out}");
    assert_ne!(links[0], links[1], "the init shares the container's mounts");
    let init = pod_init_pid(&s, &pod.0);
    for ns in ["net", "ipc", "uts"] {
        assert_ne!(
            ns_inode(format!("/proc/{init}/ns/{ns}")),
            ns_inode(format!("/proc/self/ns/{ns}")),
            "the init is in the host's {ns} namespace"
        );
    }

    // A pod that names its user: the init runs as that user.
    let mut cfg = s.pod_config("podinit-user");
    cfg.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        run_as_user: Some(cri::Int64Value { value: 1234 }),
        run_as_group: Some(cri::Int64Value { value: 2345 }),
        ..Default::default()
    });
    let pod2 = s.run_pod(cfg, "").await;
    let _c = s
        .run(
            &pod2,
            in_pod_pid_namespace(s.config("c", &["sleep", "1000"])),
        )
        .await;
    let init2 = pod_init_pid(&s, &pod2.0);
    let status = std::fs::read_to_string(format!("/proc/{init2}/status")).unwrap();
    assert_eq!(status_field(&status, "Uid"), "1234 1234 1234 1234");
    assert_eq!(status_field(&status, "Gid"), "2345 2345 2345 2345");
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");

    // Stopping the pod still finds and kills it.
    s.c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{init}")).exists() {
        assert!(Instant::now() < deadline, "the pod init outlived its pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pod with its own user namespace can share its PID namespace: the init
/// joins the pod's user namespace (which then owns the PID namespace, so
/// that runc, joining the user namespace first, may join it) and runs as
/// 65535 of that namespace, confined as in any other pod.
#[tokio::test(flavor = "multi_thread")]
async fn user_namespaced_pod_shares_its_pid_namespace() {
    let Some(mut s) = setup("ctr-userns-pid").await else {
        return;
    };
    let cfg = s.userns_pod_config("userns-pid", 300_000);
    let pod = s.run_pod(cfg, "").await;
    let a = s
        .run(
            &pod,
            in_pod_pid_namespace(s.config("a", &["sleep", "1001"])),
        )
        .await;
    let b = s
        .run(
            &pod,
            in_pod_pid_namespace(s.config("b", &["sleep", "1002"])),
        )
        .await;
    let r = s
        .exec(
            &b,
            &["sh", "-c", "cat /proc/1/cmdline; echo; ps -o args"],
            10,
        )
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(out.contains("__pod-init"), "{out}");
    assert!(
        out.contains("sleep 1001") && out.contains("sleep 1002"),
        "{out}"
    );
    let r = s.exec(&a, &["cat", "/proc/1/status"], 10).await.unwrap();
    let status = String::from_utf8_lossy(&r.stdout).to_string();
    assert_eq!(
        status_field(&status, "Uid"),
        "65535 65535 65535 65535",
        "{status}"
    );
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(status_field(&status, "Seccomp"), "2");

    // Seen from the host: an unprivileged id of the pod's range, in the
    // pod's user and network namespaces.
    let init = pod_init_pid(&s, &pod.0);
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert_eq!(status_field(&status, "Uid"), "365535 365535 365535 365535");
    assert_eq!(status_field(&status, "Gid"), "365535 365535 365535 365535");
    for ns in ["user", "net", "ipc", "uts"] {
        assert_eq!(
            ns_inode(format!("/proc/{init}/ns/{ns}")),
            ns_inode(s.d.ns_dir(&pod.0).join(ns)),
            "{ns} namespace of the init"
        );
    }
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{init}/root"))
        .unwrap()
        .collect();
    assert!(root.is_empty(), "{root:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_namespaced_pod_and_exec_are_not_host_root_youki() {
    user_namespaced("").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_namespaced_pod_and_exec_are_not_host_root_runc() {
    user_namespaced("runc").await;
}

async fn user_namespaced(handler: &str) {
    let tag = format!("ctr-userns{handler}");
    let Some(mut s) = setup(&tag).await else {
        return;
    };
    let cfg = s.userns_pod_config("userns", 200_000);
    let pod = s.run_pod(cfg, handler).await;
    let id = s.run(&pod, s.config("root", &["sleep", "1000"])).await;
    let r = s
        .exec(
            &id,
            &["sh", "-c", "id -u; cat /proc/self/uid_map; echo $$"],
            10,
        )
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "200000", "65536"], "{out}");
    // Seen from the host, the exec'd process is uid 200000, not root.
    let r = s
        .exec(&id, &["sh", "-c", "sleep 5 >/dev/null 2>&1 & echo ok"], 10)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"ok\n");
    let host_uids: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            (cmd == b"sleep\x005\x00").then(|| {
                std::fs::read_to_string(e.path().join("status"))
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.starts_with("Uid:"))
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .collect();
    assert!(
        !host_uids.is_empty(),
        "the exec'd sleep is not visible from the host"
    );
    for u in &host_uids {
        assert!(
            u.contains("200000") && !u.split_whitespace().skip(1).any(|x| x == "0"),
            "{u}"
        );
    }
    // A pod asking for a user namespace without mappings is refused.
    let mut bad = pod_config("userns-bad");
    bad.linux
        .get_or_insert_with(Default::default)
        .security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            userns_options: Some(cri::UserNamespace {
                mode: cri::NamespaceMode::Pod as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = run_pod(&mut s.c, bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("userns_options"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_and_log_reopen() {
    let Some(mut s) = setup("ctr-tty").await else {
        return;
    };
    let pod = s.pod("tty", "").await;
    let mut cfg = s.config(
        "term",
        &[
            "sh",
            "-c",
            "echo tty-out; [ -t 1 ] && echo is-a-tty; exec sleep 1000",
        ],
    );
    cfg.tty = true;
    let _term = s.run(&pod, cfg).await;
    let log = s.wait_log("tty", "term", "is-a-tty").await;
    assert_cri_log(&log);
    assert!(log.contains(" stdout F tty-out"), "{log:?}");

    let id = s
        .run(
            &pod,
            s.config(
                "ticker",
                &["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
            ),
        )
        .await;
    s.wait_log("tty", "ticker", "tick").await;
    // kubelet rotates: renames the file, then asks for a new one.
    let dir = s.logs.path().join("tty").join("ticker");
    std::fs::rename(dir.join("0.log"), dir.join("0.log.1")).unwrap();
    s.c.runtime
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    s.wait_log("tty", "ticker", "tick").await;
    let old = std::fs::read_to_string(dir.join("0.log.1")).unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("0.log.1")).unwrap().len(),
        old,
        "the shim still writes to the rotated file"
    );
    // Not running: FailedPrecondition.
    s.c.runtime
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let e =
        s.c.runtime
            .reopen_container_log(cri::ReopenContainerLogRequest { container_id: id })
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn shim_of_a_collected_container_exits() {
    let Some(mut s) = setup("ctr-orphan").await else {
        return;
    };
    let pod = s.pod("orphan", "").await;
    let id = s.run(&pod, s.config("done", &["true"])).await;
    s.wait_exit(&id).await;
    let shim_alive = |id: &str| {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains("containerd-shim-vordr-v1") && c.contains(id)
                })
                .unwrap_or(false)
        })
    };
    assert!(shim_alive(&id), "the shim should wait for Delete");
    // The daemon dies and its run dir is wiped (a reboot-like loss).
    s.d.kill9();
    let bundle = s.d.run_dir.join("bundles").join(&id);
    nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH).unwrap();
    std::fs::remove_dir_all(&bundle).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while shim_alive(&id) {
        assert!(Instant::now() < deadline, "the orphaned shim never exited");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.d.spawn().await;
    s.c = s.d.client().await;
    let st = s.status(&id).await;
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
}
