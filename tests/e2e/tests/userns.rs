//! User-namespaced pods (kubelet's `hostUsers: false`): idmapped image
//! layers and volumes, shared PID namespaces, mappings refused.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;

/// `sh -c script` in container `id`: exit code and stdout + stderr.
async fn sh(s: &mut Setup, id: &str, script: &str) -> (i32, String) {
    let r = s.exec(id, &["sh", "-c", script], 10).await.unwrap();
    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&r.stderr));
    (r.exit_code, out)
}

fn pid_mode_pod(mut c: cri::ContainerConfig) -> cri::ContainerConfig {
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.namespace_options.as_mut().unwrap().pid = cri::NamespaceMode::Pod as i32;
    c
}

/// Mounts under the daemon's idmap staging directory (none once every
/// container is created).
fn staging_mounts(s: &Setup) -> Vec<String> {
    let idmap = s.d.run_dir.join("idmap").display().to_string();
    s.d.mounts()
        .into_iter()
        .filter(|m| m.starts_with(&idmap))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn idmapped_rootfs_and_volume_youki() {
    idmapped_rootfs_and_volume("", 400_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idmapped_rootfs_and_volume_runc() {
    idmapped_rootfs_and_volume("runc", 420_000).await;
}

/// The image's files and a volume's keep their owners inside the pod's
/// user namespace (root's files are root's, and the container's root may
/// write them); what the container writes to its rootfs is stored with the
/// host ids its namespace maps to, what it writes to the volume with its
/// own ids (the volume is idmapped too).
async fn idmapped_rootfs_and_volume(handler: &str, host: u32) {
    let tag = format!("userns-idmap{handler}");
    let Some(mut s) = setup(&tag).await else {
        return;
    };
    let cfg = s.userns_pod_config("idmap", host);
    let uid = cfg.metadata.as_ref().unwrap().uid.clone();
    let vol = s.d.pod_volume_dir(&uid).join("volumes/data");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("owned-by-root"), b"host\n").unwrap();
    std::fs::set_permissions(
        vol.join("owned-by-root"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let pod = s.run_pod(cfg, handler).await;
    let mut c = s.config("app", &["sleep", "1000"]);
    c.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: vol.display().to_string(),
        ..Default::default()
    }];
    let id = s.run(&pod, c).await;
    assert!(
        staging_mounts(&s).is_empty(),
        "staging mounts left after create: {:?}",
        staging_mounts(&s)
    );

    let (code, out) = sh(
        &mut s,
        &id,
        "stat -c '%u:%g %n' / /bin/busybox /etc /data /data/owned-by-root \
         /etc/hostname /etc/hosts /etc/resolv.conf",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    for line in out.lines() {
        assert!(line.starts_with("0:0 "), "not root-owned inside: {out}");
    }
    // Root may write root's files: in the image, in the volume.
    let (code, out) = sh(
        &mut s,
        &id,
        "echo inside >> /data/owned-by-root && echo new > /data/created && \
         echo x > /etc/written && mkdir /made && touch /made/file && echo ok",
    )
    .await;
    assert_eq!((code, out.trim()), (0, "ok"), "{out}");

    // On the host: the volume's files have the container's ids (the
    // mount is idmapped), the rootfs's new files the mapped host ids.
    assert_eq!(
        std::fs::read_to_string(vol.join("owned-by-root")).unwrap(),
        "host\ninside\n"
    );
    let created = std::fs::metadata(vol.join("created")).unwrap();
    assert_eq!((created.uid(), created.gid()), (0, 0));
    let upper = s.d.root.join("containers").join(&id).join("upper");
    for f in ["etc/written", "made", "made/file"] {
        let m = std::fs::metadata(upper.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (host, host), "{f} in the upper layer");
    }
    // The image's layer itself is untouched: still owned by host root.
    let busybox_layers: Vec<_> = std::fs::read_dir(s.d.root.join("images/snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(!busybox_layers.is_empty());

    s.stop_remove(&id).await;
    s.d.remove_all_pods().await;
    s.d.drain_pool().await;
    let left: Vec<_> =
        s.d.leftovers()
            .into_iter()
            .filter(|l| l.starts_with("mount"))
            .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        !s.d.run_dir.join("idmap").join(&id).exists(),
        "staging directory left"
    );
    // The host's volume survived the teardown.
    assert!(vol.join("created").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_pid_user_namespaced_pod_youki() {
    shared_pid("", 440_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_pid_user_namespaced_pod_runc() {
    shared_pid("runc", 460_000).await;
}

/// critest's NamespaceMode_POD: a user-namespaced pod whose containers
/// share its PID namespace (the pod init's, owned by the pod's user
/// namespace), with idmapped layers.
async fn shared_pid(handler: &str, host: u32) {
    let tag = format!("userns-pid{handler}");
    let Some(mut s) = setup(&tag).await else {
        return;
    };
    let cfg = s.userns_pod_config("upid", host);
    let pod = s.run_pod(cfg, handler).await;
    let a = s
        .run(&pod, pid_mode_pod(s.config("a", &["sleep", "1001"])))
        .await;
    let b = s
        .run(&pod, pid_mode_pod(s.config("b", &["sleep", "1002"])))
        .await;
    let (code, out) = sh(
        &mut s,
        &b,
        "cat /proc/self/uid_map; ps -o pid,args; stat -c '%u %n' /bin/busybox",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let map: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", &host.to_string(), "65536"], "{out}");
    assert!(
        out.contains("__pod-init") && out.contains("sleep 1001") && out.contains("sleep 1002"),
        "{out}"
    );
    assert!(out.contains("0 /bin/busybox"), "{out}");

    // The PID namespace belongs to the pod's user namespace.
    let init: u32 = std::fs::read_to_string(s.d.ns_dir(&pod.0).join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pidns = std::fs::File::open(format!("/proc/{init}/ns/pid")).unwrap();
    // SAFETY: NS_GET_USERNS on a namespace file we hold; returns a new fd.
    let owner = unsafe { nix::libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&pidns), 0xb701) };
    assert!(owner >= 0, "NS_GET_USERNS failed");
    // SAFETY: the descriptor the ioctl just returned.
    let owner = std::fs::File::from(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(owner)
    });
    let pin = std::fs::metadata(s.d.ns_dir(&pod.0).join("user")).unwrap();
    assert_eq!(owner.metadata().unwrap().ino(), pin.ino());

    for id in [a, b] {
        s.stop_remove(&id).await;
    }
    s.d.remove_all_pods().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{init}")).exists() {
        assert!(Instant::now() < deadline, "the pod init outlived its pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// critest's "should fail if container ID 0 is not mapped" and the
/// kernel's rules: InvalidArgument naming the field, nothing created.
#[tokio::test(flavor = "multi_thread")]
async fn bad_mappings_are_refused() {
    let Some(mut s) = setup("userns-bad").await else {
        return;
    };
    let bad = |uids: Vec<(u32, u32, u32)>, gids: Vec<(u32, u32, u32)>| {
        let mut cfg = s.userns_pod_config("bad", 500_000);
        let to = |l: Vec<(u32, u32, u32)>| {
            l.into_iter()
                .map(|(container_id, host_id, length)| cri::IdMapping {
                    container_id,
                    host_id,
                    length,
                })
                .collect::<Vec<_>>()
        };
        let u = cfg
            .linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options
            .as_mut()
            .unwrap()
            .userns_options
            .as_mut()
            .unwrap();
        u.uids = to(uids);
        u.gids = to(gids);
        cfg
    };
    let field = "config.linux.security_context.namespace_options.userns_options";
    let cases = [
        (
            bad(vec![(1, 1000, 100_000)], vec![(1, 1000, 100_000)]),
            format!("{field}.uids"),
            "container id 0 is not mapped",
        ),
        (
            bad(vec![(0, 1000, 100_000)], vec![(1, 1000, 100_000)]),
            format!("{field}.gids"),
            "container id 0 is not mapped",
        ),
        (
            bad(
                vec![(0, 1000, 100_000), (0, 2000, 100_000)],
                vec![(0, 1000, 100_000)],
            ),
            format!("{field}.uids[1]"),
            "overlap",
        ),
        (
            bad(vec![(0, 1000, 0)], vec![(0, 1000, 1)]),
            format!("{field}.uids[0].length"),
            "greater than 0",
        ),
        (
            bad(vec![(0, u32::MAX - 1, 2)], vec![(0, 1000, 1)]),
            format!("{field}.uids[0]"),
            "last id",
        ),
    ];
    for (cfg, want_field, want) in cases {
        let e = run_pod(&mut s.c, cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(
            e.message().contains(&want_field) && e.message().contains(want),
            "{e}"
        );
    }
    assert!(list_pods(&mut s.c).await.is_empty());
    s.d.drain_pool().await;
    let left = s.d.leftovers();
    assert!(left.is_empty(), "{left:?}");
}

/// A daemon killed while a user-namespaced container's volume is staged
/// (crash point `container.shim-started`: after the spec, before the
/// runtime's create): the restart releases the staging mounts without
/// touching the host's files, and the container can then be created.
#[tokio::test(flavor = "multi_thread")]
async fn crash_with_volumes_staged_is_reconciled() {
    let Some(mut s) = setup("userns-crash").await else {
        return;
    };
    let cfg = s.userns_pod_config("crash", 480_000);
    let uid = cfg.metadata.as_ref().unwrap().uid.clone();
    let vol = s.d.pod_volume_dir(&uid).join("volumes/data");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("keep"), b"host\n").unwrap();
    let pod = s.run_pod(cfg, "").await;
    let mut c = s.config("app", &["sleep", "1000"]);
    c.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: vol.display().to_string(),
        ..Default::default()
    }];

    s.d.terminate();
    s.d.env = vec![(
        vordr_cri::faults::ENV.to_string(),
        "container.shim-started".to_string(),
    )];
    s.d.spawn().await;
    s.c = s.d.client().await;
    assert!(s.create(&pod, c.clone()).await.is_err());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.d.exited() {
        assert!(Instant::now() < deadline, "the daemon did not crash");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !staging_mounts(&s).is_empty(),
        "nothing was staged before the crash point"
    );

    s.d.kill9();
    s.d.env.clear();
    s.d.spawn().await;
    s.c = s.d.client().await;
    assert!(staging_mounts(&s).is_empty(), "{:?}", staging_mounts(&s));
    let left: Vec<_> = std::fs::read_dir(s.d.run_dir.join("idmap"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging dirs left: {left:?}");
    assert_eq!(std::fs::read(vol.join("keep")).unwrap(), b"host\n");
    let id = s.run(&pod, c).await;
    let (code, out) = sh(&mut s, &id, "stat -c %u /data/keep").await;
    assert_eq!((code, out.trim()), (0, "0"), "{out}");
    s.stop_remove(&id).await;
    s.d.remove_all_pods().await;
}
