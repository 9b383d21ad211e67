//! A CRI v1 client for any runtime endpoint on a unix socket (Vordr,
//! containerd, CRI-O): used by the CLI, the benchmark and the e2e tests.
//! Also the readers of what a runtime leaves for clients: CRI log files
//! ([`crilog`]) and live exec / attach sessions ([`stream`]).

pub mod crilog;
pub mod stream;

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1 as cri;

/// Errors from connecting.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {0:?} is not a unix socket (want unix:///path or /path)")]
    BadEndpoint(String),
    #[error("connecting to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
}

/// Both CRI services over one connection.
#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

/// Turns `unix:///run/x.sock` or `/run/x.sock` into a path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ClientError> {
    let p = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if p.starts_with('/') {
        Ok(PathBuf::from(p))
    } else {
        Err(ClientError::BadEndpoint(endpoint.to_string()))
    }
}

impl CriClient {
    /// Connects to the CRI endpoint `endpoint`.
    pub async fn connect(endpoint: &str) -> Result<CriClient, ClientError> {
        let path = socket_path(endpoint)?;
        Self::connect_path(&path).await
    }

    /// Connects to the unix socket at `path`.
    pub async fn connect_path(path: &Path) -> Result<CriClient, ClientError> {
        let p = path.to_path_buf();
        let channel = Endpoint::from_static("http://[::1]:50051")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = p.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
                }
            }))
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            image: ImageServiceClient::new(channel).max_decoding_message_size(16 << 20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/a.sock").unwrap(),
            PathBuf::from("/run/a.sock")
        );
        assert_eq!(
            socket_path("/run/a.sock").unwrap(),
            PathBuf::from("/run/a.sock")
        );
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
        assert!(socket_path("relative.sock").is_err());
    }
}
