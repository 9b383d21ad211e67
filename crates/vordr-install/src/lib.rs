//! Installs Vordr onto a node's root filesystem and removes it again: binaries, configuration, systemd unit, crictl.yaml and kubelet's runtime endpoint.
//!
//! Both directions are a [`Plan`] first: every change is computed from what
//! is on disk, printed (`--dry-run` stops there) and then applied in order.
//! A plan with no steps means there is nothing to do, which makes both
//! directions idempotent. Files are replaced atomically with explicit
//! modes; kubelet's files are edited on one line and saved whole under
//! `/etc/vordr/saved/` first, so uninstall restores them byte for byte.

pub mod files;
mod host;
pub mod kubelet;
pub mod node_label;
mod texts;

use std::path::{Path, PathBuf};

use files::{Content, Root};
pub use host::{missing_packages, requirements, systemd_unreachable, Requirement};
pub use node_label::NodeLabel;
pub use texts::{crictl_yaml, unit_file};
use vordr_config::{Config, EMBEDDED_DEFAULT};

/// Where the binaries go on the host.
pub const BIN_DIR: &str = "/usr/local/bin";
pub const VORDR: &str = "vordr";
pub const SHIM: &str = "containerd-shim-vordr-v1";
pub const CONFIG_DIR: &str = "/etc/vordr";
pub const CONFIG: &str = "/etc/vordr/config.toml";
/// This version's default, written beside a config.toml the admin changed.
pub const CONFIG_NEW: &str = "/etc/vordr/config.toml.new";
/// Files as they were before the installer edited them.
pub const SAVED_DIR: &str = "/etc/vordr/saved";
pub const UNIT: &str = "/etc/systemd/system/vordr.service";
/// What `systemctl enable vordr` would create.
pub const UNIT_WANTS: &str = "/etc/systemd/system/multi-user.target.wants/vordr.service";
pub const CRICTL: &str = "/etc/crictl.yaml";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const KUBEADM_FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";

const ENDPOINT_KEY: &str = "containerRuntimeEndpoint";
const IMAGE_KEY: &str = "imageServiceEndpoint";
const ENDPOINT_FLAG: &str = "--container-runtime-endpoint";
const IMAGE_FLAG: &str = "--image-service-endpoint";
const FLAGS_VAR: &str = "KUBELET_KUBEADM_ARGS";

const FILE_MODE: u32 = 0o644;
const BIN_MODE: u32 = 0o755;
const DIR_MODE: u32 = 0o755;
const SAVED_MODE: u32 = 0o600;
const SAVED_DIR_MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not there: the installer copies vordr and containerd-shim-vordr-v1 from one directory")]
    Source(PathBuf),
    #[error("the existing {path} is not a valid Vordr configuration (fix or remove it): {source}")]
    Config {
        path: &'static str,
        source: Box<vordr_config::ConfigError>,
    },
    #[error("{path} cannot be edited line by line: {source}; set {what} to {value} yourself")]
    Edit {
        path: PathBuf,
        what: &'static str,
        value: String,
        source: kubelet::EditError,
    },
    #[error("missing on the host (--strict):\n  {}", .0.join("\n  "))]
    Missing(Vec<String>),
    #[error("systemctl {args} on the host: {reason}")]
    Systemctl { args: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to install from and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The host's root directory (`/` on the node itself).
    pub host_root: PathBuf,
    /// The directory holding the `vordr` and `containerd-shim-vordr-v1` to install.
    pub source_dir: PathBuf,
    /// kubelet's configuration file, as a host path.
    pub kubelet_config: PathBuf,
    /// kubeadm's kubelet flags file, as a host path.
    pub kubeadm_flags: PathBuf,
    /// Restart vordr and kubelet through the host's systemd when their
    /// files changed (only possible where PID 1 is the host's systemd).
    pub restart: bool,
    /// Refuse to install when a host package Vordr needs is missing
    /// (otherwise each one is a warning).
    pub strict: bool,
}

impl Options {
    /// Defaults for `host_root`, installing from `source_dir`.
    pub fn new(host_root: &Path, source_dir: &Path) -> Options {
        Options {
            host_root: host_root.to_path_buf(),
            source_dir: source_dir.to_path_buf(),
            kubelet_config: KUBELET_CONFIG.into(),
            kubeadm_flags: KUBEADM_FLAGS.into(),
            restart: true,
            strict: false,
        }
    }
}

