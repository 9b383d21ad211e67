//! `vordr install` / `vordr uninstall` as an admin runs them, on a
//! temporary host root: dry run, install, a second install, the unit
//! checked by `systemd-analyze verify`, uninstall, and `--wait
//! --uninstall-on-stop` ended by SIGTERM.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const VORDR: &str = env!("CARGO_BIN_EXE_vordr");

const KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\n\
kind: KubeletConfiguration\n\
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n\
cgroupDriver: cgroupfs\n";

/// path -> (mode, bytes or link target) of every entry under `root`.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let data = if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.insert(rel, (m.permissions().mode() & 0o7777, data));
        }
    }
    out
}

/// A host root with a kubelet config, and a source directory with this
/// build's vordr and a stand-in shim (only its bytes matter here).
fn host() -> (tempfile::TempDir, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let kc = root.path().join("var/lib/kubelet/config.yaml");
    std::fs::create_dir_all(kc.parent().unwrap()).unwrap();
    std::fs::write(&kc, KUBELET_CONFIG).unwrap();
    let src = tempfile::tempdir().unwrap();
    if std::fs::hard_link(VORDR, src.path().join("vordr")).is_err() {
        std::fs::copy(VORDR, src.path().join("vordr")).unwrap();
    }
    std::fs::write(src.path().join("containerd-shim-vordr-v1"), "#!/bin/sh\n").unwrap();
    (root, src)
}

fn vordr(args: &[&str], root: &Path, src: &Path) -> Output {
    let mut c = Command::new(VORDR);
    c.args(args).arg("--host-root").arg(root);
    if args[0] == "install" {
        c.arg("--source-dir").arg(src);
    }
    c.env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn install_again_and_uninstall_from_the_command_line() {
    let (root, src) = host();
    let r = root.path();
    let before = tree(r);

    let o = vordr(&["install", "--dry-run"], r, src.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("dry run: 8 changes, none made:\n"), "{out}");
    assert!(
        out.contains("\n  would install /usr/local/bin/vordr ("),
        "{out}"
    );
    assert!(out.contains(
        "\n  would set containerRuntimeEndpoint in /var/lib/kubelet/config.yaml: \
         unix:///run/containerd/containerd.sock -> unix:///run/vordr/vordr.sock\n"
    ));
    assert!(
        out.contains("node label: skipped, KUBERNETES_SERVICE_HOST is not set"),
        "{out}"
    );
    assert_eq!(tree(r), before, "--dry-run wrote something");

    let o = vordr(&["install", "--check"], r, src.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("Error: not installed: 8 changes pending:\n"),
        "{}",
        stderr(&o)
    );

    let o = vordr(&["install"], r, src.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("\ninstalled Vordr 0.1.0 (8 changes)\n"),
        "{out}"
    );
    assert!(
        out.contains("warning: not restarting anything (PID 1's root is not"),
        "{out}"
    );
    let installed = r.join("usr/local/bin/vordr");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(VORDR).unwrap()
    );
    let v = Command::new(&installed).arg("--version").output().unwrap();
    assert_eq!(stdout(&v), "vordr 0.1.0\n");
    let config = std::fs::read_to_string(r.join("etc/vordr/config.toml")).unwrap();
    let embedded = Command::new(VORDR).arg("config").output().unwrap();
    assert_eq!(config, stdout(&embedded));
    let kc = std::fs::read_to_string(r.join("var/lib/kubelet/config.yaml")).unwrap();
    assert_eq!(
        kc,
        KUBELET_CONFIG.replace(
            "unix:///run/containerd/containerd.sock",
            "unix:///run/vordr/vordr.sock"
        )
    );
    // Installed, but no Vordr answers in this root: not ready.
    let o = vordr(&["install", "--check"], r, src.path());
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("Error: Vordr does not answer Version on /run/vordr/vordr.sock"),
        "{}",
        stderr(&o)
    );

    // Again: nothing to change, nothing touched.
    let installed_tree = tree(r);
    let o = vordr(&["install"], r, src.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Vordr 0.1.0 is installed: nothing to change\n"),
        "{}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains("not restarting"), "{}", stdout(&o));
    assert_eq!(tree(r), installed_tree);

    verify_unit(r);

    let o = vordr(&["uninstall", "--dry-run"], r, src.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("dry run: 10 changes, none made:\n"),
        "{}",
        stdout(&o)
    );
    assert_eq!(tree(r), installed_tree);
    let o = vordr(&["uninstall"], r, src.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\nuninstalled Vordr (10 changes)\n"),
        "{}",
        stdout(&o)
    );
    let after = tree(r);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{} not restored", k.display());
    }
    // Only the usual host directories it created stay.
    let left: Vec<_> = after
        .keys()
        .filter(|k| !before.contains_key(*k) && !r.join(k).is_dir())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let o = vordr(&["uninstall", "--check"], r, src.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = vordr(&["uninstall"], r, src.path());
    assert!(
        stdout(&o).contains("Vordr is not installed: nothing to change\n"),
        "{}",
        stdout(&o)
    );
}

