//! Terminals: console sockets, the pty master a runtime sends there, terminal sizes.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use containerd_shim::TtrpcResult;

use super::reply::internal;

/// How long an exec's runtime has to send its terminal's master.
pub(super) const EXEC_CONSOLE_WAIT: Duration = Duration::from_secs(10);

/// Binds the console socket `name` in the shim socket directory (short
/// enough for a socket address whatever the bundle path), 0600.
pub(super) fn bind_console_socket(name: &str) -> TtrpcResult<(UnixListener, PathBuf)> {
    let dir = vordr_shim_api::socket_dir();
    let sock = vordr_shim_api::socket_path(&dir, name);
    let _ = std::fs::remove_file(&sock);
    let listener = vordr_fsmode::bind_unix(&sock, vordr_fsmode::PRIVATE_SOCKET)
        .map_err(|e| internal(format!("console socket: {e}")))?;
    Ok((listener, sock))
}

/// Receives the pty master a runtime sends to a console socket, waiting at
/// most `wait` (for ever without) for it to connect and send.
pub(super) fn receive_master(
    listener: UnixListener,
    wait: Option<Duration>,
) -> std::io::Result<OwnedFd> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsFd, AsRawFd, FromRawFd};
    if let Some(wait) = wait {
        let ms = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, ms).map_err(std::io::Error::from)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the runtime sent no terminal",
            ));
        }
    }
    let (conn, _) = listener.accept()?;
    conn.set_read_timeout(wait)?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just gave us this descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("no pty master received"))
}

/// Sets the size of the terminal whose master is `fd` (each dimension at
/// most 65535).
pub(super) fn resize(fd: &OwnedFd, width: u32, height: u32) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: height.min(u32::from(u16::MAX)) as u16,
        ws_col: width.min(u32::from(u16::MAX)) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            libc::TIOCSWINSZ,
            &ws as *const libc::winsize,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
