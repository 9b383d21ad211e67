//! The few netlink calls teardown needs: whether an interface exists in a
//! pinned network namespace, and a placeholder veth so that netavark can
//! finish a teardown whose veth is already gone.

use std::fs::File;
use std::path::Path;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::CloneFlags;

/// Errors from the netlink helpers.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("entering network namespace {path}: {source}")]
    Enter {
        path: String,
        source: std::io::Error,
    },
    #[error("netlink: {0}")]
    Netlink(std::io::Error),
}

/// Runs `f` on a short-lived thread inside the network namespace at `netns`.
fn inside<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> Result<T, LinkError> + Send + 'static,
) -> Result<T, LinkError> {
    let enter = |source| LinkError::Enter {
        path: netns.display().to_string(),
        source,
    };
    let file = File::open(netns).map_err(enter)?;
    std::thread::spawn(move || {
        nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| LinkError::Netlink(e.into()))?;
        f()
    })
    .join()
    .map_err(|_| enter(std::io::Error::other("netns thread panicked")))?
}

/// Whether the namespace pinned at `netns` has an interface called `name`.
pub fn exists(netns: &Path, name: &str) -> Result<bool, LinkError> {
    let name = std::ffi::CString::new(name).map_err(|e| LinkError::Netlink(e.into()))?;
    inside(netns, move || {
        // SAFETY: a NUL-terminated string we own.
        if unsafe { libc::if_nametoindex(name.as_ptr()) } != 0 {
            return Ok(true);
        }
        match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            e => Err(LinkError::Netlink(e)),
        }
    })
}

/// Creates a veth pair `name` / `peer` with both ends inside `netns`.
/// netavark 1.4's teardown deletes the pod's veth by name before it
/// removes the bridge and the network's firewall rules, and fails when the
/// veth is already gone (a crash after an earlier teardown deleted it); a
/// placeholder lets it finish.
pub fn add_placeholder_veth(netns: &Path, name: &str, peer: &str) -> Result<(), LinkError> {
    let (name, peer) = (name.to_string(), peer.to_string());
    inside(netns, move || {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes.push(LinkAttribute::IfName(peer));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        request(RouteNetlinkMessage::NewLink(msg))
    })
}

/// Brings interface `name` up in the namespace at `netns` (a new
/// namespace's loopback is down; containerd and CRI-O bring it up for every
/// pod, whatever attaches the pod's network).
pub fn set_up(netns: &Path, name: &str) -> Result<(), LinkError> {
    let name = std::ffi::CString::new(name).map_err(|e| LinkError::Netlink(e.into()))?;
    inside(netns, move || {
        // SAFETY: a NUL-terminated string we own.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(LinkError::Netlink(std::io::Error::last_os_error()));
        }
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        request_with(RouteNetlinkMessage::SetLink(msg), NLM_F_REQUEST | NLM_F_ACK)
    })
}

/// Sends one request that creates something and waits for its ACK.
fn request(msg: RouteNetlinkMessage) -> Result<(), LinkError> {
    request_with(msg, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
}

/// Sends one request with `flags` and waits for its ACK.
fn request_with(msg: RouteNetlinkMessage, flags: u16) -> Result<(), LinkError> {
    let io = LinkError::Netlink;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);

    let mut socket = Socket::new(NETLINK_ROUTE).map_err(io)?;
    socket.bind_auto().map_err(io)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(io)?;
    socket.send(&buf, 0).map_err(io)?;
    // The answer to one request fits a page; a bigger one is not an ACK.
    let mut answer = vec![0u8; 8192];
    let n = socket.recv(&mut &mut answer[..], 0).map_err(io)?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&answer[..n])
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    match reply.payload {
        NetlinkPayload::Error(e) => match e.code {
            None => Ok(()),
            Some(code) => Err(io(std::io::Error::from_raw_os_error(-code.get()))),
        },
        other => Err(io(std::io::Error::other(format!(
            "unexpected netlink answer {other:?}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{self, NsRequest};

    #[test]
    fn placeholder_veth_in_a_fresh_namespace() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("pod");
        let req = NsRequest {
            net: true,
            ..NsRequest::default()
        };
        let pins = netns::create(&dir, &req).unwrap();
        let net = pins.net.clone().unwrap();
        assert!(!exists(&net, "eth0").unwrap());
        add_placeholder_veth(&net, "eth0", "vordr-ph0").unwrap();
        assert!(exists(&net, "eth0").unwrap());
        assert!(exists(&net, "vordr-ph0").unwrap());
        // A second one with the same name is refused, not duplicated.
        let again = add_placeholder_veth(&net, "eth0", "vordr-ph1").unwrap_err();
        assert!(again.to_string().contains("exists"), "{again}");
        // The loopback of a new namespace is down until brought up.
        let lo_up = |net: &Path| {
            let net = net.to_path_buf();
            crate::netns::in_netns(&net, || {
                // Refused (up, nobody listening) rather than unreachable.
                std::net::TcpStream::connect(("127.0.0.1", 9))
                    .err()
                    .and_then(|e| e.raw_os_error())
                    != Some(libc::ENETUNREACH)
            })
            .unwrap()
        };
        assert!(!lo_up(&net));
        set_up(&net, "lo").unwrap();
        assert!(lo_up(&net));
        netns::release(&pins).unwrap();
    }
}
