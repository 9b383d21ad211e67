//! systemd's readiness protocol for `vordr serve` under `Type=notify`: one
//! datagram per state to `$NOTIFY_SOCKET`. The variable is taken out of
//! the environment at start, so that shims, runc and containers never
//! inherit it (runc would make every container's start wait for a READY
//! of its own).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Where to tell systemd; nothing when not started by systemd.
pub struct Notifier(Option<OsString>);

impl Notifier {
    /// Takes `NOTIFY_SOCKET` out of the environment. Call it before any
    /// thread starts (the environment is not thread-safe).
    pub fn from_env() -> Notifier {
        let path = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty());
        std::env::remove_var("NOTIFY_SOCKET");
        Notifier(path)
    }

    /// Sends `state` (e.g. `READY=1`); failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(path) = &self.0 else { return };
        if let Err(e) = send(path, state) {
            tracing::warn!("telling systemd {state} on {}: {e}", path.to_string_lossy());
        }
    }
}

fn send(path: &OsString, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // "@name" is an abstract socket.
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(format!("{state}\n").as_bytes(), &addr)?;
    } else {
        sock.send_to(format!("{state}\n").as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_the_socket_and_children_do_not_inherit_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        let abs = UnixDatagram::bind_addr(
            &<std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
                format!("vordr-notify-test-{}", std::process::id()),
            )
            .unwrap(),
        )
        .unwrap();
        let mut buf = [0u8; 64];
        // The only test of this binary that touches NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        let n = Notifier::from_env();
        assert_eq!(std::env::var_os("NOTIFY_SOCKET"), None);
        let child = std::process::Command::new("sh")
            .args(["-c", "echo ${NOTIFY_SOCKET-unset}"])
            .output()
            .unwrap();
        assert_eq!(child.stdout, b"unset\n");
        n.notify("READY=1");
        let len = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\n");
        let a = Notifier(Some(
            format!("@vordr-notify-test-{}", std::process::id()).into(),
        ));
        a.notify("STOPPING=1");
        let len = abs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\n");
        // Without the variable, nothing is sent and nothing fails.
        Notifier(None).notify("READY=1");
    }
}
