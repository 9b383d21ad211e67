//! The local terminal for `exec -t` and `run -t`: raw mode while a
//! session runs (restored on drop), its size, and its size changes.

use std::os::fd::AsFd;

use nix::sys::termios;
use tokio::sync::mpsc;

/// Puts stdin's terminal in raw mode until dropped; nothing when stdin is
/// not a terminal (a pipe in a script or a test).
pub struct RawMode(Option<termios::Termios>);

impl RawMode {
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = self.0.take() {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, &saved);
        }
    }
}

/// The terminal's (width, height): stdout's, else stdin's, else
/// `$COLUMNS` x `$LINES`, else 80 x 24.
pub fn size() -> (u16, u16) {
    for fd in [1, 0] {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills the winsize it is given.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return (ws.ws_col, ws.ws_row);
        }
    }
    let env = |k: &str, d: u16| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (env("COLUMNS", 80), env("LINES", 24))
}

/// The current size now and again after each SIGWINCH.
pub fn sizes() -> mpsc::Receiver<(u16, u16)> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if tx.send(size()).await.is_err() {
            return;
        }
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if tx.send(size()).await.is_err() {
                return;
            }
        }
    });
    rx
}
