//! Planning the uninstall: kubelet pointed back, unit, binaries and default config removed.

use std::path::{Path, PathBuf};

use vordr_config::EMBEDDED_DEFAULT;

use crate::edited::{crictl, kubelet_files, plan_edit_uninstall};
use crate::files::{self, Root};
use crate::hostfs::Host;
use crate::plan::{Action, Plan};
use crate::systemd::Restarts;
use crate::{
    InstallError, Options, BIN_DIR, CONFIG, CONFIG_DIR, CONFIG_NEW, SAVED_DIR, SHIM, UNIT,
    UNIT_WANTS, VORDR,
};

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

    plan_config_removal(&h, &mut plan)?;
    if unit_present || kubelet_changed {
        plan.notes.push(
            "Vordr's state (/var/lib/vordr, /run/vordr) and any pods it still runs are left: \
             drain the node before uninstalling"
                .into(),
        );
    }
    Ok(plan)
}

/// Plans removing the default configuration, the saved copies' directory
/// and the configuration directory when the removals empty them.
fn plan_config_removal(h: &Host<'_>, plan: &mut Plan) -> Result<(), InstallError> {
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
    Ok(())
}