/// One change, described as the host would see it.
#[derive(Debug)]
pub struct Step {
    pub what: String,
    action: Action,
}

#[derive(Debug)]
enum Action {
    Copy {
        from: PathBuf,
        to: PathBuf,
    },
    Write {
        to: PathBuf,
        data: Vec<u8>,
        mode: u32,
        owner: Option<(u32, u32)>,
        dir_mode: u32,
    },
    Symlink {
        at: PathBuf,
        target: PathBuf,
    },
    Remove(PathBuf),
    RemoveDir(PathBuf),
    Systemctl(Vec<&'static str>),
}

/// The changes that take the host to the wanted state, in order, and what
/// the admin should know.
#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Things the admin should act on (missing packages, no restart, ...).
    pub warnings: Vec<String>,
    /// Things kept as they are, and why.
    pub notes: Vec<String>,
}

impl Plan {
    fn step(&mut self, what: impl Into<String>, action: Action) {
        self.steps.push(Step {
            what: what.into(),
            action,
        });
    }

    /// Makes every change in order, calling `done` before each; stops at
    /// the first failure (the next run picks up from what is on disk).
    pub fn apply(&self, mut before: impl FnMut(&Step)) -> Result<(), InstallError> {
        for s in &self.steps {
            before(s);
            match &s.action {
                Action::Copy { from, to } => {
                    make_parent(to, DIR_MODE)?;
                    files::write_atomic(to, Content::File(from), BIN_MODE, None).map_err(io(to))?;
                }
                Action::Write {
                    to,
                    data,
                    mode,
                    owner,
                    dir_mode,
                } => {
                    make_parent(to, *dir_mode)?;
                    files::write_atomic(to, Content::Bytes(data), *mode, *owner).map_err(io(to))?;
                }
                Action::Symlink { at, target } => {
                    make_parent(at, DIR_MODE)?;
                    files::remove(at).map_err(io(at))?;
                    std::os::unix::fs::symlink(target, at).map_err(io(at))?;
                }
                Action::Remove(p) => files::remove(p).map_err(io(p))?,
                Action::RemoveDir(p) => files::remove_dir_if_empty(p).map_err(io(p))?,
                Action::Systemctl(args) => {
                    host::systemctl(args).map_err(|reason| InstallError::Systemctl {
                        args: args.join(" "),
                        reason,
                    })?
                }
            }
        }
        Ok(())
    }
}

fn make_parent(p: &Path, mode: u32) -> Result<(), InstallError> {
    match p.parent() {
        Some(d) => files::make_dirs(d, mode).map_err(io(d)),
        None => Ok(()),
    }
}

/// The host's files as the planner reads them.
struct Host<'a> {
    root: Root,
    o: &'a Options,
}

impl Host<'_> {
    fn here(&self, host: &Path) -> PathBuf {
        self.root.resolve(host)
    }

    fn read(&self, host: &Path) -> Result<Option<Vec<u8>>, InstallError> {
        let p = self.here(host);
        files::read_opt(&p).map_err(io(&p))
    }

    fn mode(&self, host: &Path) -> Option<u32> {
        files::mode_of(&self.here(host)).ok()
    }

    fn saved(&self, name: &str) -> PathBuf {
        Path::new(SAVED_DIR).join(name)
    }

    /// The effective configuration of the installed daemon: the host's
    /// config.toml over the defaults, or the defaults.
    fn config(&self) -> Result<(Config, Option<Vec<u8>>), InstallError> {
        let text = self.read(Path::new(CONFIG))?;
        let config = match &text {
            None => Config::default(),
            Some(b) => {
                Config::from_overlay_str(&String::from_utf8_lossy(b), CONFIG).map_err(|e| {
                    InstallError::Config {
                        path: CONFIG,
                        source: Box::new(e),
                    }
                })?
            }
        };
        Ok((config, text))
    }

    fn write_step(&self, plan: &mut Plan, what: String, host: &Path, data: Vec<u8>, mode: u32) {
        let saved = host.starts_with(SAVED_DIR);
        // An edited file keeps its owner and mode.
        let existing = files::owner_and_mode(&self.here(host)).ok();
        plan.step(
            what,
            Action::Write {
                to: self.here(host),
                data,
                mode: existing.map(|(_, m)| m).unwrap_or(mode),
                owner: existing.map(|(o, _)| o),
                dir_mode: if saved { SAVED_DIR_MODE } else { DIR_MODE },
            },
        );
    }
}

