//! The exec's terminal: a pty from the container's devpts, the slave as stdio, the master sent.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::error::NsExecError;
use super::fs::open_path;

/// In the container's mount namespace: opens a terminal in its devpts (`/dev/ptmx` must be the
/// pty multiplexer, the slave a terminal), makes the slave our stdio (the child inherits it) and
/// sends the master to the shim.
pub(super) fn open_console(console: &OwnedFd) -> Result<(), NsExecError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let err = |what: &str, source: io::Error| NsExecError::Setup {
        step: format!("exec terminal: {what}"),
        source,
    };
    let not_a_pty = |what: &str| err(what, io::Error::from_raw_os_error(libc::ENOTTY));
    let master = open_path(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
        .map_err(|e| err("open /dev/ptmx", e))?;
    let st =
        nix::sys::stat::fstat(master.as_raw_fd()).map_err(|e| err("stat /dev/ptmx", e.into()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(5, 2) {
        return Err(not_a_pty("/dev/ptmx is not the pty multiplexer"));
    }
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: unlockpt and ptsname_r on the master we opened, into a buffer of the given length.
    unsafe {
        if libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(err("unlockpt", io::Error::last_os_error()));
        }
        let r = libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len());
        if r != 0 {
            return Err(err("ptsname", io::Error::from_raw_os_error(r)));
        }
    }
    // SAFETY: ptsname_r wrote a NUL-terminated name into the buffer.
    let name = unsafe { CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let slave = open_path(Path::new(&name), libc::O_RDWR | libc::O_NOCTTY)
        .map_err(|e| err("open the pty slave", e))?;
    // SAFETY: isatty and dup2 on fds we own onto our stdio.
    unsafe {
        if libc::isatty(slave.as_raw_fd()) != 1 {
            return Err(not_a_pty("the pty slave is not a terminal"));
        }
        for fd in 0..3 {
            if libc::dup2(slave.as_raw_fd(), fd) < 0 {
                return Err(err("stdio", io::Error::last_os_error()));
            }
        }
    }
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        console.as_raw_fd(),
        &[io::IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| err("send the master to the shim", e.into()))?;
    Ok(())
}
