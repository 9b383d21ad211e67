//! Planning the install: binaries, configuration, unit, crictl.yaml, kubelet's endpoint.

use std::path::Path;

use vordr_config::EMBEDDED_DEFAULT;

use crate::edited::{crictl, kubelet_files, plan_edit_install, text};
use crate::files::{self, Root};
use crate::hostfs::Host;
use crate::plan::{Action, Plan};
use crate::systemd::Restarts;
use crate::{
    io, kubelet, missing_packages, unit_file, InstallError, Options, BIN_DIR, BIN_MODE, CONFIG,
    CONFIG_NEW, DIR_MODE, FILE_MODE, SHIM, UNIT, UNIT_WANTS, VORDR,
};

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

    let mut daemon_changed = plan_binaries(&h, &mut plan)?;
    daemon_changed |= plan_config(&h, &mut plan, config_text.as_deref())?;
    let unit_changed = plan_unit(&h, &mut plan)?;
    plan_edit_install(&h, &mut plan, &crictl(), &endpoint)?;
    let kubelet_changed = plan_kubelet(&h, &mut plan, &endpoint, config.cgroup.driver.as_str())?;

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

/// Plans copying `vordr` and the shim into [`BIN_DIR`]. Whether they change.
fn plan_binaries(h: &Host<'_>, plan: &mut Plan) -> Result<bool, InstallError> {
    let mut changed = false;
    for name in [VORDR, SHIM] {
        let from = h.o.source_dir.join(name);
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
            changed = true;
        }
    }
    Ok(changed)
}

/// Plans the default configuration: written when there is none, beside
/// one that differs. Whether the daemon's configuration changes.
fn plan_config(
    h: &Host<'_>,
    plan: &mut Plan,
    config_text: Option<&[u8]>,
) -> Result<bool, InstallError> {
    match config_text {
        None => {
            h.write_step(
                plan,
                format!("write {CONFIG} (the default configuration, mode 0644)"),
                Path::new(CONFIG),
                EMBEDDED_DEFAULT.as_bytes().to_vec(),
                FILE_MODE,
            );
            return Ok(true);
        }
        Some(t) if t == EMBEDDED_DEFAULT.as_bytes() => {}
        Some(_) => {
            plan.notes.push(format!(
                "kept {CONFIG}: it differs from this version's default, which is in {CONFIG_NEW}"
            ));
            if h.read(Path::new(CONFIG_NEW))?.as_deref() != Some(EMBEDDED_DEFAULT.as_bytes()) {
                h.write_step(
                    plan,
                    format!("write {CONFIG_NEW} (this version's default configuration, mode 0644)"),
                    Path::new(CONFIG_NEW),
                    EMBEDDED_DEFAULT.as_bytes().to_vec(),
                    FILE_MODE,
                );
            }
        }
    }
    Ok(false)
}

/// Plans the systemd unit and its enabling link. Whether they change.
fn plan_unit(h: &Host<'_>, plan: &mut Plan) -> Result<bool, InstallError> {
    let mut changed = false;
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
        changed = true;
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
        changed = true;
    }
    Ok(changed)
}

/// Plans pointing kubelet's files at `endpoint`, with warnings when there
/// are none or kubelet's cgroup driver differs from Vordr's `driver`.
/// Whether they change.
fn plan_kubelet(
    h: &Host<'_>,
    plan: &mut Plan,
    endpoint: &str,
    driver: &str,
) -> Result<bool, InstallError> {
    let o = h.o;
    let mut changed = false;
    let kubelet = kubelet_files(h)?;
    for f in &kubelet {
        changed |= plan_edit_install(h, plan, f, endpoint)?;
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
        let theirs = kubelet::yaml_get(&text(&kc), "cgroupDriver").ok().flatten();
        if let Some(d) = theirs.filter(|d| d != driver) {
            plan.warnings.push(format!(
                "kubelet's cgroupDriver is {d}, Vordr's is {driver}: kubelet 1.28 and later take the \
                 runtime's driver (KubeletCgroupDriverFromCRI); for older ones set \
                 [cgroup] driver = \"{d}\" in {CONFIG}"
            ));
        }
    }
    Ok(changed)
}
