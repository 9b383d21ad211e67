//! The container's seccomp profile: refused if it needs an agent, else loaded with libcontainer.

use libcontainer::oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

use super::error::ChildError;

/// Loads the container's profile, if it has one, in the child.
pub(super) fn load_seccomp(profile: Option<&LinuxSeccomp>) -> Result<(), ChildError> {
    if let Some(profile) = profile {
        load_seccomp_profile(profile).map_err(|msg| ChildError { code: 127, msg })?;
    }
    Ok(())
}

/// Refuses what [`load_seccomp_profile`] cannot do: SCMP_ACT_NOTIFY needs a seccomp agent.
pub(crate) fn check_seccomp(profile: &LinuxSeccomp) -> Result<(), String> {
    let notify = profile
        .syscalls()
        .iter()
        .flatten()
        .any(|s| s.action() == LinuxSeccompAction::ScmpActNotify);
    if notify || profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err("seccomp profiles with SCMP_ACT_NOTIFY (no seccomp agent support)".into());
    }
    Ok(())
}

/// Loads `profile` into this process with libcontainer's seccomp initialisation (what youki
/// does for a container's init). Needs no_new_privs, or CAP_SYS_ADMIN.
pub(crate) fn load_seccomp_profile(profile: &LinuxSeccomp) -> Result<(), String> {
    libcontainer::seccomp::initialize_seccomp(profile)
        .map(|_| ())
        .map_err(|e| format!("load seccomp profile: {e}"))
}
