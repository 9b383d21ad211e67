//! The host files the installer edits and saves (crictl.yaml, kubelet's), planned both ways.

use std::path::{Path, PathBuf};

use crate::files::Root;
use crate::hostfs::Host;
use crate::plan::{Action, Plan};
use crate::{
    crictl_yaml, kubelet, InstallError, Options, CRICTL, ENDPOINT_FLAG, ENDPOINT_KEY, FILE_MODE,
    FLAGS_VAR, IMAGE_FLAG, IMAGE_KEY, SAVED_MODE,
};

/// One of the host files the installer edits and saves: crictl.yaml,
/// kubelet's config file, kubeadm's flags file.
pub(crate) struct Edited {
    pub(crate) host: PathBuf,
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

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn kubelet_files(h: &Host<'_>) -> Result<Vec<Edited>, InstallError> {
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

pub(crate) fn crictl() -> Edited {
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
pub(crate) fn plan_edit_install(
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
pub(crate) fn plan_edit_uninstall(
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
            changed = plan_edit_restore(h, plan, f, endpoint, s, c, ours)?;
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

/// Plans uninstalling an edited file that is still there with a saved copy
/// `saved`: the saved bytes when `current` is as the installer left it, its
/// old endpoint when it changed since and is still `ours`. Whether it
/// changes.
fn plan_edit_restore(
    h: &Host<'_>,
    plan: &mut Plan,
    f: &Edited,
    endpoint: &str,
    saved: &[u8],
    current: &str,
    ours: bool,
) -> Result<bool, InstallError> {
    let saved_path = h.saved(f.saved_name);
    if current == f.install(&text(saved), endpoint)? {
        h.write_step(
            plan,
            format!("restore {} from {}", f.host.display(), saved_path.display()),
            &f.host,
            saved.to_vec(),
            FILE_MODE,
        );
        return Ok(true);
    }
    if !ours {
        plan.notes.push(format!(
            "left {} as is: it no longer points at Vordr",
            f.host.display()
        ));
        return Ok(false);
    }
    let Some(t) = f.revert(current, &text(saved))? else {
        plan.notes.push(format!(
            "kept {}: it changed since install (the original is in {} until now)",
            f.host.display(),
            saved_path.display()
        ));
        return Ok(false);
    };
    h.write_step(
        plan,
        format!(
            "set the runtime endpoint in {} back to {} (the file changed since install; the rest is kept)",
            f.host.display(),
            f.endpoint(&text(saved))?.unwrap_or_else(|| "kubelet's default".into())
        ),
        &f.host,
        t.into_bytes(),
        FILE_MODE,
    );
    Ok(true)
}
