//! Modes of the daemon's directories, files and sockets, set explicitly:
//! this test binary runs under `umask 000` (the daemons it starts inherit
//! it), so anything left to the umask would come out 0777 / 0666, or 0755 /
//! 0644 under the 022 the daemon keeps at least.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use vordr_e2e::setup::*;
use vordr_e2e::*;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

/// Every (path, expected mode) that differs, with the actual mode.
fn wrong_modes(expected: &[(PathBuf, u32)]) -> Vec<String> {
    expected
        .iter()
        .filter(|(p, m)| mode(p) != *m)
        .map(|(p, m)| format!("{} is {:o}, not {m:o}", p.display(), mode(p)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn state_directories_files_and_sockets_have_explicit_modes() {
    // Before any daemon starts: the umask is per process and inherited.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let Some(mut s) = setup("modes").await else {
        return;
    };
    let pod = s.pod("modes", "").await;
    let id = s.run(&pod, s.config("app", &["sleep", "1000"])).await;
    let v = container_info(&mut s.c, &id).await;
    let shim_socket = PathBuf::from(
        v["shimAddress"]
            .as_str()
            .unwrap()
            .trim_start_matches("unix://"),
    );
    let (root, run) = (s.d.root.clone(), s.d.run_dir.clone());
    let sockets = run.join("s");
    let attach_socket =
        vordr_shim_api::socket_path(&sockets, &vordr_shim_api::attach_socket_name(&id));
    let bundle = run.join("bundles").join(&id);
    let db = root.join("vordr.db");
    let side = |suffix: &str| PathBuf::from(format!("{}{suffix}", db.display()));
    let expected = vec![
        (root.clone(), 0o711),
        (run.clone(), 0o711),
        (db.clone(), 0o600),
        (side("-wal"), 0o600),
        (side("-shm"), 0o600),
        (root.join("images"), 0o700),
        (root.join("images/content"), 0o700),
        (root.join("images/snapshots"), 0o700),
        (root.join("containers"), 0o700),
        (root.join("containers").join(&id), 0o700),
        (root.join("pods"), 0o711),
        (run.join("ns"), 0o711),
        (run.join("bundles"), 0o711),
        (bundle.clone(), 0o711),
        (bundle.join("config.json"), 0o600),
        (run.join("runtime"), 0o700),
        (run.join("netavark"), 0o700),
        (sockets.clone(), 0o700),
        (shim_socket.clone(), 0o600),
        (attach_socket.clone(), 0o600),
        (run.join("events.sock"), 0o600),
        (s.d.socket.clone(), 0o600),
    ];
    for sock in [&shim_socket, &attach_socket, &run.join("events.sock")] {
        assert!(
            std::fs::symlink_metadata(sock)
                .unwrap()
                .file_type()
                .is_socket(),
            "{} is not a socket",
            sock.display()
        );
    }
    assert_eq!(wrong_modes(&expected), Vec::<String>::new());
    // Nothing the daemon made in its root or run directory is writable by
    // group or others.
    let mut writable = Vec::new();
    let mut stack = vec![root.clone(), run.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            // Image layers and container rootfs keep the image's modes.
            let inside_images = p.starts_with(root.join("images/snapshots"))
                || p.starts_with(root.join("containers"))
                || p.ends_with("rootfs");
            if md.file_type().is_symlink() || inside_images {
                continue;
            }
            if md.mode() & 0o022 != 0 {
                writable.push(format!("{} {:o}", p.display(), md.mode() & 0o7777));
            }
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    assert_eq!(writable, Vec::<String>::new());

    // A node upgraded from a version that left everything 0755 / 0644:
    // the next start fixes it.
    s.d.terminate();
    for (p, m) in [
        (&root, 0o755),
        (&run, 0o755),
        (&root.join("containers"), 0o755),
        (&root.join("images/content"), 0o755),
        (&root.join("images/snapshots"), 0o755),
        (&run.join("bundles"), 0o755),
        (&run.join("s"), 0o755),
        (&db, 0o644),
    ] {
        nix::sys::stat::fchmodat(
            None,
            p.as_path(),
            nix::sys::stat::Mode::from_bits_truncate(m),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .unwrap();
    }
    s.d.spawn().await;
    let fixed: Vec<(PathBuf, u32)> = expected
        .into_iter()
        .filter(|(p, _)| p.starts_with(&root) && !p.starts_with(&bundle) || p == &run)
        .chain([(run.join("bundles"), 0o711), (run.join("s"), 0o700)])
        .filter(|(p, _)| p.exists())
        .collect();
    assert_eq!(wrong_modes(&fixed), Vec::<String>::new());
}
