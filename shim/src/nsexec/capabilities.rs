//! Capabilities: the spec's sets as bit masks, the bounding set shrunk, the rest set by capset.

use std::io;

use libcontainer::capabilities::CapabilityExt;
use libcontainer::oci_spec::runtime::{Capabilities, LinuxCapabilities};

use super::error::{cerr, ChildError};

/// Capability sets as bit masks (bit n = capability number n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CapMasks {
    pub(super) bounding: u64,
    pub(super) effective: u64,
    pub(super) permitted: u64,
    pub(super) inheritable: u64,
    pub(super) ambient: u64,
}

impl CapMasks {
    /// Like runc: a set the spec leaves out is empty.
    pub(super) fn from_spec(caps: &LinuxCapabilities) -> Self {
        fn mask(set: &Option<Capabilities>) -> u64 {
            set.iter()
                .flatten()
                .map(|c| 1u64 << c.to_cap().index())
                .fold(0, |acc, bit| acc | bit)
        }
        CapMasks {
            bounding: mask(caps.bounding()),
            effective: mask(caps.effective()),
            permitted: mask(caps.permitted()),
            inheritable: mask(caps.inheritable()),
            ambient: mask(caps.ambient()),
        }
    }
}

/// The highest capability number the kernel knows (probing the bounding set, so it works
/// without /proc).
pub(crate) fn last_cap() -> u32 {
    let mut last = 0;
    for cap in 0..64u32 {
        // SAFETY: plain prctl; EINVAL past the last capability.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            break;
        }
        last = cap;
    }
    last
}

#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the bounding set (needs CAP_SETPCAP: before changing user).
pub(crate) fn drop_bounding_set(last_cap: u32) -> Result<(), String> {
    shrink_bounding_set(0, last_cap).map_err(|e| e.msg)
}

/// Drops every capability not in `keep` from the bounding set (needs CAP_SETPCAP: before
/// changing user).
pub(super) fn shrink_bounding_set(keep: u64, last_cap: u32) -> Result<(), ChildError> {
    for cap in 0..=last_cap {
        if keep & (1 << cap) == 0 {
            // SAFETY: plain prctl.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                return Err(cerr(&format!(
                    "drop capability {cap} from the bounding set"
                )));
            }
        }
    }
    Ok(())
}

/// Empties the effective, permitted, inheritable and ambient sets.
pub(crate) fn clear_capabilities(last_cap: u32) -> Result<(), String> {
    let none = CapMasks {
        bounding: 0,
        effective: 0,
        permitted: 0,
        inheritable: 0,
        ambient: 0,
    };
    apply_caps(&none, last_cap).map_err(|e| e.msg)
}

/// Effective, permitted and inheritable in one capset(2) (like runc), then the ambient set.
/// Capabilities the kernel does not know are ignored (runc ignores unknown ones too).
pub(super) fn apply_caps(caps: &CapMasks, last_cap: u32) -> Result<(), ChildError> {
    let known = if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    };
    let (eff, perm, inh) = (
        caps.effective & known,
        caps.permitted & known,
        caps.inheritable & known,
    );
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapUserData {
            effective: eff as u32,
            permitted: perm as u32,
            inheritable: inh as u32,
        },
        CapUserData {
            effective: (eff >> 32) as u32,
            permitted: (perm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: header and two data structs, as capset(2) with version 3 expects.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } < 0 {
        return Err(cerr(&format!(
            "capset(effective {eff:#x}, permitted {perm:#x}, inheritable {inh:#x})"
        )));
    }
    // SAFETY: plain prctl calls.
    unsafe {
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) < 0
            && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
        {
            return Err(cerr("clear the ambient capabilities"));
        }
        for cap in 0..=last_cap {
            if caps.ambient & (1 << cap) != 0 {
                // Like runc, a capability that cannot be raised (not in permitted and
                // inheritable) is skipped rather than fatal.
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                );
            }
        }
    }
    Ok(())
}
