//! The registry clients a pull uses: oci-client for tokens and blobs, reqwest for manifests.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use super::error::Fetch;
use super::Puller;
use crate::registries::Source;

impl Puller {
    /// The oci-client client for `source`: a shared one for anonymous
    /// pulls, a fresh one for pulls with credentials.
    pub(super) fn client(&self, source: &Source, auth: &RegistryAuth) -> Client {
        let make = || {
            Client::new(ClientConfig {
                protocol: if source.insecure {
                    ClientProtocol::Http
                } else {
                    ClientProtocol::Https
                },
                max_concurrent_download: self.opts.parallel.max(1),
                connect_timeout: self.opts.connect_timeout,
                read_timeout: self.opts.read_timeout,
                ..Default::default()
            })
        };
        match auth {
            RegistryAuth::Anonymous => self.anonymous[source.insecure as usize]
                .get_or_init(make)
                .clone(),
            _ => make(),
        }
    }

    /// The client manifests are fetched with.
    pub(super) fn http(&self) -> Result<reqwest::Client, Fetch> {
        if let Some(c) = self.http.get() {
            return Ok(c.clone());
        }
        let mut b =
            reqwest::Client::builder().user_agent(concat!("vordr/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = self.opts.connect_timeout {
            b = b.connect_timeout(t);
        }
        if let Some(t) = self.opts.read_timeout {
            b = b.read_timeout(t);
        }
        let c = b
            .build()
            .map_err(|e| Fetch::Oci(OciDistributionError::RequestError(e)))?;
        Ok(self.http.get_or_init(|| c).clone())
    }
}