/// One of the host files the installer edits and saves: crictl.yaml,
/// kubelet's config file, kubeadm's flags file.
struct Edited {
    host: PathBuf,
    saved_name: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Crictl,
    KubeletConfig,
    /// `add`: put the flag in when it is absent (no kubelet config file).
    KubeadmFlags {
        add: bool,
    },
}

impl Edited {
    fn edit_err(
        &self,
        what: &'static str,
        value: &str,
    ) -> impl FnOnce(kubelet::EditError) -> InstallError {
        let path = self.host.clone();
        let value = value.to_string();
        move |source| InstallError::Edit {
            path,
            what,
            value,
            source,
        }
    }

    /// The endpoint the file points at now, if it names one.
    fn endpoint(&self, text: &str) -> Result<Option<String>, InstallError> {
        Ok(match self.kind {
            Kind::Crictl => text
                .lines()
                .find_map(|l| l.strip_prefix("runtime-endpoint:"))
                .map(|v| v.trim().trim_matches(['"', '\'']).to_string()),
            Kind::KubeletConfig => {
                kubelet::yaml_get(text, ENDPOINT_KEY).map_err(self.edit_err(ENDPOINT_KEY, ""))?
            }
            Kind::KubeadmFlags { .. } => kubelet::flag_get(text, ENDPOINT_FLAG),
        })
    }

    /// The file pointing at `endpoint`.
    fn install(&self, text: &str, endpoint: &str) -> Result<String, InstallError> {
        Ok(match self.kind {
            Kind::Crictl => crictl_yaml(endpoint),
            Kind::KubeletConfig => {
                let err = || self.edit_err(ENDPOINT_KEY, endpoint);
                let mut t = kubelet::yaml_set(text, ENDPOINT_KEY, Some(endpoint)).map_err(err())?;
                let image = kubelet::yaml_get(&t, IMAGE_KEY).map_err(err())?;
                if image.is_some_and(|v| !v.is_empty()) {
                    t = kubelet::yaml_set(&t, IMAGE_KEY, Some(endpoint)).map_err(err())?;
                }
                t
            }
            Kind::KubeadmFlags { add } => {
                let t = kubelet::flag_set(text, ENDPOINT_FLAG, Some(endpoint), add, FLAGS_VAR);
                kubelet::flag_set(&t, IMAGE_FLAG, Some(endpoint), false, FLAGS_VAR)
            }
        })
    }

    /// `current` (which points at Vordr) with the endpoints of `saved` put
    /// back, for a file that changed since it was saved.
    fn revert(&self, current: &str, saved: &str) -> Result<Option<String>, InstallError> {
        Ok(match self.kind {
            Kind::Crictl => None,
            Kind::KubeletConfig => {
                let mut t = current.to_string();
                for key in [ENDPOINT_KEY, IMAGE_KEY] {
                    let old = kubelet::yaml_get(saved, key).map_err(self.edit_err(key, ""))?;
                    let now = kubelet::yaml_get(&t, key).map_err(self.edit_err(key, ""))?;
                    if now != old {
                        t = kubelet::yaml_set(&t, key, old.as_deref())
                            .map_err(self.edit_err(key, old.as_deref().unwrap_or("")))?;
                    }
                }
                Some(t)
            }
            Kind::KubeadmFlags { .. } => {
                let mut t = current.to_string();
                for flag in [ENDPOINT_FLAG, IMAGE_FLAG] {
                    let old = kubelet::flag_get(saved, flag);
                    if kubelet::flag_get(&t, flag) != old {
                        t = kubelet::flag_set(&t, flag, old.as_deref(), true, FLAGS_VAR);
                    }
                }
                Some(t)
            }
        })
    }

