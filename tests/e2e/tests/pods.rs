//! Pod sandboxes end to end: a real `vordr serve`, real namespaces, real
//! netavark on a bridge of the test's own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tonic::Code;
use vordr_e2e::*;

macro_rules! require_node {
    () => {
        if !can_run() {
            eprintln!("skipped: needs root and netavark");
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_lifecycle_status_list_and_idempotence() {
    require_node!();
    let mut d = Daemon::start("life").await;
    let mut c = d.client().await;

    let mut cfg = pod_config("life");
    cfg.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["e2e.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    cfg.annotations.insert("note".into(), "hello".into());
    let id = run_pod(&mut c, cfg.clone()).await.unwrap();
    assert_eq!(id.len(), 64);

    // Same name, namespace, uid and attempt: AlreadyExists.
    let e = run_pod(&mut c, cfg.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");

    let st = pod_status(&mut c, &id).await.unwrap();
    let s = st.status.unwrap();
    assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(s.metadata.unwrap().name, "life");
    assert_eq!(s.annotations["note"], "hello");
    let ip: std::net::Ipv4Addr = s.network.unwrap().ip.parse().unwrap();
    assert!(d.subnet.starts_with(&format!(
        "{}.{}.{}.",
        ip.octets()[0],
        ip.octets()[1],
        ip.octets()[2]
    )));
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    assert_eq!(info["state"], "ready");
    assert_eq!(info["networkAttached"], true);

    // The pod's files.
    let pod_dir = d.root.join("pods").join(&id);
    let resolv = std::fs::read_to_string(pod_dir.join("resolv.conf")).unwrap();
    assert_eq!(
        resolv,
        "search e2e.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert_eq!(
        std::fs::read_to_string(pod_dir.join("hostname")).unwrap(),
        "life\n"
    );

    // Short ids resolve, as crictl uses them.
    let short = pod_status(&mut c, &id[..12]).await.unwrap();
    assert_eq!(short.status.unwrap().id, id);

    // Filters.
    let lc = c.clone();
    let list = move |f: cri::PodSandboxFilter| {
        let mut c = lc.clone();
        async move {
            c.runtime
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner()
                .items
        }
    };
    let other = run_pod(&mut c, pod_config("other")).await.unwrap();
    assert_eq!(list(Default::default()).await.len(), 2);
    assert_eq!(
        list(cri::PodSandboxFilter {
            id: id.clone(),
            ..Default::default()
        })
        .await
        .len(),
        1
    );
    let by_label = list(cri::PodSandboxFilter {
        label_selector: [("app".to_string(), "other".to_string())].into(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].id, other);

    // Stop: not ready, namespaces released; twice is fine.
    for _ in 0..2 {
        c.runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .unwrap();
    }
    let s = pod_status(&mut c, &id).await.unwrap().status.unwrap();
    assert_eq!(s.state, cri::PodSandboxState::SandboxNotready as i32);
    assert!(!d.ns_dir(&id).exists());
    let ready = list(cri::PodSandboxFilter {
        state: Some(cri::PodSandboxStateValue {
            state: cri::PodSandboxState::SandboxReady as i32,
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ready.iter().map(|p| &p.id).collect::<Vec<_>>(),
        vec![&other]
    );

    // Remove: gone; twice is fine; unknown ids too.
    for pod in [&id, &id, &other, &"0123456789abcdef".to_string()] {
        c.runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.to_string(),
            })
            .await
            .unwrap();
    }
    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: "feedface".into(),
        })
        .await
        .unwrap();
    let e = pod_status(&mut c, &id).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(list(Default::default()).await.is_empty());
    d.drain_pool().await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_ip_answers_ping_and_port_mapping_reaches_listener() {
    require_node!();
    // Host ports are refused by the baseline profile (rule 6).
    let mut d = Daemon::start_with_gatekeeper("net", PRIVILEGED).await;
    let mut c = d.client().await;
    // A free host port.
    let host_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = pod_config("net");
    cfg.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let id = run_pod(&mut c, cfg).await.unwrap();
    let ip = pod_ip(&mut c, &id).await;
    assert!(ping(&ip), "pod IP {ip} does not answer ping");

    // A listener inside the pod's network namespace.
    let listener = in_netns(&d.ns_dir(&id).join("net"), || {
        TcpListener::bind("0.0.0.0:8080").unwrap()
    });
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"hello from the pod").unwrap();
        }
    });
    let read = |addr: String| {
        let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out)
            .unwrap_or_else(|e| panic!("reading from {addr}: {e} (got {out:?})"));
        out
    };
    // Directly to the pod, and through the host port mapping on the gateway.
    assert_eq!(read(format!("{ip}:8080")), "hello from the pod");
    assert_eq!(
        read(format!("{}:{host_port}", d.gateway())),
        "hello from the pod"
    );
    server.join().unwrap();

    c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    assert!(!ping(&ip), "a stopped pod still answers ping");
    let port_rules: Vec<_> = d
        .firewall_rules_all()
        .into_iter()
        .filter(|r| r.contains(&format!("dport {host_port}")))
        .collect();
    assert!(port_rules.is_empty(), "{port_rules:?}");
    c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
    d.drain_pool().await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn sysctls_hostname_and_host_namespaces() {
    require_node!();
    let d = Daemon::start_with_gatekeeper("ns", PRIVILEGED).await;
    let mut c = d.client().await;
    let mut cfg = pod_config("sysctl-pod");
    let linux = cfg.linux.as_mut().unwrap();
    linux
        .sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "77".into());
    linux
        .sysctls
        .insert("kernel.shm_rmid_forced".into(), "1".into());
    let id = run_pod(&mut c, cfg).await.unwrap();
    let dir = d.ns_dir(&id);
    let v = in_netns(&dir.join("net"), || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap()
    });
    assert_eq!(v.trim(), "77");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(host.trim(), "77");
    // The hostname is set in the pod's UTS namespace.
    let uts = std::fs::File::open(dir.join("uts")).unwrap();
    let name = std::thread::spawn(move || {
        nix::sched::setns(&uts, nix::sched::CloneFlags::CLONE_NEWUTS).unwrap();
        nix::unistd::gethostname().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(name, "sysctl-pod");
    // IPC sysctl, in the pod's IPC namespace.
    let ipc = std::fs::File::open(dir.join("ipc")).unwrap();
    let shm = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
        nix::sched::setns(&ipc, nix::sched::CloneFlags::CLONE_NEWIPC).unwrap();
        std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(shm.trim(), "1");

    // Host network, IPC and PID: nothing pinned, no IP, the host's name.
    let mut host = pod_config("host-pod");
    host.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            ipc: cri::NamespaceMode::Node as i32,
            pid: cri::NamespaceMode::Node as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hid = run_pod(&mut c, host).await.unwrap();
    let st = pod_status(&mut c, &hid).await.unwrap();
    let s = st.status.unwrap();
    assert_eq!(s.network.unwrap().ip, "");
    let opts = s.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(opts.network, cri::NamespaceMode::Node as i32);
    assert_eq!(opts.pid, cri::NamespaceMode::Node as i32);
    assert!(!d.ns_dir(&hid).join("net").exists());
    assert!(!d.ns_dir(&hid).join("ipc").exists());
    let hostname = nix::unistd::gethostname().unwrap();
    assert_eq!(
        std::fs::read_to_string(d.root.join("pods").join(&hid).join("hostname")).unwrap(),
        format!("{}\n", hostname.to_string_lossy())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_the_field_and_leaves_nothing() {
    require_node!();
    let mut d = Daemon::start_with_gatekeeper("bad", PRIVILEGED).await;
    let mut c = d.client().await;
    let ec = c.clone();
    let expect = move |cfg: cri::PodSandboxConfig, code: Code, field: &'static str| {
        let mut c = ec.clone();
        async move {
            let e = run_pod(&mut c, cfg).await.unwrap_err();
            assert_eq!(e.code(), code, "{field}: {e:?}");
            assert!(
                e.message().contains(field),
                "{field} not in {:?}",
                e.message()
            );
        }
    };
    let mut no_md = pod_config("x");
    no_md.metadata = None;
    expect(no_md, Code::InvalidArgument, "config.metadata").await;
    let mut no_name = pod_config("x");
    no_name.metadata.as_mut().unwrap().name.clear();
    expect(no_name, Code::InvalidArgument, "config.metadata.name").await;
    let mut no_uid = pod_config("x");
    no_uid.metadata.as_mut().unwrap().uid.clear();
    expect(no_uid, Code::InvalidArgument, "config.metadata.uid").await;
    let mut bad_sysctl = pod_config("x");
    bad_sysctl
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("kernel.pid_max".into(), "5".into());
    expect(bad_sysctl, Code::InvalidArgument, "config.linux.sysctls").await;
    let mut bad_mode = pod_config("x");
    bad_mode.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            network: 42,
            ..Default::default()
        }),
        ..Default::default()
    });
    expect(bad_mode, Code::InvalidArgument, "namespace_options.network").await;
    let e = c
        .runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: None,
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = pod_status(&mut c, "nope").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Failures after the namespaces exist: a sysctl the kernel lacks fails
    // inside the pod's namespace...
    let mut missing_sysctl = pod_config("late1");
    missing_sysctl
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.no_such_knob".into(), "1".into());
    expect(missing_sysctl, Code::InvalidArgument, "no_such_knob").await;
    // ...and a log directory that cannot be created fails after the network
    // is attached: everything before it is undone.
    let file = d.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let mut bad_logs = pod_config("late2");
    bad_logs.log_directory = file.join("logs").to_string_lossy().into_owned();
    let e = run_pod(&mut c, bad_logs).await.unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(e.message().contains("log directory"), "{e:?}");
    let pods = list_pods(&mut c).await;
    assert!(pods.is_empty(), "{pods:?}");
    d.drain_pool().await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
    let mut c = d.client().await;
    // The name is free again.
    let id = run_pod(&mut c, pod_config("late2")).await.unwrap();
    assert!(ping(&pod_ip(&mut c, &id).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_then_restart_keeps_pods_and_ips() {
    require_node!();
    let mut d = Daemon::start("restart").await;
    let mut c = d.client().await;
    let a = run_pod(&mut c, pod_config("keep-a")).await.unwrap();
    let b = run_pod(&mut c, pod_config("keep-b")).await.unwrap();
    let ip_a = pod_ip(&mut c, &a).await;
    let ip_b = pod_ip(&mut c, &b).await;
    d.kill9();
    // Pods keep their network while the daemon is down.
    assert!(ping(&ip_a));
    d.spawn().await;
    let mut c = d.client().await;
    for (id, ip) in [(&a, &ip_a), (&b, &ip_b)] {
        let s = pod_status(&mut c, id).await.unwrap().status.unwrap();
        assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(&s.network.unwrap().ip, ip);
        assert!(ping(ip));
    }
    // Never one address twice.
    let n = run_pod(&mut c, pod_config("new")).await.unwrap();
    let ip_n = pod_ip(&mut c, &n).await;
    assert!(ip_n != ip_a && ip_n != ip_b);
    // A clean SIGTERM also leaves pods running.
    assert!(d.terminate().unwrap().success());
    assert!(!d.socket.exists(), "socket left behind after SIGTERM");
    assert!(ping(&ip_n));
    d.spawn().await;
    d.remove_all_pods().await;
    d.drain_pool().await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_run_pod_sandbox_leaks_nothing() {
    require_node!();
    let mut d = Daemon::start("crash").await;
    for (round, delay_ms) in [5u64, 30, 80, 150, 300].into_iter().enumerate() {
        let c = d.client().await;
        let mut tasks = Vec::new();
        for i in 0..6 {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                let _ = run_pod(&mut c, pod_config(&format!("crash-{round}-{i}"))).await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        d.kill9();
        for t in tasks {
            let _ = t.await;
        }
        d.spawn().await;
        let mut c = d.client().await;
        // Whatever survived is whole: ready with a working address.
        let pods = list_pods(&mut c).await;
        for p in &pods {
            assert_eq!(p.state, cri::PodSandboxState::SandboxReady as i32, "{p:?}");
            let ip = pod_ip(&mut c, &p.id).await;
            assert!(ping(&ip), "surviving pod {} at {ip} unreachable", p.id);
        }
        eprintln!(
            "round {round}: killed after {delay_ms} ms, {} of 6 pods survived",
            pods.len()
        );
        d.remove_all_pods().await;
        if round % 2 == 1 {
            // Half the rounds end with the pool drained, so a kill can also
            // land while slots are being created and torn down.
            d.drain_pool().await;
            assert_eq!(d.leftovers(), Vec::<String>::new(), "round {round}");
            let cfg = std::fs::read_to_string(&d.config)
                .unwrap()
                .replace("pool_size = 0", "pool_size = 2");
            std::fs::write(&d.config, cfg).unwrap();
            d.terminate();
            d.spawn().await;
        }
    }
    // The kills must have caught some pods half-created, or this test
    // proved nothing about reconciliation.
    let undone: usize = d
        .log()
        .lines()
        .filter_map(|l| l.split("undone_creating: ").nth(1))
        .filter_map(|r| r.split(',').next()?.parse::<usize>().ok())
        .sum();
    assert!(undone > 0, "no kill landed during RunPodSandbox");
}

#[tokio::test(flavor = "multi_thread")]
async fn version_status_runtime_config_and_socket() {
    require_node!();
    let mut d = Daemon::start("status").await;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut c = d.client().await;
    let v = c
        .runtime
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "vordr");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.version, "0.1.0");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    let s = c
        .runtime
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conds = s.status.unwrap().conditions;
    assert!(conds.iter().all(|c| c.status), "{conds:?}");
    assert!(conds.iter().any(|c| c.r#type == "RuntimeReady"));
    assert!(conds.iter().any(|c| c.r#type == "NetworkReady"));
    let config: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(config["network"]["bridge"], d.bridge);
    let rc = c
        .runtime
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let driver = match cgroup::driver().as_str() {
        "systemd" => cri::CgroupDriver::Systemd,
        _ => cri::CgroupDriver::Cgroupfs,
    };
    assert_eq!(rc.linux.unwrap().cgroup_driver, driver as i32);

    // A stale socket is replaced; a live one is not taken over.
    d.kill9();
    assert!(d.socket.exists());
    d.spawn().await;
    let out = std::process::Command::new(vordr_bin())
        .args(["serve", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_not_ready_without_netavark() {
    require_node!();
    let mut d = Daemon::start_with("nonet", "netavark_path = \"/nonexistent/netavark\"").await;
    let mut c = d.client().await;
    let s = c
        .runtime
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conds = s.status.unwrap().conditions;
    let net = conds.iter().find(|c| c.r#type == "NetworkReady").unwrap();
    assert!(!net.status);
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(
        net.message.contains("/nonexistent/netavark"),
        "{}",
        net.message
    );
    assert!(
        conds
            .iter()
            .find(|c| c.r#type == "RuntimeReady")
            .unwrap()
            .status
    );
    // A pod cannot start, and nothing is left of it.
    let e = run_pod(&mut c, pod_config("nonet")).await.unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert!(
        d.pool_slots().is_empty(),
        "a pool without netavark: {:?}",
        d.pool_slots()
    );
    d.drain_pool().await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn update_runtime_config_pod_cidr_is_used_and_kept() {
    require_node!();
    let mut d = Daemon::start_with("cidr", "").await;
    // Point the daemon at kubelet's pod CIDR: a second unique /24.
    let cfg = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("use_pod_cidr = false", "use_pod_cidr = true");
    std::fs::write(&d.config, cfg).unwrap();
    d.terminate();
    d.spawn().await;
    let mut c = d.client().await;
    // kubelet's pod CIDR: another /24 no other test uses.
    let (upper, _) = unique_network("cidr-pod");
    let prefix = upper.trim_end_matches(".0/24").to_string() + ".";
    let e = c
        .runtime
        .update_runtime_config(cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: "not-a-cidr".into(),
                }),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("pod_cidr"));
    c.runtime
        .update_runtime_config(cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: upper.clone(),
                }),
            }),
        })
        .await
        .unwrap();
    let id = run_pod(&mut c, pod_config("cidr")).await.unwrap();
    let ip: std::net::Ipv4Addr = pod_ip(&mut c, &id).await.parse().unwrap();
    assert!(ip.to_string().starts_with(&prefix), "{ip} not in {upper}");
    assert!(ping(&ip.to_string()));
    // Kept across restarts.
    d.terminate();
    d.spawn().await;
    let mut c = d.client().await;
    let s = c
        .runtime
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.info["podCIDR"], format!("\"{upper}\""));
    let id2 = run_pod(&mut c, pod_config("cidr2")).await.unwrap();
    let ip2: std::net::Ipv4Addr = pod_ip(&mut c, &id2).await.parse().unwrap();
    assert!(ip2.to_string().starts_with(&prefix), "{ip2} not in {upper}");
    assert!(ping(&ip2.to_string()));
    // Pool slots followed the new network too.
    d.remove_all_pods().await;
    d.drain_pool().await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_pool_hands_out_attached_namespaces_and_refills() {
    require_node!();
    // A pooled pod with host ports too: the baseline profile refuses those.
    let mut d = Daemon::start_full("pool", "pool_size = 2", "", PRIVILEGED).await;
    d.wait_pool(2).await;
    let slots: Vec<String> = d.pool_slots().into_iter().map(|(id, _)| id).collect();
    let mut c = d.client().await;
    // Slots are not pods.
    let pods = list_pods(&mut c).await;
    assert!(pods.is_empty(), "{pods:?}");
    assert_eq!(
        pod_status(&mut c, &slots[0]).await.unwrap_err().code(),
        Code::NotFound
    );

    let mut cfg = pod_config("pooled");
    cfg.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "55".into());
    let id = run_pod(&mut c, cfg).await.unwrap();
    assert!(
        slots.contains(&id),
        "pod {id} did not come from the pool {slots:?}"
    );
    let ip = pod_ip(&mut c, &id).await;
    assert!(ping(&ip));
    // The pod's sysctl went into the pooled namespace it joined.
    let v = in_netns(&d.ns_dir(&id).join("net"), || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap()
    });
    assert_eq!(v.trim(), "55");
    // The pool refills.
    d.wait_pool(2).await;

    // Port mappings need their own netavark setup: not from the pool.
    let slots: Vec<String> = d.pool_slots().into_iter().map(|(id, _)| id).collect();
    let mut ported = pod_config("ported");
    let host_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    ported.port_mappings = vec![cri::PortMapping {
        protocol: 0,
        container_port: 80,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    let pid = run_pod(&mut c, ported).await.unwrap();
    assert!(!slots.contains(&pid));
    assert!(ping(&pod_ip(&mut c, &pid).await));

    // A pod that fails after claiming a slot releases it completely.
    let file = d.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let mut bad = pod_config("bad-logs");
    bad.log_directory = file.join("logs").to_string_lossy().into_owned();
    let slots: Vec<String> = d.pool_slots().into_iter().map(|(id, _)| id).collect();
    assert!(run_pod(&mut c, bad).await.is_err());
    for s in &slots {
        assert!(!d.ns_dir(s).exists() || d.pool_slots().iter().any(|(id, _)| id == s));
    }

    d.remove_all_pods().await;
    d.drain_pool().await;
    assert_eq!(d.leftovers(), Vec::<String>::new());
}

/// The MTU of `ifname` in the namespace at `netns`.
fn mtu_in(netns: &std::path::Path, ifname: &str) -> u32 {
    let ifname = ifname.to_string();
    let out = in_netns(netns, move || {
        std::process::Command::new("ip")
            .args(["-o", "link", "show", &ifname])
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mtu = text.split_whitespace().skip_while(|w| *w != "mtu").nth(1);
    mtu.and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mtu in {text:?}"))
}

/// Pods take the node's default-route MTU unless one is configured.
#[tokio::test(flavor = "multi_thread")]
async fn pod_interfaces_take_the_node_mtu_or_the_configured_one() {
    require_node!();
    for (tag, extra, expect) in [
        (
            "mtuauto",
            "pool_size = 0\n",
            vordr_net::mtu::node_mtu().unwrap_or(1500),
        ),
        ("mtu1400", "pool_size = 0\nmtu = 1400\n", 1400),
    ] {
        let d = Daemon::start_with(tag, extra).await;
        let mut c = d.client().await;
        let id = run_pod(&mut c, pod_config(tag)).await.unwrap();
        let netns = d.ns_dir(&id).join("net");
        assert_eq!(mtu_in(&netns, "eth0"), expect, "{tag}");
        let bridge = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", d.bridge)).unwrap();
        assert_eq!(bridge.trim(), expect.to_string(), "{tag}: bridge");
    }
}

/// Dual-stack pods (netavark driver): an address from each family,
/// reported as ip and additional_ips, reachable pod to pod over IPv6, and
/// nothing of either family left after removal.
#[tokio::test(flavor = "multi_thread")]
async fn dual_stack_pods_get_both_families() {
    require_node!();
    let v6 = format!("fd00:{:x}:{:x}::", std::process::id() % 0xffff, 0xd5a1u32);
    let extra = format!("pool_size = 0\nsubnet6 = \"{v6}/64\"\n");
    let mut d = Daemon::start_with("dual", &extra).await;
    let mut c = d.client().await;
    let a = run_pod(&mut c, pod_config("dual-a")).await.unwrap();
    let b = run_pod(&mut c, pod_config("dual-b")).await.unwrap();
    let net_of = |st: cri::PodSandboxStatusResponse| st.status.unwrap().network.unwrap();
    let na = net_of(pod_status(&mut c, &a).await.unwrap());
    let nb = net_of(pod_status(&mut c, &b).await.unwrap());
    assert!(na.ip.parse::<std::net::Ipv4Addr>().is_ok(), "{na:?}");
    assert_eq!(na.additional_ips.len(), 1, "{na:?}");
    let a6 = na.additional_ips[0].ip.clone();
    let b6 = nb.additional_ips[0].ip.clone();
    assert!(a6.starts_with(&v6) && b6.starts_with(&v6), "{a6} {b6}");
    // Pod to pod over IPv6 (duplicate address detection may hold it a moment).
    let ns_a = d.ns_dir(&a).join("net");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let target = b6.clone();
        if in_netns(&ns_a, move || ping(&target)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{a6} cannot reach {b6}"
        );
    }
    d.remove_all_pods().await;
    d.drain_pool().await;
    let left: Vec<String> = d
        .firewall_rules_all()
        .into_iter()
        .filter(|r| r.contains(&v6))
        .collect();
    assert!(left.is_empty(), "{left:#?}");
    assert!(d.leftovers().is_empty(), "{:#?}", d.leftovers());
}
