//! File descriptors: paths opened close-on-exec (also relative to a directory), the rest closed.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub(super) fn open_path(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn open_at(dir: &OwnedFd, name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid dir fd and NUL-terminated relative path.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn read_at(dir: &OwnedFd, name: &str) -> io::Result<String> {
    let fd = open_at(dir, name, libc::O_RDONLY)?;
    io::read_to_string(File::from(fd))
}

pub(crate) fn close_fds_from(first: RawFd) {
    // SAFETY: closing fds we will never use again; nothing in this process refers to them.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) == 0
        {
            return;
        }
        let max = libc::sysconf(libc::_SC_OPEN_MAX);
        let max = if max <= 0 { 1 << 20 } else { max.min(1 << 20) } as RawFd;
        for fd in first..max {
            libc::close(fd);
        }
    }
}
