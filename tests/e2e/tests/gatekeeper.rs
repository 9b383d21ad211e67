//! The SPARK gatekeeper end to end: real pods and containers refused or
//! admitted per profile and namespace, nothing left behind by a denial,
//! every decision in the audit table that `vordr audit` shows.

use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;

/// A container the restricted profile admits: non-root, no escalation,
/// RuntimeDefault seccomp, every capability dropped.
fn restricted_ok(s: &Setup, name: &str) -> cri::ContainerConfig {
    let mut cfg = s.config(name, &["sleep", "300"]);
    let sc = security(&mut cfg);
    sc.run_as_user = Some(cri::Int64Value { value: 1000 });
    sc.no_new_privs = true;
    sc.capabilities = Some(cri::Capability {
        drop_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    cfg
}

fn security(cfg: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    cfg.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
}

fn host_namespaces(
    cfg: &mut cri::PodSandboxConfig,
    network: bool,
    pid: bool,
) -> &mut cri::PodSandboxConfig {
    let node = |b| {
        if b {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        }
    };
    cfg.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            network: node(network),
            pid: node(pid),
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg
}

/// `vordr audit --json` rows.
fn audit(d: &Daemon, args: &[&str]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(vordr_bin())
        .args(["audit", "--json", "-n", "1000", "--root"])
        .arg(&d.root)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn containers_of(s: &mut Setup, pod: &str) -> usize {
    s.c.runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
        .len()
}

fn dir_entries(p: &std::path::Path) -> usize {
    std::fs::read_dir(p).map(|r| r.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn restricted_profile_denies_each_rule_and_admits_a_restricted_pod() {
    let Some(mut s) = setup_with("gkres", "profile = \"restricted\"").await else {
        return;
    };
    let denied = |e: tonic::Status, rule: &str, cause: &str| {
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let m = e.message();
        assert!(m.starts_with(&format!("gatekeeper: rule {rule} (")), "{m}");
        assert!(m.contains(cause), "{m} lacks {cause:?}");
        assert!(
            m.ends_with("; profile \"restricted\" for namespace \"e2e\""),
            "{m}"
        );
    };

    // Pods: host network and host PID are refused before anything exists.
    let mut hostnet = pod_config("gk-hostnet");
    host_namespaces(&mut hostnet, true, false);
    let e = run_pod(&mut s.c, hostnet).await.unwrap_err();
    denied(
        e,
        "3",
        "pod \"gk-hostnet\" uses the host network (network mode default)",
    );
    let mut hostpid = pod_config("gk-hostpid");
    host_namespaces(&mut hostpid, false, true);
    let e = run_pod(&mut s.c, hostpid).await.unwrap_err();
    denied(e, "5", "pod \"gk-hostpid\" uses the host PID namespace");
    assert!(list_pods(&mut s.c).await.is_empty());
    assert_eq!(dir_entries(&s.d.root.join("pods")), 0);

    // A pod of its own admits only restricted containers.
    let pod = s.pod("gk-pod", "").await;
    let mut cases: Vec<(cri::ContainerConfig, &str, &str)> = Vec::new();
    let mut c = restricted_ok(&s, "privileged");
    security(&mut c).privileged = true;
    cases.push((c, "1", "container \"privileged\" is privileged"));
    let mut c = restricted_ok(&s, "root");
    security(&mut c).run_as_user = None;
    cases.push((
        c,
        "2",
        "container \"root\" runs as UID 0 (the image's user) without a user namespace",
    ));
    let mut c = restricted_ok(&s, "sysadmin");
    security(&mut c)
        .capabilities
        .as_mut()
        .unwrap()
        .add_capabilities = vec!["SYS_ADMIN".into()];
    cases.push((c, "1", "container \"sysadmin\" adds SYS_ADMIN"));
    let mut c = restricted_ok(&s, "netadmin");
    security(&mut c)
        .capabilities
        .as_mut()
        .unwrap()
        .add_capabilities = vec!["CAP_NET_ADMIN".into()];
    cases.push((
        c,
        "3",
        "container \"netadmin\" adds NET_ADMIN (network mode default)",
    ));
    let mut c = restricted_ok(&s, "escalate");
    security(&mut c).no_new_privs = false;
    cases.push((c, "4", "allows privilege escalation"));
    let mut c = restricted_ok(&s, "hostroot");
    c.mounts.push(cri::Mount {
        host_path: "/".into(),
        container_path: "/host".into(),
        readonly: true,
        ..Default::default()
    });
    cases.push((
        c,
        "6",
        "container \"hostroot\" mounts host path \"/\" at \"/host\"",
    ));
    let mut c = restricted_ok(&s, "unconfined");
    security(&mut c).seccomp = None;
    cases.push((c, "7", "asks for no seccomp profile (Unconfined)"));
    let n = cases.len();
    for (cfg, rule, cause) in cases {
        let e = s.create(&pod, cfg).await.unwrap_err();
        denied(e, rule, cause);
    }
    assert_eq!(containers_of(&mut s, &pod.0).await, 0);
    assert_eq!(dir_entries(&s.d.root.join("containers")), 0);
    assert_eq!(dir_entries(&s.d.run_dir.join("bundles")), 0);

    // The restricted container runs, as UID 1000.
    let ok = restricted_ok(&s, "ok");
    let id = s.run(&pod, ok).await;
    let out = s.exec(&id, &["id", "-u"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
    s.set_memory_limit(&id, 64 << 20).await.unwrap();

    // Every decision is in the audit table, newest first.
    let rows = audit(&s.d, &[]);
    let denials = audit(&s.d, &["--denied"]);
    assert_eq!(denials.len(), 2 + n, "{denials:#?}");
    assert_eq!(rows.len(), 2 + n + 3, "{rows:#?}");
    assert_eq!(rows[0]["action"], "UpdateContainerResources");
    assert_eq!(rows[0]["verdict"], "allowed");
    assert_eq!(rows[1]["action"], "CreateContainer");
    assert_eq!(rows[1]["container"], "ok");
    let last = &rows[rows.len() - 1];
    assert_eq!(last["action"], "RunPodSandbox");
    assert_eq!(last["pod"], "gk-hostnet");
    assert_eq!(last["verdict"], "denied");
    assert_eq!(last["rule"], 3);
    assert_eq!(last["profile"], "restricted");
    assert!(denials.iter().all(|r| r["reason"]
        .as_str()
        .unwrap()
        .starts_with("gatekeeper: rule")));
    // The table view prints the same rows.
    let table = std::process::Command::new(vordr_bin())
        .args(["audit", "--denied", "--root"])
        .arg(&s.d.root)
        .output()
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert_eq!(table.lines().count(), 1 + 2 + n, "{table}");
    assert!(table.contains("e2e/gk-pod"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn baseline_namespaces_and_the_privileged_profile() {
    let gatekeeper = "[[gatekeeper.namespaces]]\nmatch = \"ops-*\"\nnetwork = \"admin\"\n\
                      allow_privileged = true\n\
                      [[gatekeeper.namespaces]]\nmatch = \"anything\"\nprofile = \"privileged\"\n";
    let Some(mut s) = setup_with("gkbase", gatekeeper).await else {
        return;
    };
    // Baseline (the default) in namespace e2e: host network refused, a
    // root container with the image's user admitted.
    let mut hostnet = pod_config("gk-b-hostnet");
    host_namespaces(&mut hostnet, true, false);
    let e = run_pod(&mut s.c, hostnet.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message()
            .ends_with("profile \"baseline\" for namespace \"e2e\""),
        "{e:?}"
    );
    let pod = s.pod("gk-b", "").await;
    let root = s.config("root", &["sleep", "300"]);
    let root_id = s.run(&pod, root).await;

    // ops-a: the host network and a privileged container are allowed.
    let mut ops = hostnet.clone();
    ops.metadata.as_mut().unwrap().namespace = "ops-a".into();
    // kubelet marks the pod of a privileged container privileged.
    let sc = ops.linux.as_mut().unwrap().security_context.as_mut();
    sc.unwrap().privileged = true;
    let ops_id = run_pod(&mut s.c, ops.clone()).await.unwrap();
    let mut privileged = s.config("priv", &["sleep", "300"]);
    security(&mut privileged).privileged = true;
    s.run(&(ops_id, ops), privileged).await;

    // "anything" runs privileged: host PID, / mounted, SYS_ADMIN, unsafe sysctls.
    let mut any = pod_config("gk-any");
    any.metadata.as_mut().unwrap().namespace = "anything".into();
    host_namespaces(&mut any, true, true);
    any.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("kernel.msgmax".into(), "65536".into());
    let any_id = run_pod(&mut s.c, any.clone()).await.unwrap();
    let mut wild = s.config("wild", &["sleep", "300"]);
    security(&mut wild).capabilities = Some(cri::Capability {
        add_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    wild.mounts.push(cri::Mount {
        host_path: "/".into(),
        container_path: "/host".into(),
        readonly: true,
        ..Default::default()
    });
    s.run(&(any_id, any), wild).await;
    let allowed: Vec<_> = audit(&s.d, &["--namespace", "anything"]);
    assert_eq!(allowed.len(), 2);
    assert!(allowed
        .iter()
        .all(|r| r["verdict"] == "allowed" && r["profile"] == "privileged"));

    // The policy is judged again on UpdateContainerResources: after a
    // restart with the restricted profile, the root container gets no update.
    s.d.terminate();
    let cfg = std::fs::read_to_string(&s.d.config).unwrap();
    let cfg = cfg.replacen(
        "[gatekeeper]\n",
        "[gatekeeper]\nprofile = \"restricted\"\n",
        1,
    );
    std::fs::write(&s.d.config, cfg).unwrap();
    s.d.spawn().await;
    s.c = s.d.client().await;
    let e = s.set_memory_limit(&root_id, 64 << 20).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().starts_with("gatekeeper: rule 2 (")
            && e.message().contains("container \"root\" runs as UID 0"),
        "{e:?}"
    );
    let last = &audit(&s.d, &[])[0];
    assert_eq!(last["action"], "UpdateContainerResources");
    assert_eq!(last["verdict"], "denied");
}
