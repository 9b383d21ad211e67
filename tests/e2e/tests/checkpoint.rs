//! CheckpointContainer end to end. Whether criu can checkpoint on this
//! kernel is found out here independently (`criu check`): where it can (the
//! cgroup v2 guest's 6.1 kernel), a running container under youki and runc
//! is dumped into an archive laid out as CRI-O's (criu's images, the spec,
//! what the container was, its rootfs diff and deleted files) and keeps
//! running; where it cannot (Debian's criu 3.17 on this host's 6.18 kernel
//! does not know its vDSO), the call fails with FailedPrecondition naming
//! criu's complaint and leaves no file. Bad requests fail either way.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use tonic::Code;
use vordr_e2e::setup::*;
use vordr_e2e::*;

/// `Ok(())` when `criu check` passes here, else criu's words (or that it
/// is not installed).
fn criu_here() -> Result<(), String> {
    match std::process::Command::new("criu").arg("check").output() {
        Err(e) => Err(format!("criu: {e}")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
    }
}

async fn checkpoint(s: &mut Setup, id: &str, location: &str) -> Result<(), tonic::Status> {
    s.c.runtime
        .checkpoint_container(cri::CheckpointContainerRequest {
            container_id: id.into(),
            location: location.into(),
            timeout: 120,
        })
        .await
        .map(|_| ())
}

/// Every entry of a tar archive: name and contents (files only).
fn archive(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let f = std::fs::File::open(path).unwrap();
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(f).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

#[tokio::test]
async fn bad_checkpoint_requests_are_refused_by_name() {
    let Some(mut s) = setup("ckpt-bad").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pod = s.pod("ckpt-bad", "").await;
    let id = s.run(&pod, s.config("app", &["sleep", "1000"])).await;
    for (location, what) in [
        ("", "empty"),
        ("relative.tar", "not an absolute path"),
        ("/tmp/../etc/x.tar", ".."),
    ] {
        let e = checkpoint(&mut s, &id, location).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{location:?}: {e}");
        assert!(
            e.message().contains("location") && e.message().contains(what),
            "{e}"
        );
    }
    let target = dir.path().join("c.tar");
    let e = checkpoint(&mut s, "no-such-container", target.to_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    // An existing file is never overwritten, a symlink never followed.
    std::fs::write(&target, b"keep").unwrap();
    let e = checkpoint(&mut s, &id, target.to_str().unwrap())
        .await
        .unwrap_err();
    if criu_here().is_ok() {
        assert_eq!(e.code(), Code::AlreadyExists, "{e}");
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    // A container that is not running cannot be checkpointed.
    let done = s.run(&pod, s.config("done", &["true"])).await;
    s.wait_exit(&done).await;
    let e = checkpoint(&mut s, &done, dir.path().join("d.tar").to_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("running"), "{e}");
    assert!(!dir.path().join("d.tar").exists());
    s.d.remove_all_pods().await;
}

async fn checkpoint_a_running_container(handler: &str) {
    let tag = format!(
        "ckpt-{}",
        if handler.is_empty() { "youki" } else { handler }
    );
    let Some(mut s) = setup(&tag).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pod = s.pod(&tag, handler).await;
    let script = "echo made > /tmp/made; rm /etc/group; echo ready; exec sleep 1000";
    let id = s.run(&pod, s.config("app", &["sh", "-c", script])).await;
    s.wait_log(&tag, "app", "ready").await;
    let target = dir.path().join("checkpoint.tar");
    let result = checkpoint(&mut s, &id, target.to_str().unwrap()).await;
    let audit = std::process::Command::new(vordr_bin())
        .args(["audit", "--all", "--root"])
        .arg(&s.d.root)
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(
        audit.contains("CheckpointContainer"),
        "not audited: {audit}"
    );
    let here = criu_here();
    eprintln!("criu check here: {here:?}");
    match here {
        Err(why) => {
            let e = result.expect_err("criu cannot run here, yet the checkpoint succeeded");
            assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
            assert!(e.message().contains("criu"), "{e}");
            let first = why.lines().find(|l| l.starts_with("Error")).unwrap_or("");
            assert!(
                first.is_empty() || e.message().contains(first.trim()),
                "criu said {first:?}, the error says {e}"
            );
            assert!(!target.exists(), "a failed checkpoint left its archive");
        }
        Ok(()) => {
            result.unwrap_or_else(|e| panic!("checkpoint: {e}\n{}", s.d.log()));
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let files = archive(&target);
            let names: Vec<&String> = files.keys().collect();
            assert!(
                files
                    .keys()
                    .any(|n| n.starts_with("checkpoint/") && n.ends_with(".img")),
                "no criu images: {names:?}"
            );
            let spec: serde_json::Value = serde_json::from_slice(&files["spec.dump"]).unwrap();
            assert_eq!(spec["process"]["args"][0], "sh");
            let config: serde_json::Value = serde_json::from_slice(&files["config.dump"]).unwrap();
            assert_eq!(config["id"], id.as_str());
            assert_eq!(config["name"], "app");
            let deleted: Vec<String> = serde_json::from_slice(&files["deleted.files"]).unwrap();
            assert_eq!(deleted, ["etc/group"]);
            let diff = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(diff.path(), &files["rootfs-diff.tar"]).unwrap();
            let diff = archive(diff.path());
            assert_eq!(
                diff.get("tmp/made").map(|v| v.as_slice()),
                Some(&b"made\n"[..])
            );
            // The container runs on after its checkpoint.
            let st = s.status(&id).await;
            assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
            let r = s.exec(&id, &["cat", "/tmp/made"], 10).await.unwrap();
            assert_eq!(r.stdout, b"made\n");
        }
    }
    // The staging directory is gone either way.
    let staging = s.d.root.join("containers").join(&id).join("checkpoint");
    assert!(!staging.exists(), "{} left behind", staging.display());
    s.d.remove_all_pods().await;
}

#[tokio::test]
async fn checkpoint_with_youki() {
    checkpoint_a_running_container("").await;
}

#[tokio::test]
async fn checkpoint_with_runc() {
    checkpoint_a_running_container("runc").await;
}
