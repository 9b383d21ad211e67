//! Becoming the process's user: stdio handed over, groups, gid and uid set, the cwd checked.

use std::ffi::CStr;
use std::io;

use super::error::{cerr, check, ChildError};
use super::prepare::Prepared;

/// Becomes the process's user, keeping the capabilities to be set next:
/// stdio handed over, supplementary groups, gid, uid, then the cwd (retried as the user after
/// `chdir_later`) checked.
pub(super) fn become_user(p: &Prepared, chdir_later: bool) -> Result<(), ChildError> {
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            "set keepcaps",
        )?;
        fix_stdio_owner(p.uid);
        if setgroups_allowed() {
            check(
                libc::setgroups(p.additional_gids.len(), p.additional_gids.as_ptr()),
                "setgroups",
            )?;
        }
        if libc::setresgid(p.gid, p.gid, p.gid) < 0 {
            return Err(id_err("gid", p.gid));
        }
        if libc::setresuid(p.uid, p.uid, p.uid) < 0 {
            return Err(id_err("uid", p.uid));
        }
        if chdir_later && libc::chdir(p.cwd.as_ptr()) < 0 {
            return Err(cerr(&format!("chdir to cwd {:?}", p.cwd)));
        }
    }
    verify_cwd()?;
    // SAFETY: plain prctl.
    check(
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) },
        "clear keepcaps",
    )
}

fn id_err(kind: &str, id: u32) -> ChildError {
    let e = io::Error::last_os_error();
    let msg = if e.raw_os_error() == Some(libc::EINVAL) {
        format!("cannot set{kind} to {id}: not mapped in the container's user namespace")
    } else {
        format!("set{kind} to {id}: {e}")
    };
    ChildError { code: 127, msg }
}

/// runc's `fixStdioPermissions`: give stdio to the process's user so that it can reopen it
/// (/dev/stdout, /proc/self/fd/N). Unlike runc, only pipes, sockets and character devices other
/// than /dev/null are changed, never a regular file or directory of the host. Failures (EPERM
/// for an owner not mapped in the user namespace, EROFS) leave the fd as it is.
fn fix_stdio_owner(uid: libc::uid_t) {
    for fd in 0..3 {
        // SAFETY: fstat into a zeroed struct, fchown on one of our stdio fds.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut st) != 0 || st.st_uid == uid {
                continue;
            }
            let kind = st.st_mode & libc::S_IFMT;
            let dev_null = kind == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
            if dev_null || !matches!(kind, libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR) {
                continue;
            }
            libc::fchown(fd, uid, libc::gid_t::MAX);
        }
    }
}

fn setgroups_allowed() -> bool {
    // "deny" in an unprivileged user namespace: setgroups(2) would fail with EPERM.
    std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() != "deny")
        .unwrap_or(true)
}

/// runc's `verifyCwd`: a cwd outside the mount namespace's root makes getcwd(2) fail with
/// ENOENT (or return "(unreachable)...").
fn verify_cwd() -> Result<(), ChildError> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: buffer of the given length.
    let r = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if r.is_null() {
        let e = io::Error::last_os_error();
        return Err(ChildError {
            code: 127,
            msg: if e.raw_os_error() == Some(libc::ENOENT) {
                "current working directory is outside of the container's root".into()
            } else {
                format!("getcwd: {e}")
            },
        });
    }
    // SAFETY: getcwd wrote a NUL-terminated string into buf.
    let cwd = unsafe { CStr::from_ptr(buf.as_ptr().cast()) };
    if !cwd.to_bytes().starts_with(b"/") {
        return Err(ChildError {
            code: 127,
            msg: format!("current working directory {cwd:?} is not absolute"),
        });
    }
    Ok(())
}
