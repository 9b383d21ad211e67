//! The exec spec checked and turned into all the child needs, before anything is changed.

use std::ffi::CString;

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Process};

use super::capabilities::CapMasks;
use super::env::prepare_env;
use super::error::NsExecError;
use super::rlimits::{rlimits_from_spec, Rlimit};
use super::seccomp::check_seccomp;

/// Everything the child needs, computed in the helper before the fork.
pub(super) struct Prepared {
    pub(super) program: String,
    pub(super) argv: Vec<CString>,
    /// Validated, de-duplicated environment (last value wins), without an empty HOME.
    pub(super) env: Vec<String>,
    pub(super) has_home: bool,
    pub(super) path_var: Option<String>,
    pub(super) cwd: CString,
    pub(super) uid: libc::uid_t,
    pub(super) gid: libc::gid_t,
    pub(super) additional_gids: Vec<libc::gid_t>,
    pub(super) umask: Option<libc::mode_t>,
    /// `None`: the spec has no capabilities object, and (like runc) they are left alone.
    pub(super) caps: Option<CapMasks>,
    pub(super) no_new_privs: bool,
    pub(super) apparmor_profile: Option<String>,
    pub(super) seccomp: Option<LinuxSeccomp>,
    pub(super) rlimits: Vec<Rlimit>,
    /// stdin is a terminal to become the controlling one.
    pub(super) terminal: bool,
}

impl Prepared {
    pub(super) fn new(
        process: &Process,
        seccomp: Option<&LinuxSeccomp>,
    ) -> Result<Self, NsExecError> {
        let invalid = |msg: String| NsExecError::InvalidSpec(msg);
        let args = process.args().clone().unwrap_or_default();
        let program = match args.first() {
            Some(p) if !p.is_empty() => p.clone(),
            _ => return Err(invalid("process.args is empty".into())),
        };
        let argv = args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| invalid("process.args contains a NUL byte".into()))?;

        let (env, has_home, path_var) =
            prepare_env(process.env().as_deref().unwrap_or(&[])).map_err(invalid)?;

        let cwd = process.cwd().to_string_lossy().into_owned();
        let cwd = if cwd.is_empty() { "/".to_string() } else { cwd };
        let cwd =
            CString::new(cwd).map_err(|_| invalid("process.cwd contains a NUL byte".into()))?;

        let user = process.user();
        let umask = match user.umask() {
            Some(m) if m > 0o777 => return Err(invalid(format!("umask {m:o} out of range"))),
            m => m.map(|m| m as libc::mode_t),
        };

        if let Some(profile) = seccomp {
            check_seccomp(profile).map_err(NsExecError::Unsupported)?;
        }

        // Checked here, with the host's /sys: youki refuses to create a container with a profile
        // when AppArmor is off, so a profile on such a host is a spec error.
        let apparmor_profile = process.apparmor_profile().clone().filter(|p| !p.is_empty());
        if let Some(profile) = &apparmor_profile {
            if !libcontainer::apparmor::is_enabled().unwrap_or(false) {
                return Err(NsExecError::Unsupported(format!(
                    "AppArmor profile {profile:?} but AppArmor is not enabled on this host"
                )));
            }
        }

        let rlimits = rlimits_from_spec(process)?;

        Ok(Prepared {
            program,
            argv,
            env,
            has_home,
            path_var,
            cwd,
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask,
            caps: process.capabilities().as_ref().map(CapMasks::from_spec),
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            apparmor_profile,
            seccomp: seccomp.cloned(),
            rlimits,
            terminal: process.terminal().unwrap_or(false),
        })
    }
}