    fn describe(&self, old: Option<&str>, new: &str) -> String {
        let what = match self.kind {
            Kind::Crictl => {
                return format!("write {} (crictl talks to {new})", self.host.display())
            }
            Kind::KubeletConfig => ENDPOINT_KEY,
            Kind::KubeadmFlags { .. } => ENDPOINT_FLAG,
        };
        match old {
            Some(old) => format!("set {what} in {}: {old} -> {new}", self.host.display()),
            None => format!("add {what} {new} to {}", self.host.display()),
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn kubelet_files(h: &Host<'_>) -> Result<Vec<Edited>, InstallError> {
    let config_present = h.read(&h.o.kubelet_config)?.is_some();
    Ok(vec![
        Edited {
            host: h.o.kubelet_config.clone(),
            saved_name: "kubelet-config.yaml",
            kind: Kind::KubeletConfig,
        },
        Edited {
            host: h.o.kubeadm_flags.clone(),
            saved_name: "kubeadm-flags.env",
            kind: Kind::KubeadmFlags {
                add: !config_present,
            },
        },
    ])
}

fn crictl() -> Edited {
    Edited {
        host: CRICTL.into(),
        saved_name: "crictl.yaml",
        kind: Kind::Crictl,
    }
}

/// What one of kubelet's files says about the runtime endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletEndpoint {
    /// The file, as a host path.
    pub file: PathBuf,
    /// `containerRuntimeEndpoint` (config file) or
    /// `--container-runtime-endpoint` (flags file); `None` when unset.
    pub endpoint: Option<String>,
    /// Whether it is kubeadm's flags file, whose flags override the
    /// config file.
    pub is_flags: bool,
}

/// The runtime endpoint set in kubelet's config file and kubeadm's flags
/// file under `host_root` (host paths), one entry per file present.
pub fn kubelet_endpoints(
    host_root: &Path,
    kubelet_config: &Path,
    kubeadm_flags: &Path,
) -> Result<Vec<KubeletEndpoint>, InstallError> {
    let mut o = Options::new(host_root, Path::new(""));
    o.kubelet_config = kubelet_config.to_path_buf();
    o.kubeadm_flags = kubeadm_flags.to_path_buf();
    let h = Host {
        root: Root::new(host_root),
        o: &o,
    };
    let mut out = Vec::new();
    for f in kubelet_files(&h)? {
        if let Some(bytes) = h.read(&f.host)? {
            out.push(KubeletEndpoint {
                endpoint: f.endpoint(&text(&bytes))?,
                is_flags: matches!(f.kind, Kind::KubeadmFlags { .. }),
                file: f.host,
            });
        }
    }
    Ok(out)
}

/// Plans one edited file for install: saves it (unless it already points
/// at Vordr) and points it at `endpoint`. Whether it changes.
fn plan_edit_install(
    h: &Host<'_>,
    plan: &mut Plan,
    f: &Edited,
    endpoint: &str,
) -> Result<bool, InstallError> {
    let current = h.read(&f.host)?;
    if current.is_none() && !matches!(f.kind, Kind::Crictl) {
        return Ok(false);
    }
    let cur = current.as_deref().map(text).unwrap_or_default();
    let new = f.install(&cur, endpoint)?;
    if current.as_deref() == Some(new.as_bytes()) {
        return Ok(false);
    }
    let old = current
        .as_ref()
        .map(|_| f.endpoint(&cur))
        .transpose()?
        .flatten();
    if let (Some(bytes), false) = (&current, old.as_deref() == Some(endpoint)) {
        let saved = h.saved(f.saved_name);
        h.write_step(
            plan,
            format!("save {} as {}", f.host.display(), saved.display()),
            &saved,
            bytes.clone(),
            SAVED_MODE,
        );
    }
    h.write_step(
        plan,
        f.describe(old.as_deref(), endpoint),
        &f.host,
        new.into_bytes(),
        FILE_MODE,
    );
    Ok(true)
}

/// Plans one edited file for uninstall: back to its saved bytes when it is
/// as the installer left it, its old endpoint when it changed since, left
/// alone when it no longer points at Vordr. Whether it changes.
fn plan_edit_uninstall(
    h: &Host<'_>,
    plan: &mut Plan,
    f: &Edited,
    endpoint: &str,
) -> Result<bool, InstallError> {
    let saved_path = h.saved(f.saved_name);
    let saved = h.read(&saved_path)?;
    let current = h.read(&f.host)?;
    let cur = current.as_deref().map(text);
    let ours = match &cur {
        Some(c) => f.endpoint(c)?.as_deref() == Some(endpoint),
        None => false,
    };
    let mut changed = false;
    match (&saved, &cur) {
        (Some(s), None) => {
            h.write_step(
                plan,
                format!(
                    "restore {} from {} (it was gone)",
                    f.host.display(),
                    saved_path.display()
                ),
                &f.host,
                s.clone(),
                FILE_MODE,
            );
            changed = true;
        }
        (Some(s), Some(c)) => {
            let as_left = f.install(&text(s), endpoint)?;
            if *c == as_left {
                h.write_step(
                    plan,
                    format!("restore {} from {}", f.host.display(), saved_path.display()),
                    &f.host,
                    s.clone(),
                    FILE_MODE,
                );
                changed = true;
            } else if ours {
                match f.revert(c, &text(s))? {
                    Some(t) => {
                        h.write_step(
                            plan,
                            format!(
                                "set the runtime endpoint in {} back to {} (the file changed since install; the rest is kept)",
                                f.host.display(),
                                f.endpoint(&text(s))?.unwrap_or_else(|| "kubelet's default".into())
                            ),
                            &f.host,
                            t.into_bytes(),
                            FILE_MODE,
                        );
                        changed = true;
                    }
                    None => plan.notes.push(format!(
                        "kept {}: it changed since install (the original is in {} until now)",
                        f.host.display(),
                        saved_path.display()
                    )),
                }
            } else {
                plan.notes.push(format!(
                    "left {} as is: it no longer points at Vordr",
                    f.host.display()
                ));
            }
        }
        (None, Some(c)) if ours => {
            if matches!(f.kind, Kind::Crictl) && *c == crictl_yaml(endpoint) {
                plan.step(
                    format!("remove {}", f.host.display()),
                    Action::Remove(h.root.resolve_parent(&f.host)),
                );
            } else {
                plan.warnings.push(format!(
                    "{} points at Vordr and no saved copy says what it pointed at before: \
                     set its runtime endpoint yourself",
                    f.host.display()
                ));
            }
        }
        _ => {}
    }
    if saved.is_some() {
        plan.step(
            format!("remove {}", saved_path.display()),
            Action::Remove(h.here(&saved_path)),
        );
    }
    Ok(changed)
}

/// Restarts through the host's systemd: steps when it can be reached,
/// else one warning naming the commands to run on the node.
struct Restarts {
    blocked: Option<String>,
    skipped: Vec<String>,
}

impl Restarts {
    fn new(h: &Host<'_>) -> Restarts {
        Restarts {
            blocked: if h.o.restart {
                systemd_unreachable(h.root.dir())
            } else {
                Some("--no-restart".into())
            },
            skipped: Vec::new(),
        }
    }

    fn add(&mut self, plan: &mut Plan, what: &str, args: &[&'static str]) {
        match self.blocked {
            None => plan.step(
                format!("{what}: systemctl {} on the host", args.join(" ")),
                Action::Systemctl(args.to_vec()),
            ),
            Some(_) => self.skipped.push(format!("systemctl {}", args.join(" "))),
        }
    }

    fn finish(self, plan: &mut Plan) {
        if let (Some(why), false) = (self.blocked, self.skipped.is_empty()) {
            plan.warnings.push(format!(
                "not restarting anything ({why}); on the node run: {}",
                self.skipped.join(" && ")
            ));
        }
    }
}

/// The plan that installs Vordr on the host, or nothing when it is installed.
pub fn plan_install(o: &Options) -> Result<Plan, InstallError> {
    let h = Host {
        root: Root::new(&o.host_root),
        o,
    };
    let mut plan = Plan::default();
    let (config, config_text) = h.config()?;
    let endpoint = format!("unix://{}", config.server.socket.display());

    let missing = missing_packages(&h.root, &config);
    if o.strict && !missing.is_empty() {
        return Err(InstallError::Missing(missing));
    }
    plan.warnings.extend(missing);

    let mut daemon_changed = false;
    for name in [VORDR, SHIM] {
        let from = o.source_dir.join(name);
        if !from.is_file() {
            return Err(InstallError::Source(from));
        }
        let host = Path::new(BIN_DIR).join(name);
        let to = h.here(&host);
        let same = files::same_file_content(&from, &to).map_err(io(&to))?;
        if !same || h.mode(&host) != Some(BIN_MODE) {
            let len = std::fs::metadata(&from).map_err(io(&from))?.len();
            plan.step(
                format!("install {} ({len} bytes, mode 0755)", host.display()),
                Action::Copy { from, to },
            );
            daemon_changed = true;
        }
    }

    match &config_text {
        None => {
            h.write_step(
                &mut plan,
                format!("write {CONFIG} (the default configuration, mode 0644)"),
                Path::new(CONFIG),
                EMBEDDED_DEFAULT.as_bytes().to_vec(),
                FILE_MODE,
            );
            daemon_changed = true;
        }
        Some(t) if t == EMBEDDED_DEFAULT.as_bytes() => {}
        Some(_) => {
            plan.notes.push(format!(
                "kept {CONFIG}: it differs from this version's default, which is in {CONFIG_NEW}"
            ));
            if h.read(Path::new(CONFIG_NEW))?.as_deref() != Some(EMBEDDED_DEFAULT.as_bytes()) {
                h.write_step(
                    &mut plan,
                    format!("write {CONFIG_NEW} (this version's default configuration, mode 0644)"),
                    Path::new(CONFIG_NEW),
                    EMBEDDED_DEFAULT.as_bytes().to_vec(),
                    FILE_MODE,
                );
            }
        }
    }

    let mut unit_changed = false;
    let unit = unit_file(&Path::new(BIN_DIR).join(VORDR), Path::new(CONFIG));
    if h.read(Path::new(UNIT))?.as_deref() != Some(unit.as_bytes())
        || h.mode(Path::new(UNIT)) != Some(FILE_MODE)
    {
        plan.step(
            format!("write {UNIT} (mode 0644)"),
            Action::Write {
                to: h.here(Path::new(UNIT)),
                data: unit.into_bytes(),
                mode: FILE_MODE,
                owner: None,
                dir_mode: DIR_MODE,
            },
        );
        unit_changed = true;
    }
    let wants = h.root.resolve_parent(Path::new(UNIT_WANTS));
    if std::fs::read_link(&wants).ok().as_deref() != Some(Path::new(UNIT)) {
        plan.step(
            format!("enable vordr.service: link {UNIT_WANTS} -> {UNIT}"),
            Action::Symlink {
                at: wants,
                target: UNIT.into(),
            },
        );
        unit_changed = true;
    }

    plan_edit_install(&h, &mut plan, &crictl(), &endpoint)?;

    let mut kubelet_changed = false;
    let kubelet = kubelet_files(&h)?;
    for f in &kubelet {
        kubelet_changed |= plan_edit_install(&h, &mut plan, f, &endpoint)?;
    }
    if kubelet.iter().all(|f| !h.here(&f.host).exists()) {
        plan.warnings.push(format!(
            "found neither {} nor {}: point kubelet at {endpoint} yourself \
             (--container-runtime-endpoint, or containerRuntimeEndpoint in its config file)",
            o.kubelet_config.display(),
            o.kubeadm_flags.display()
        ));
    }
    if let Some(kc) = h.read(&o.kubelet_config)? {
        let driver = kubelet::yaml_get(&text(&kc), "cgroupDriver").ok().flatten();
        if let Some(d) = driver.filter(|d| d != config.cgroup.driver.as_str()) {
            plan.warnings.push(format!(
                "kubelet's cgroupDriver is {d}, Vordr's is {}: kubelet 1.28 and later take the \
                 runtime's driver (KubeletCgroupDriverFromCRI); for older ones set \
                 [cgroup] driver = \"{d}\" in {CONFIG}",
                config.cgroup.driver.as_str()
            ));
        }
    }

    let mut restarts = Restarts::new(&h);
    if unit_changed {
        restarts.add(&mut plan, "load the unit", &["daemon-reload"]);
    }
    if daemon_changed || unit_changed {
        restarts.add(&mut plan, "start Vordr", &["restart", "vordr.service"]);
    }
    if kubelet_changed {
        restarts.add(
            &mut plan,
            "switch kubelet to Vordr",
            &["restart", "kubelet.service"],
        );
    }
    restarts.finish(&mut plan);
    Ok(plan)
}

/// The plan that removes Vordr from the host and points kubelet back at
/// what it used before, or nothing when there is nothing left to undo.
/// Vordr's state (`/var/lib/vordr`, `/run/vordr`) and the pods it runs
/// stay: drain the node first.
pub fn plan_uninstall(o: &Options) -> Result<Plan, InstallError> {
    let h = Host {
        root: Root::new(&o.host_root),
        o,
    };
    let mut plan = Plan::default();
    // A broken config.toml must not keep Vordr installed: fall back to the
    // default socket.
    let config = h.config().map(|(c, _)| c).unwrap_or_default();
    let endpoint = format!("unix://{}", config.server.socket.display());

    let mut kubelet_changed = false;
    for f in &kubelet_files(&h)? {
        kubelet_changed |= plan_edit_uninstall(&h, &mut plan, f, &endpoint)?;
    }
    let mut restarts = Restarts::new(&h);
    if kubelet_changed {
        restarts.add(
            &mut plan,
            "switch kubelet back",
            &["restart", "kubelet.service"],
        );
    }
    let unit_present = files::present(&h.here(Path::new(UNIT)));
    if unit_present {
        let what = "stop Vordr (its pods keep running)";
        restarts.add(&mut plan, what, &["stop", "vordr.service"]);
    }

    let wants = h.root.resolve_parent(Path::new(UNIT_WANTS));
    if files::present(&wants) {
        plan.step(format!("remove {UNIT_WANTS}"), Action::Remove(wants));
    }
    if unit_present {
        plan.step(
            format!("remove {UNIT}"),
            Action::Remove(h.root.resolve_parent(Path::new(UNIT))),
        );
        restarts.add(&mut plan, "forget the unit", &["daemon-reload"]);
    }
    restarts.finish(&mut plan);
    plan_edit_uninstall(&h, &mut plan, &crictl(), &endpoint)?;
    for name in [VORDR, SHIM] {
        let host = Path::new(BIN_DIR).join(name);
        let at = h.root.resolve_parent(&host);
        if files::present(&at) {
            plan.step(format!("remove {}", host.display()), Action::Remove(at));
        }
    }

    let mut gone: Vec<PathBuf> = Vec::new();
    match h.read(Path::new(CONFIG))? {
        Some(t) if t == EMBEDDED_DEFAULT.as_bytes() => {
            plan.step(
                format!("remove {CONFIG} (this version's default)"),
                Action::Remove(h.here(Path::new(CONFIG))),
            );
            gone.push(CONFIG.into());
        }
        Some(_) => plan.notes.push(format!(
            "kept {CONFIG}: it differs from the default (remove it yourself if it is no longer needed)"
        )),
        None => {}
    }
    if files::present(&h.here(Path::new(CONFIG_NEW))) {
        plan.step(
            format!("remove {CONFIG_NEW}"),
            Action::Remove(h.here(Path::new(CONFIG_NEW))),
        );
        gone.push(CONFIG_NEW.into());
    }
    for name in ["kubelet-config.yaml", "kubeadm-flags.env", "crictl.yaml"] {
        if files::present(&h.here(&h.saved(name))) {
            gone.push(h.saved(name));
        }
    }
    // Directories that the removals empty go too.
    for dir in [SAVED_DIR, CONFIG_DIR] {
        let here = h.here(Path::new(dir));
        let Ok(rd) = std::fs::read_dir(&here) else {
            continue;
        };
        let left = rd
            .flatten()
            .any(|e| !gone.contains(&Path::new(dir).join(e.file_name())));
        if !left {
            plan.step(format!("remove {dir}/"), Action::RemoveDir(here));
            gone.push(dir.into());
        }
    }
    if unit_present || kubelet_changed {
        plan.notes.push(
            "Vordr's state (/var/lib/vordr, /run/vordr) and any pods it still runs are left: \
             drain the node before uninstalling"
                .into(),
        );
    }
    Ok(plan)
}
