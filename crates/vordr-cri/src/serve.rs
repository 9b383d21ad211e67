//! `vordr serve`: open the state, reconcile, and answer CRI on a unix socket
//! until told to stop. Pods outlive the daemon: stopping it touches none.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
use vordr_h2authority::AuthorityFix;

use crate::recovery::reconcile;
use crate::service::Vordr;
use crate::state::{Runtime, RuntimeOptions};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("creating directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening state: {0}")]
    Store(#[from] vordr_store::StoreError),
    #[error("socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket {0} is in use: another runtime is serving on it")]
    InUse(PathBuf),
    #[error("{0}")]
    Audit(#[from] vordr_audit::AuditError),
    #[error("images: {0}")]
    Images(String),
    #[error("[cgroup] driver: {0}")]
    CgroupDriver(#[from] crate::container::cgroup::CgroupError),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Streaming(#[from] vordr_streaming::ServerError),
    #[error("metrics address {addr} (server.metrics_address): {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `path` with mode 0600, replacing a stale socket but never a live one.
fn bind(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    let err = |source| ServeError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(err)?;
        tracing::info!(socket = %path.display(), "replaced a stale socket");
    }
    // 0600 from the start: no window where others may connect.
    let listener = vordr_fsmode::bind_unix(path, vordr_fsmode::PRIVATE_SOCKET).map_err(err)?;
    listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener))
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            err(e)
        })
}

/// Keeps group and world write out of the umask (a stricter one is kept):
/// whatever is created without an explicit mode (by the daemon, its shims,
/// or a container whose spec sets no umask) is never writable by others,
/// even under `umask 000`. Modes that matter are set explicitly anyway.
fn no_group_or_world_write() {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o022));
    umask(old | Mode::from_bits_truncate(0o022));
}

/// `shutdown`, then the container event streams ended: they never end on
/// their own, and a graceful stop waits for every open call.
async fn end_streams(rt: Arc<Runtime>, shutdown: impl Future<Output = ()>) {
    shutdown.await;
    rt.events.close_all();
}

/// Runs the CRI server until `shutdown` resolves; `listening` is called
/// once the CRI socket accepts connections (systemd's READY=1).
pub async fn serve(
    opts: RuntimeOptions,
    listening: impl FnOnce() + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let socket = opts.config.server.socket.clone();
    no_group_or_world_write();
    if opts.config.cgroup.driver == vordr_config::CgroupDriver::Systemd {
        crate::container::cgroup::systemd::available()?;
    }
    let rt = Arc::new(Runtime::open(opts)?);
    rt.set_arc();
    // Shims publish exits here; it must be up before any shim is asked.
    let _events = crate::shim::events::serve_events(rt.clone(), &rt.layout.events_socket())
        .await
        .map_err(|e| ServeError::Socket {
            path: rt.layout.events_socket(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let report = reconcile(&rt).await;
    for e in &report.errors {
        tracing::error!("reconcile: {e}");
    }
    tracing::info!(?report, "reconciled state with the machine");
    let probe_rt = rt.clone();
    match tokio::task::spawn_blocking(move || probe_rt.idmap_support().clone()).await {
        Ok(Ok(what)) => tracing::info!("idmapped mounts for user-namespaced pods: {what}"),
        Ok(Err(why)) => {
            tracing::warn!("user-namespaced pods will be refused: no idmapped mounts: {why}")
        }
        Err(e) => tracing::warn!("idmapped mount probe: {e}"),
    }
    let probe_rt = rt.clone();
    let rro = tokio::task::spawn_blocking(move || probe_rt.rro_support(""))
        .await
        .unwrap_or(false);
    tracing::info!("recursive read-only mounts (default handler): {rro}");
    match rt.network_health().await {
        Ok(v) => tracing::info!(netavark = %v, "network plugin ready"),
        Err(e) => tracing::warn!("network not ready: {e}"),
    }
    crate::net::pool::spawn_refill_task(rt.clone());
    crate::stats::spawn_refresh_task(&rt);
    let sc = &rt.config.streaming;
    let streaming_addr = std::net::SocketAddr::new(sc.address, sc.port);
    let to_usize = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    let settings = vordr_streaming::Settings {
        addr: streaming_addr,
        limits: vordr_streaming::Limits {
            header_read_timeout: sc.header_read_timeout,
            idle_timeout: sc.idle_timeout,
            max_connections: to_usize(sc.max_connections),
            max_streams_per_session: to_usize(sc.max_streams_per_session),
            max_port_forward_pairs: to_usize(sc.max_port_forward_pairs),
        },
        tls: sc.tls().then(|| vordr_streaming::TlsFiles {
            cert: sc.tls_cert.clone(),
            key: sc.tls_key.clone(),
        }),
        insecure: sc.insecure,
    };
    let backend = Arc::new(crate::streaming::StreamingBackend(Arc::downgrade(&rt)));
    let streaming = vordr_streaming::Server::start_with(settings, backend).await?;
    let _ = rt.streaming.set(streaming);
    let metrics = match rt.config.server.metrics_address {
        Some(addr) => {
            let listener = crate::metrics::http::bind(addr).await?;
            tracing::info!(address = %listener.local_addr().unwrap_or(addr), "serving metrics at /metrics");
            Some(crate::metrics::http::spawn(listener, Arc::downgrade(&rt)))
        }
        None => None,
    };
    // Calls are counted only when someone can scrape them.
    let layer = crate::metrics::layer::MetricsLayer(metrics.as_ref().map(|_| rt.metrics));
    let listener = bind(&socket)?;
    tracing::info!(socket = %socket.display(), root = %rt.layout.root().display(), "vordr serving CRI v1");
    listening();
    let svc = Vordr(rt.clone());
    // crictl/critest 1.26 and older kubelets send the socket path as the
    // HTTP/2 :authority, which hyper rejects; repair it per connection.
    let incoming = UnixListenerStream::new(listener).map(|c| c.map(AuthorityFix::new));
    let res = tonic::transport::Server::builder()
        .layer(layer)
        .add_service(RuntimeServiceServer::new(svc.clone()).max_decoding_message_size(16 << 20))
        .add_service(ImageServiceServer::new(svc).max_decoding_message_size(16 << 20))
        .serve_with_incoming_shutdown(incoming, end_streams(rt.clone(), shutdown))
        .await;
    let _ = std::fs::remove_file(&socket);
    if let Some(task) = metrics {
        task.abort();
    }
    tracing::info!("vordr stopped; pods keep running");
    res.map_err(ServeError::from)
}
