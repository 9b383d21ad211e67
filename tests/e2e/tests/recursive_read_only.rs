//! Recursive read-only mounts (kubelet's `recursiveReadOnly: Enabled`, CRI
//! `Mount.recursive_read_only`): Status says every handler makes them; a
//! read-only volume with a tmpfs mounted inside it is read-only all the
//! way down with the flag (the tmpfs too) and only at its top without it,
//! under youki and runc; the flag without `readonly` or with propagation
//! from the host is refused by name.

use std::path::{Path, PathBuf};

use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;

/// A host directory with a tmpfs mounted on its `tmpfs` subdirectory,
/// unmounted and removed when dropped.
struct VolumeWithSubmount {
    dir: tempfile::TempDir,
}

impl VolumeWithSubmount {
    fn new() -> VolumeWithSubmount {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tmpfs");
        std::fs::create_dir(&sub).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &sub,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        VolumeWithSubmount { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for VolumeWithSubmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(
            &self.dir.path().join("tmpfs"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
}

fn volume(
    host: &Path,
    readonly: bool,
    rro: bool,
    propagation: cri::MountPropagation,
) -> cri::Mount {
    cri::Mount {
        container_path: "/mnt".into(),
        host_path: host.display().to_string(),
        readonly,
        recursive_read_only: rro,
        propagation: propagation as i32,
        ..Default::default()
    }
}

/// Whether `touch path` inside container `id` worked; panics on any
/// failure other than a read-only filesystem.
async fn can_write(s: &mut Setup, id: &str, path: &str) -> bool {
    let r = s.exec(id, &["touch", path], 30).await.unwrap();
    if r.exit_code == 0 {
        return true;
    }
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("Read-only file system"), "touch {path}: {err}");
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn recursive_read_only_with_youki() {
    recursive_read_only("rro", "").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recursive_read_only_with_runc() {
    recursive_read_only("rroc", "runc").await;
}

async fn recursive_read_only(tag: &str, handler: &str) {
    // Host paths outside kubelet's root: the privileged profile admits them.
    let Some(mut s) = setup_with(tag, PRIVILEGED).await else {
        return;
    };
    let status =
        s.c.runtime
            .status(cri::StatusRequest::default())
            .await
            .unwrap()
            .into_inner();
    for h in &status.runtime_handlers {
        let f = h.features.as_ref().unwrap();
        assert!(f.recursive_read_only_mounts, "handler {:?}: {f:?}", h.name);
    }
    assert!(status.runtime_handlers.iter().any(|h| h.name == handler));

    let vol = VolumeWithSubmount::new();
    let pod = s.pod(&format!("{tag}-pod"), handler).await;
    let private = cri::MountPropagation::PropagationPrivate;
    let mut rro = s.config("rro", &["sleep", "300"]);
    rro.mounts = vec![volume(&vol.path(), true, true, private)];
    let rro = s.run(&pod, rro).await;
    let mut ro = s.config("ro", &["sleep", "300"]);
    ro.mounts = vec![volume(&vol.path(), true, false, private)];
    let ro = s.run(&pod, ro).await;

    assert!(!can_write(&mut s, &rro, "/mnt/top").await);
    assert!(
        !can_write(&mut s, &rro, "/mnt/tmpfs/below").await,
        "rro left the submount writable"
    );
    assert!(!can_write(&mut s, &ro, "/mnt/top").await);
    assert!(
        can_write(&mut s, &ro, "/mnt/tmpfs/below").await,
        "ro alone is not recursive"
    );
    assert!(vol.path().join("tmpfs/below").exists());

    // Refused by name: without readonly, and with propagation from the host.
    for (name, readonly, prop, why) in [
        ("rw", false, private, "needs readonly"),
        (
            "slave",
            true,
            cri::MountPropagation::PropagationHostToContainer,
            "PROPAGATION_PRIVATE",
        ),
    ] {
        let mut cfg = s.config(name, &["sleep", "300"]);
        cfg.mounts = vec![volume(&vol.path(), readonly, true, prop)];
        let e = s.create(&pod, cfg).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        assert!(
            e.message().contains("mounts[0].recursive_read_only") && e.message().contains(why),
            "{e}"
        );
    }
    s.stop_remove(&rro).await;
    s.stop_remove(&ro).await;
}
