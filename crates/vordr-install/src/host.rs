//! The host around the files: what Vordr needs installed there, and its
//! systemd, reached through PID 1's mount namespace.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use vordr_config::{Config, NetworkDriver};

use crate::files::Root;

/// One thing on the host Vordr runs with, found or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// What it is: `netavark`, `cni-plugins`, `runtime-<handler>` (a
    /// runc handler's binary) or `libseccomp`.
    pub name: String,
    /// Where it was found (a host path), or `None`.
    pub found: Option<std::path::PathBuf>,
    /// The Debian package that provides it.
    pub package: &'static str,
    /// When it is missing: what, where it was looked for and why it matters.
    pub missing: String,
}

/// Host packages Vordr runs with that are missing, one message each
/// naming what is missing, where it was looked for and why it matters.
pub fn missing_packages(root: &Root, config: &Config) -> Vec<String> {
    requirements(root, config)
        .into_iter()
        .filter(|r| r.found.is_none())
        .map(|r| r.missing)
        .collect()
}

/// Every host package Vordr runs with under `config`, and where each is.
pub fn requirements(root: &Root, config: &Config) -> Vec<Requirement> {
    let mut out = Vec::new();
    let executable = |p: &Path| {
        std::fs::metadata(root.resolve(p))
            .map(|m| m.is_file() && m.mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let found = |p: &Path, yes: bool| yes.then(|| p.to_path_buf());
    match config.network.driver {
        NetworkDriver::Netavark => {
            let netavark = &config.network.netavark_path;
            out.push(Requirement {
                name: "netavark".into(),
                found: found(netavark, executable(netavark)),
                package: "netavark",
                missing: format!(
                    "netavark is missing at {} (pods get their network from it; install the \
                     netavark package, set [network] netavark_path, or set [network] driver = \
                     \"cni\" in /etc/vordr/config.toml to use the cluster's CNI plugins)",
                    netavark.display()
                ),
            });
        }
        NetworkDriver::Cni => {
            let dirs = &config.network.cni.bin_dirs;
            let with_plugin = dirs.iter().find(|d| {
                std::fs::read_dir(root.resolve(d))
                    .map(|rd| rd.flatten().any(|e| executable(&d.join(e.file_name()))))
                    .unwrap_or(false)
            });
            let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            out.push(Requirement {
                name: "cni-plugins".into(),
                found: with_plugin.cloned(),
                package: "containernetworking-plugins",
                missing: format!(
                    "no CNI plugins in {} ([network] driver is \"cni\": pods get their network \
                     from the plugins the cluster's network add-on or the \
                     containernetworking-plugins package installs there)",
                    names.join(", ")
                ),
            });
        }
    }
    for (name, h) in &config.runtime.handlers {
        if h.kind == "runc" {
            out.push(Requirement {
                name: format!("runtime-{name}"),
                found: found(&h.path, executable(&h.path)),
                package: "runc",
                missing: format!(
                    "runc is missing at {} (runtime handler {name:?}, RuntimeClass vordr-{name}, \
                     runs containers with it; install the runc package or set its path in \
                     /etc/vordr/config.toml)",
                    h.path.display()
                ),
            });
        }
    }
    let arch_dir = format!("{}-linux-gnu", std::env::consts::ARCH);
    let lib_dirs = [
        format!("/lib/{arch_dir}"),
        format!("/usr/lib/{arch_dir}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ];
    let seccomp = lib_dirs
        .iter()
        .map(|d| Path::new(d).join("libseccomp.so.2"))
        .find(|p| root.resolve(p).exists());
    out.push(Requirement {
        name: "libseccomp".into(),
        found: seccomp,
        package: "libseccomp2",
        missing: format!(
            "libseccomp.so.2 is missing from {} (the shim, containerd-shim-vordr-v1, \
             links it; install libseccomp2)",
            lib_dirs.join(", ")
        ),
    });
    out
}

/// Why the host's systemd cannot be reached from here, or `None` when it
/// can: PID 1 must be systemd and see `root` as its own root (the installer
/// runs on the host with `--host-root /`, or in a pod with `hostPID: true`
/// and the host's root mounted at `root`).
pub fn systemd_unreachable(root: &Path) -> Option<String> {
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if !same(Path::new("/proc/1/root/"), root) {
        return Some(format!(
            "PID 1's root is not {} (give the installer's pod hostPID: true, or run it on \
             the node with --host-root /)",
            root.display()
        ));
    }
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if comm.trim() != "systemd" {
        return Some(format!("PID 1 is {:?}, not systemd", comm.trim()));
    }
    None
}

/// Runs `systemctl ARGS` in PID 1's mount and PID namespaces (the host's
/// systemctl, talking to the host's systemd), as `nsenter -t 1 -m -p` would.
pub fn systemctl(args: &[&str]) -> Result<(), String> {
    let ns = |n: &str| {
        std::fs::File::open(format!("/proc/1/ns/{n}")).map_err(|e| format!("/proc/1/ns/{n}: {e}"))
    };
    let (mnt, pid) = (ns("mnt")?, ns("pid")?);
    let (mnt_fd, pid_fd) = (mnt.as_raw_fd(), pid.as_raw_fd());
    let mut cmd = Command::new("systemctl");
    cmd.args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(std::process::Stdio::null());
    // SAFETY: between fork and exec only setns(2), async-signal-safe, on
    // descriptors opened before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for (fd, kind) in [(mnt_fd, libc::CLONE_NEWNS), (pid_fd, libc::CLONE_NEWPID)] {
                if libc::setns(fd, kind) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_root_is_not_pid_1s() {
        let t = tempfile::tempdir().unwrap();
        let why = systemd_unreachable(t.path()).unwrap();
        assert!(why.starts_with("PID 1's root is not"), "{why}");
    }

    #[test]
    fn missing_packages_are_named_with_their_paths() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let config = Config::default();
        let m = missing_packages(&root, &config);
        assert_eq!(m.len(), 3, "{m:#?}");
        assert!(m[0].starts_with("netavark is missing at /usr/lib/podman/netavark"));
        assert!(m[1].starts_with("runc is missing at /usr/sbin/runc"));
        assert!(m[2].starts_with("libseccomp.so.2 is missing"));
        // Present (runc through an absolute symlink, as alternatives do).
        let put = |p: &str| {
            let p = t.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        };
        put("usr/lib/podman/netavark");
        put("usr/bin/runc");
        std::fs::create_dir_all(t.path().join("usr/sbin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/runc", t.path().join("usr/sbin/runc")).unwrap();
        put("usr/lib/libseccomp.so.2");
        assert_eq!(missing_packages(&root, &config), Vec::<String>::new());
        // With the CNI driver, a plugin in one of its directories is needed instead.
        let cni = Config::from_overlay_str("[network]\ndriver = \"cni\"\n", "t").unwrap();
        let m = missing_packages(&root, &cni);
        assert_eq!(m.len(), 1, "{m:#?}");
        assert!(
            m[0].starts_with("no CNI plugins in /opt/cni/bin, /usr/lib/cni"),
            "{}",
            m[0]
        );
        put("usr/lib/cni/bridge");
        assert_eq!(missing_packages(&root, &cni), Vec::<String>::new());
        // Not executable is missing.
        std::fs::set_permissions(
            t.path().join("usr/bin/runc"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(missing_packages(&root, &config).len(), 1);
    }
}