/// `systemd-analyze verify` on the installed unit, its ExecStart pointing
/// into the temporary root (the binary there is this build's vordr); a
/// broken copy must be refused, or the check proves nothing.
fn verify_unit(r: &Path) {
    let unit = std::fs::read_to_string(r.join("etc/systemd/system/vordr.service")).unwrap();
    let exec = "ExecStart=/usr/local/bin/vordr serve --config /etc/vordr/config.toml";
    assert!(unit.contains(exec), "{unit}");
    let dir = tempfile::tempdir().unwrap();
    let verify = |text: &str| {
        let path = dir.path().join("vordr.service");
        std::fs::write(&path, text).unwrap();
        let o = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (scripts/setup.sh installs systemd)");
        let complaints: Vec<String> = format!("{}{}", stdout(&o), stderr(&o))
            .lines()
            .filter(|l| l.contains("vordr.service"))
            .map(String::from)
            .collect();
        (o.status.success(), complaints)
    };
    let local = unit.replace(
        exec,
        &format!(
            "ExecStart={} serve --config {}",
            r.join("usr/local/bin/vordr").display(),
            r.join("etc/vordr/config.toml").display()
        ),
    );
    assert_eq!(verify(&local), (true, vec![]), "{local}");
    let (_, complaints) = verify(&local.replace("KillMode=process", "KillMode=procss"));
    assert!(
        complaints.iter().any(|c| c.contains("procss")),
        "{complaints:?}"
    );
}

#[test]
fn wait_then_uninstall_on_sigterm() {
    let (root, src) = host();
    let r = root.path();
    let before = tree(r);
    let mut child = Command::new(VORDR)
        .args(["install", "--wait", "--uninstall-on-stop", "--host-root"])
        .arg(r)
        .arg("--source-dir")
        .arg(src.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let l = lines.next().expect("output ended").unwrap();
        seen.push(l.clone());
        if l == "waiting for SIGTERM" {
            break;
        }
        assert!(Instant::now() < deadline, "{seen:#?}");
    }
    assert!(r.join("usr/local/bin/vordr").exists());
    assert_eq!(child.try_wait().unwrap(), None, "it waits");
    nix_kill(child.id());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let st = child.wait().unwrap();
    assert!(st.success(), "{st}: {rest:#?}");
    assert_eq!(rest[0], "SIGTERM");
    assert!(
        rest.contains(&"uninstalled Vordr (10 changes)".to_string()),
        "{rest:#?}"
    );
    let after = tree(r);
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{} not restored", k.display());
    }
    assert!(!r.join("usr/local/bin/vordr").exists());
    assert!(!r.join("etc/vordr").exists());
}

fn nix_kill(pid: u32) {
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}
