//! Judges a node's readiness for Vordr: kernel features, the binaries it
//! runs, the gatekeeper's policy library, its directories and disk, kubelet's
//! runtime endpoint, the registries configuration, the clock and the
//! security modules. Each check says `ok`, `warning` or `missing` (or
//! `skipped` for a live probe that could not run) with what it found and,
//! when not ok, the command a person can run to fix it.
//!
//! Everything is read below a host root directory (`/` on the node, or a
//! tree that stands for one), so a fake root with pieces missing can be
//! judged. What only the running kernel can answer (an idmapped mount, the
//! clock's NTP state, free space) goes through [`Probes`]: [`LiveProbes`]
//! on `/`, [`OfflineProbes`] elsewhere, a fake in tests.
//!
//! The [`Report`] is plain data (serde), for the `vordr doctor` verb and
//! for tools that call it.

mod binaries;
mod files;
mod gatekeeper;
mod host;
mod kernel;
mod kubelet;
mod probes;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vordr_config::Config;
use vordr_install::files::Root;

pub use probes::{Clock, LiveProbes, OfflineProbes, Probe, Probes, Space};

/// Why a node could not be judged at all (a judged node's problems are
/// checks in the [`Report`], never errors).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("host root {path}: {source}")]
    HostRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("host root {0} is not a directory")]
    NotADirectory(PathBuf),
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// A live probe that could not run here (the root is not `/`).
    Skipped,
    /// Vordr runs, but something will not work or is worth fixing.
    Warning,
    /// Vordr (or what it is configured to use) cannot work until fixed.
    Missing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skipped => "skipped",
            Status::Warning => "warning",
            Status::Missing => "missing",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// A stable identifier: `overlayfs`, `cgroups`, `netavark`, `kubelet`, ...
    pub name: String,
    pub status: Status,
    /// What was found, and where.
    pub detail: String,
    /// What a person can run to fix it (none when ok).
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail, None::<String>)
    }

    pub fn warning(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(name, Status::Warning, detail, Some(fix))
    }

    pub fn missing(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check::new(name, Status::Missing, detail, Some(fix))
    }

    pub fn skipped(name: &str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Skipped, detail, None::<String>)
    }

    fn new(
        name: &str,
        status: Status,
        detail: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) -> Check {
        Check {
            name: name.to_string(),
            status,
            detail: detail.into(),
            fix: fix.map(Into::into),
        }
    }
}

/// Every check, in the order they ran. Serialises as a JSON array of
/// `{name, status, detail, fix}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// The check named `name`.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The checks with status `status`.
    pub fn with(&self, status: Status) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(move |c| c.status == status)
    }

    /// Whether anything Vordr needs is missing.
    pub fn has_missing(&self) -> bool {
        self.with(Status::Missing).next().is_some()
    }
}

/// What to judge.
#[derive(Debug, Clone)]
pub struct Options {
    /// The host's root directory (`/` on the node itself).
    pub host_root: PathBuf,
    /// Vordr's configuration file (a host path); `None`: the installer's
    /// `/etc/vordr/config.toml` when it is there, else the embedded default.
    pub config: Option<PathBuf>,
    /// kubelet's configuration file (a host path).
    pub kubelet_config: PathBuf,
    /// kubeadm's kubelet flags file (a host path).
    pub kubeadm_flags: PathBuf,
    /// The directory (a host path) of the `vordr` that serves, where the
    /// daemon looks for the shim before PATH.
    pub vordr_dir: PathBuf,
}

impl Options {
    /// The defaults for `host_root`: the installer's paths.
    pub fn new(host_root: &Path) -> Options {
        Options {
            host_root: host_root.to_path_buf(),
            config: None,
            kubelet_config: vordr_install::KUBELET_CONFIG.into(),
            kubeadm_flags: vordr_install::KUBEADM_FLAGS.into(),
            vordr_dir: vordr_install::BIN_DIR.into(),
        }
    }
}

/// Whether `root` is this machine's own root, where the live kernel may
/// be probed.
pub fn is_live_root(root: &Path) -> bool {
    std::fs::canonicalize(root).is_ok_and(|p| p == Path::new("/"))
}

/// Judges the node at `o.host_root`: live probes on `/`, none elsewhere.
pub fn run(o: &Options) -> Result<Report, DoctorError> {
    if is_live_root(&o.host_root) {
        run_with(o, &LiveProbes)
    } else {
        run_with(o, &OfflineProbes)
    }
}

