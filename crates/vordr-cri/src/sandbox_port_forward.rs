//! PortForward: a single-use streaming URL for a pod, and the connections
//! it forwards, made to the port on the pod's loopback from inside its
//! network namespace (the host's for host-network pods).

use k8s_cri::v1::{PortForwardRequest, PortForwardResponse};
use tonic::Status;
use vordr_store::PodState;
use vordr_streaming::PortForwardTarget;

use crate::state::errors::invalid;
use crate::state::Runtime;

pub fn port_forward(rt: &Runtime, req: PortForwardRequest) -> Result<PortForwardResponse, Status> {
    let pod = rt.find_pod(&req.pod_sandbox_id)?;
    if pod.state != PodState::Ready {
        return Err(Status::failed_precondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    let ports = req
        .port
        .iter()
        .enumerate()
        .map(|(i, p)| {
            u16::try_from(*p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid(&format!("port[{i}]"), format!("{p} is not a TCP port")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let server = rt
        .streaming
        .get()
        .ok_or_else(|| Status::unavailable("the streaming server is not running"))?;
    let url = server.port_forward_url(PortForwardTarget {
        pod_id: pod.id,
        ports,
    });
    Ok(PortForwardResponse { url })
}

/// A TCP connection to `port` on the pod's loopback (127.0.0.1, then ::1).
pub async fn connect(
    rt: &Runtime,
    pod_id: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    let pod = rt
        .find_pod(pod_id)
        .map_err(|e| Status::from(e).message().to_string())?;
    if pod.state != PodState::Ready {
        return Err(format!("pod sandbox {} is not ready", pod.id));
    }
    let dial = move || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .or_else(|_| std::net::TcpStream::connect(("::1", port)))
    };
    let stream = if pod.host_network {
        tokio::task::spawn_blocking(dial)
            .await
            .map_err(|e| e.to_string())?
    } else {
        let netns = pod
            .netns_path
            .clone()
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| rt.layout.ns_pin(&pod.id, "net"));
        tokio::task::spawn_blocking(move || vordr_net::netns::in_netns(&netns, dial))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("entering the pod's network namespace: {e}"))?
    }
    .map_err(|e| format!("connecting to port {port}: {e}"))?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())
}
