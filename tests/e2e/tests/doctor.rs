//! `vordr doctor`: on this machine, what it reports must match what the
//! machine has (each fact found here independently of the doctor); on a
//! fake root missing pieces it exits non-zero naming them, and on one with
//! every piece it exits 0.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vordr_e2e::vordr_bin;

/// `vordr doctor ARGS`: exit code and stdout.
fn doctor(args: &[&str]) -> (i32, String) {
    let o = Command::new(vordr_bin())
        .arg("doctor")
        .args(args)
        .output()
        .expect("running vordr doctor");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.is_empty(), "stderr: {stderr}");
    (
        o.status.code().expect("an exit code"),
        String::from_utf8(o.stdout).unwrap(),
    )
}

/// `vordr doctor --json ARGS`: exit code and the checks.
fn doctor_json(args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out) = doctor(&all);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let checks = v.as_array().expect("a JSON array").clone();
    for c in &checks {
        let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["detail", "fix", "name", "status"], "{c}");
        let status = c["status"].as_str().unwrap();
        assert!(
            ["ok", "warning", "missing", "skipped"].contains(&status),
            "{c}"
        );
        // Every problem comes with a fix, nothing else does.
        assert_eq!(
            c["fix"].is_string(),
            status == "warning" || status == "missing",
            "{c}"
        );
    }
    (code, checks)
}

fn get<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

fn status<'a>(checks: &'a [Value], name: &str) -> &'a str {
    get(checks, name)["status"].as_str().unwrap()
}

fn detail<'a>(checks: &'a [Value], name: &str) -> &'a str {
    get(checks, name)["detail"].as_str().unwrap()
}

fn missing(checks: &[Value]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c["status"] == "missing")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn executable(p: &str) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn ok_if(yes: bool) -> &'static str {
    if yes {
        "ok"
    } else {
        "missing"
    }
}

/// This machine's cgroup layout, from the filesystems' magic numbers.
fn cgroup_layout() -> &'static str {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    let v2 = |p: &str| statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC);
    if v2("/sys/fs/cgroup") {
        "v2 (unified)"
    } else if v2("/sys/fs/cgroup/unified") {
        "hybrid"
    } else {
        "v1"
    }
}

#[test]
fn on_this_machine_the_report_matches_the_machine() {
    let (code, c) = doctor_json(&[]);
    assert_eq!(code, i32::from(!missing(&c).is_empty()), "{c:#?}");

    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap();
    let overlay = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    assert_eq!(status(&c, "overlayfs"), ok_if(overlay));

    let layout = cgroup_layout();
    assert!(
        detail(&c, "cgroups").starts_with(layout),
        "{layout}: {}",
        detail(&c, "cgroups")
    );
    // Vordr runs on v1 and hybrid layouts; they are worth a warning only.
    let expected = if layout == "v2 (unified)" {
        "ok"
    } else {
        "warning"
    };
    assert_eq!(status(&c, "cgroups"), expected, "{}", detail(&c, "cgroups"));
    if layout == "hybrid" {
        assert!(detail(&c, "cgroups").contains("cgroup2 at /sys/fs/cgroup/unified"));
    }
    for controller in ["cpu", "memory", "pids"] {
        assert!(
            detail(&c, "cgroups")
                .split([' ', ';'])
                .any(|w| w == controller),
            "{controller}: {}",
            detail(&c, "cgroups")
        );
    }

    let netavark = "/usr/lib/podman/netavark";
    assert_eq!(status(&c, "netavark"), ok_if(executable(netavark)));
    if executable(netavark) {
        assert_eq!(detail(&c, "netavark"), netavark);
    }
    let runc = if executable("/usr/sbin/runc") {
        "ok"
    } else {
        "warning"
    };
    assert_eq!(status(&c, "runtime-runc"), runc);
    assert_eq!(status(&c, "runtime-youki"), "ok");

    // The shim next to the vordr under test is the one found.
    let shim = vordr_bin().with_file_name("containerd-shim-vordr-v1");
    if executable(shim.to_str().unwrap()) {
        assert_eq!(status(&c, "shim"), "ok");
        // The daemon names it from its own (canonical) path.
        let shim = std::fs::canonicalize(&shim).unwrap();
        assert_eq!(detail(&c, "shim"), shim.display().to_string());
    }

    assert_eq!(
        status(&c, "gatekeeper"),
        "ok",
        "{}",
        detail(&c, "gatekeeper")
    );
    assert_eq!(status(&c, "namespaces"), "ok");
    let proc_status = std::fs::read_to_string("/proc/self/status").unwrap();
    let seccomp = proc_status.lines().any(|l| l.starts_with("Seccomp:"));
    assert_eq!(status(&c, "seccomp"), ok_if(seccomp));

    if let Ok(max) = std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        let max = max.trim();
        assert!(
            detail(&c, "user-namespaces").contains(&format!("user.max_user_namespaces = {max}")),
            "{}",
            detail(&c, "user-namespaces")
        );
        let expected = if max == "0" { "warning" } else { "ok" };
        assert_eq!(status(&c, "user-namespaces"), expected);
    }

    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .split(|ch: char| !ch.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (v.next().unwrap(), v.next().unwrap());
    // Kernels since 6.3 idmap tmpfs; the probe needs root.
    if version >= (6, 3) && nix::unistd::geteuid().is_root() {
        assert_eq!(
            status(&c, "idmapped-mounts"),
            "ok",
            "{}",
            detail(&c, "idmapped-mounts")
        );
    }

    let kubelet = [
        "/var/lib/kubelet/config.yaml",
        "/var/lib/kubelet/kubeadm-flags.env",
    ];
    if kubelet.iter().all(|p| !Path::new(p).exists()) {
        assert_eq!(status(&c, "kubelet"), "warning");
        assert!(detail(&c, "kubelet").contains("no kubelet"));
    }

    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    assert_eq!(
        detail(&c, "apparmor").starts_with("not enabled"),
        !apparmor,
        "{}",
        detail(&c, "apparmor")
    );
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    assert_eq!(detail(&c, "selinux").starts_with("not enabled"), !selinux);

    // Live probes ran.
    assert_ne!(status(&c, "clock"), "skipped");
    assert_ne!(status(&c, "clock"), "missing");
    assert!(detail(&c, "disk-space").contains("free of"));

    // The table says the same.
    let (code2, table) = doctor(&[]);
    assert_eq!(code2, code);
    for check in &c {
        let line = format!(
            "{:<8} {}",
            check["status"].as_str().unwrap(),
            check["name"].as_str().unwrap()
        );
        assert!(table.contains(&line), "{line:?} in\n{table}");
    }
    assert!(
        table
            .lines()
            .last()
            .unwrap()
            .starts_with(&format!("{} checks: ", c.len())),
        "{table}"
    );
}

