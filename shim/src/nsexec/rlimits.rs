//! Resource limits, set by the helper while it still has host privileges.

use std::io;

use libcontainer::oci_spec::runtime::{PosixRlimitType, Process};

use super::error::NsExecError;

pub(super) struct Rlimit {
    pub(super) name: String,
    pub(super) resource: RlimitResource,
    pub(super) soft: u64,
    pub(super) hard: u64,
}

#[cfg(target_env = "gnu")]
pub(super) type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
pub(super) type RlimitResource = libc::c_int;

impl Rlimit {
    pub(super) fn apply(&self) -> io::Result<()> {
        let value = libc::rlimit {
            rlim_cur: self.soft as libc::rlim_t,
            rlim_max: self.hard as libc::rlim_t,
        };
        // SAFETY: valid pointer to an initialised rlimit.
        if unsafe { libc::setrlimit(self.resource, &value) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn rlimit_resource(typ: PosixRlimitType) -> RlimitResource {
    match typ {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// The process's rlimits, refused if a soft limit is above its hard one.
pub(super) fn rlimits_from_spec(process: &Process) -> Result<Vec<Rlimit>, NsExecError> {
    process
        .rlimits()
        .iter()
        .flatten()
        .map(|r| {
            if r.soft() > r.hard() {
                return Err(NsExecError::InvalidSpec(format!(
                    "rlimit {}: soft {} > hard {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                )));
            }
            Ok(Rlimit {
                name: r.typ().to_string(),
                resource: rlimit_resource(r.typ()),
                soft: r.soft(),
                hard: r.hard(),
            })
        })
        .collect()
}