/// Judges the node at `o.host_root` with these probes.
pub fn run_with(o: &Options, probes: &dyn Probes) -> Result<Report, DoctorError> {
    let meta = std::fs::metadata(&o.host_root).map_err(|source| DoctorError::HostRoot {
        path: o.host_root.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(DoctorError::NotADirectory(o.host_root.clone()));
    }
    let root = Root::new(&o.host_root);
    let (config, config_check) = load_config(&root, o.config.as_deref());
    let mut checks = vec![config_check];
    checks.extend(kernel::checks(&root, probes));
    checks.extend(binaries::checks(&root, &config, &o.vordr_dir));
    checks.push(gatekeeper::check());
    checks.extend(files::checks(&root, &config, probes));
    checks.push(kubelet::check(o, &config));
    checks.push(host::clock(probes));
    checks.extend(host::security_modules(&root));
    Ok(Report { checks })
}

/// The configuration the daemon would run with, and the check saying so.
/// A broken file is `missing` and the rest is judged with the defaults.
fn load_config(root: &Root, path: Option<&Path>) -> (Config, Check) {
    const NAME: &str = "config";
    let explicit = path.is_some();
    let path = path.unwrap_or(Path::new(vordr_install::CONFIG));
    let here = root.resolve(path);
    let fix = format!("fix {} (`vordr config` prints every key)", path.display());
    match std::fs::read_to_string(&here) {
        Ok(text) => match Config::from_overlay_str(&text, &path.display().to_string()) {
            Ok(c) => (c, Check::ok(NAME, format!("{} loads", path.display()))),
            Err(e) => (
                Config::default(),
                Check::missing(
                    NAME,
                    format!("{e} (vordr serve refuses it; the other checks use the defaults)"),
                    fix,
                ),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => (
            Config::default(),
            Check::ok(NAME, format!("no {}: the embedded default", path.display())),
        ),
        Err(e) => (
            Config::default(),
            Check::missing(
                NAME,
                format!(
                    "{}: {e} (the other checks use the defaults)",
                    path.display()
                ),
                fix,
            ),
        ),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A fake root and fake probes for the checks' tests.

    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    /// Writes `text` at host path `p` below `root`, parents included.
    pub fn put(root: &Path, p: &str, text: &str) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// An executable at host path `p`.
    pub fn put_exe(root: &Path, p: &str) {
        put(root, p, "#!/bin/sh\n");
        let p = root.join(p.trim_start_matches('/'));
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Probes with fixed answers.
    pub struct Fake {
        pub idmap: Probe,
        pub clock: Option<Result<Clock, String>>,
        pub space: Space,
    }

    impl Default for Fake {
        fn default() -> Fake {
            Fake {
                idmap: Probe::Yes("tmpfs took MOUNT_ATTR_IDMAP".into()),
                clock: Some(Ok(Clock {
                    synchronised: true,
                    max_error_us: 1000,
                })),
                space: Space {
                    available: 50 << 30,
                    total: 100 << 30,
                },
            }
        }
    }

    impl Probes for Fake {
        fn idmapped_mount(&self) -> Probe {
            self.idmap.clone()
        }
        fn seccomp(&self) -> Option<bool> {
            None
        }
        fn clock(&self) -> Option<Result<Clock, String>> {
            self.clock.clone()
        }
        fn free_space(&self, _: &Path) -> std::io::Result<Space> {
            Ok(self.space)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn an_empty_root_misses_what_vordr_needs_and_serialises_as_an_array() {
        let t = tempfile::tempdir().unwrap();
        let r = run_with(&Options::new(t.path()), &Fake::default()).unwrap();
        assert!(r.has_missing());
        let missing: Vec<&str> = r.with(Status::Missing).map(|c| c.name.as_str()).collect();
        for name in [
            "overlayfs",
            "namespaces",
            "cgroups",
            "netavark",
            "shim",
            "libseccomp",
        ] {
            assert!(missing.contains(&name), "{name} in {missing:?}");
        }
        // runc serves only the RuntimeClass vordr-runc (youki is the default).
        assert_eq!(r.get("runtime-runc").unwrap().status, Status::Warning);
        assert_eq!(r.get("config").unwrap().status, Status::Ok);
        assert_eq!(r.get("gatekeeper").unwrap().status, Status::Ok);
        assert_eq!(r.get("kubelet").unwrap().status, Status::Warning);
        for c in &r.checks {
            assert_eq!(c.fix.is_some(), c.status >= Status::Warning, "{c:?}");
        }
        let v = serde_json::to_value(&r).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), r.checks.len());
        assert_eq!(a[0]["name"], "config");
        assert_eq!(a[0]["status"], "ok");
        assert!(a[0]["fix"].is_null());
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_broken_config_is_missing_and_the_rest_uses_the_defaults() {
        let t = tempfile::tempdir().unwrap();
        put(
            t.path(),
            "/etc/vordr/config.toml",
            "[network]\ndriver = \"flannel\"\n",
        );
        let r = run_with(&Options::new(t.path()), &Fake::default()).unwrap();
        let c = r.get("config").unwrap();
        assert_eq!(c.status, Status::Missing);
        assert!(c.detail.contains("flannel"), "{c:?}");
        assert!(r.get("netavark").is_some());
        // A given file that is not there is missing too.
        let mut o = Options::new(t.path());
        o.config = Some("/etc/vordr/other.toml".into());
        let r = run_with(&o, &Fake::default()).unwrap();
        assert_eq!(r.get("config").unwrap().status, Status::Missing);
        // One that selects the CNI driver is followed.
        put(
            t.path(),
            "/etc/vordr/config.toml",
            "[network]\ndriver = \"cni\"\n",
        );
        let r = run_with(&Options::new(t.path()), &Fake::default()).unwrap();
        assert_eq!(r.get("config").unwrap().status, Status::Ok);
        assert!(r.get("netavark").is_none());
        assert_eq!(r.get("cni-plugins").unwrap().status, Status::Missing);
    }

    #[test]
    fn a_root_that_is_not_a_directory_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "").unwrap();
        assert!(matches!(
            run(&Options::new(&f)),
            Err(DoctorError::NotADirectory(_))
        ));
        assert!(matches!(
            run(&Options::new(&t.path().join("none"))),
            Err(DoctorError::HostRoot { .. })
        ));
        assert!(is_live_root(Path::new("/")));
        assert!(!is_live_root(t.path()));
    }
}