fn put(root: &Path, p: &str, text: &str) {
    let p = root.join(p);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
}

fn put_exe(root: &Path, p: &str) {
    put(root, p, "#!/bin/sh\n");
    std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
}

const KUBELET_AT_CONTAINERD: &str = "kind: KubeletConfiguration\n\
    containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n";

#[test]
fn a_fake_root_missing_pieces_fails_naming_them() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put(root, "proc/filesystems", "nodev\ttmpfs\nnodev\toverlay\n");
    put(root, "var/lib/kubelet/config.yaml", KUBELET_AT_CONTAINERD);
    let dir = root.to_str().unwrap();
    let (code, c) = doctor_json(&["--host-root", dir]);
    assert_eq!(code, 1, "{c:#?}");
    let m = missing(&c);
    for name in [
        "namespaces",
        "seccomp",
        "cgroups",
        "netavark",
        "libseccomp",
        "shim",
        "kubelet",
    ] {
        assert!(m.contains(&name.to_string()), "{name} not in {m:?}");
    }
    assert_eq!(status(&c, "overlayfs"), "ok");
    assert_eq!(status(&c, "gatekeeper"), "ok");
    assert!(detail(&c, "kubelet").contains("containerd.sock"));
    // Nothing of this machine's kernel is reported for another root.
    assert_eq!(status(&c, "clock"), "skipped");
    assert_eq!(status(&c, "idmapped-mounts"), "warning");

    // The table names the same checks as missing, with their fixes.
    let (code, table) = doctor(&["--host-root", dir]);
    assert_eq!(code, 1);
    for name in &m {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("missing") && l.contains(name.as_str())),
            "{name} in\n{table}"
        );
    }
    assert!(
        table.contains("fix: vordr install --host-root /"),
        "{table}"
    );
}

#[test]
fn a_fake_root_with_every_piece_passes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    put(root, "proc/filesystems", "nodev\tcgroup2\nnodev\toverlay\n");
    for ns in ["mnt", "uts", "ipc", "pid", "net", "cgroup", "user"] {
        put(root, &format!("proc/self/ns/{ns}"), "");
    }
    put(root, "proc/self/status", "Name:\tvordr\nSeccomp:\t0\n");
    put(root, "proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
    put(
        root,
        "proc/self/mountinfo",
        "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
    );
    put(
        root,
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory hugetlb pids\n",
    );
    put_exe(root, "usr/lib/podman/netavark");
    put_exe(root, "usr/sbin/runc");
    put(root, "usr/lib/libseccomp.so.2", "");
    put_exe(root, "usr/local/bin/containerd-shim-vordr-v1");
    put(
        root,
        "var/lib/kubelet/config.yaml",
        "containerRuntimeEndpoint: unix:///run/vordr/vordr.sock\n",
    );
    let (code, c) = doctor_json(&["--host-root", root.to_str().unwrap()]);
    assert_eq!(missing(&c), Vec::<String>::new(), "{c:#?}");
    assert_eq!(code, 0);
    assert_eq!(status(&c, "cgroups"), "ok");
    assert!(detail(&c, "cgroups").starts_with("v2 (unified)"));
    assert_eq!(status(&c, "kubelet"), "ok");
    assert_eq!(
        detail(&c, "shim"),
        "/usr/local/bin/containerd-shim-vordr-v1"
    );

    // A broken configuration file is missing, and so fails.
    put(
        root,
        "etc/vordr/config.toml",
        "[network]\ndriver = \"flannel\"\n",
    );
    let (code, c) = doctor_json(&["--host-root", root.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(missing(&c), ["config"]);
}
