//! Registry credentials: a docker-style auth file (`config.json` /
//! containers `auth.json`), and which credentials each source of a pull
//! gets ([`credentials_for`]): kubelet's go only to the registry they were
//! given for.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use crate::registries::Source;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthFileError {
    #[error("reading auth file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("auth file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Deserialize)]
struct File {
    /// Ordered, so that which key wins and which error is reported do not
    /// depend on a hash map's random order.
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "registrytoken")]
    registry_token: String,
}

/// Credentials per registry host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthFile {
    hosts: HashMap<String, (String, String, String)>,
}

/// The registry host an auth file key or a server address names
/// (`https://index.docker.io/v1/` -> `docker.io`), as docker and podman
/// normalise it: scheme and path dropped, lower case, Docker Hub's hosts
/// as `docker.io`.
pub fn registry_host(key: &str) -> String {
    let k = key.trim().to_ascii_lowercase();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(&k);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

fn host_of(key: &str) -> String {
    registry_host(key)
}

/// Credentials kubelet sent with a pull (a pull secret), and the registry
/// they are for (`AuthConfig.server_address`; empty means the image's own).
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletAuth {
    pub auth: RegistryAuth,
    pub server_address: String,
}

/// What `source` is pulled with. kubelet's credentials go to it only if it
/// is the registry they were given for (the server address, or the
/// registry of the image name when kubelet names none), or a mirror of that
/// registry configured with `send-credentials = true`. Every other source
/// (a mirror, a rewritten location, another search registry) gets the auth
/// file's entry for its own host, or none.
pub fn credentials_for(
    source: &Source,
    kubelet: Option<&KubeletAuth>,
    file: &AuthFile,
) -> RegistryAuth {
    if let Some(k) = kubelet {
        let given_for = if k.server_address.trim().is_empty() {
            registry_host(&source.image_registry)
        } else {
            registry_host(&k.server_address)
        };
        let host = registry_host(source.reference.registry());
        let opted_in_mirror = source.mirror
            && source.send_credentials
            && registry_host(&source.image_registry) == given_for;
        if host == given_for || opted_in_mirror {
            return k.auth.clone();
        }
    }
    file.for_registry(source.reference.registry())
}

impl AuthFile {
    /// Parses the file's text. Several keys may name one host (`docker.io`
    /// and `https://index.docker.io/v1/`, `quay.io` and `quay.io/team`):
    /// the bare host wins, as in podman's lookup, else the first key in
    /// sorted order.
    pub fn parse(text: &str, origin: &str) -> Result<AuthFile, AuthFileError> {
        let invalid = |reason: String| AuthFileError::Invalid {
            path: origin.to_string(),
            reason,
        };
        let f: File = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut hosts = HashMap::new();
        for (key, e) in f.auths {
            let (mut user, mut pass) = (e.username, e.password);
            if !e.auth.is_empty() {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(e.auth.trim())
                    .map_err(|err| invalid(format!("{key}: auth is not base64: {err}")))?;
                let s = String::from_utf8(raw)
                    .map_err(|_| invalid(format!("{key}: auth is not UTF-8")))?;
                let (u, p) = s
                    .split_once(':')
                    .ok_or_else(|| invalid(format!("{key}: auth is not user:password")))?;
                (user, pass) = (u.to_string(), p.to_string());
            }
            let host = host_of(&key);
            if key == host || !hosts.contains_key(&host) {
                hosts.insert(host, (user, pass, e.registry_token));
            }
        }
        Ok(AuthFile { hosts })
    }

    /// Reads `path`; a missing file holds no credentials.
    pub fn load(path: &Path) -> Result<AuthFile, AuthFileError> {
        match std::fs::read_to_string(path) {
            Ok(t) => AuthFile::parse(&t, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(AuthFileError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// The credentials for `registry` (a host, with port if any).
    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.hosts.get(&host_of(registry)) {
            Some((_, _, token)) if !token.is_empty() => RegistryAuth::Bearer(token.clone()),
            Some((u, p, _)) if !u.is_empty() => RegistryAuth::Basic(u.clone(), p.clone()),
            _ => RegistryAuth::Anonymous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(a: RegistryAuth) -> Option<(String, String)> {
        match a {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        }
    }

    #[test]
    fn docker_config_json() {
        let f = AuthFile::parse(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcjN0"},
                "127.0.0.1:5000": {"username": "bob", "password": "pw"},
                "ghcr.io": {"registrytoken": "tok"}
            }}"#,
            "t",
        )
        .unwrap();
        assert_eq!(
            basic(f.for_registry("docker.io")),
            Some(("alice".into(), "s3cr3t".into()))
        );
        assert_eq!(
            basic(f.for_registry("127.0.0.1:5000")),
            Some(("bob".into(), "pw".into()))
        );
        assert!(matches!(f.for_registry("ghcr.io"), RegistryAuth::Bearer(t) if t == "tok"));
        assert!(matches!(f.for_registry("quay.io"), RegistryAuth::Anonymous));
    }

    /// The credentials each source of `image`'s plan gets, by source.
    fn routed(
        conf: &str,
        image: &str,
        server_address: &str,
        file: &AuthFile,
    ) -> Vec<(String, Option<(String, String)>)> {
        let plan = crate::registries::RegistriesConf::parse(conf, "t")
            .unwrap()
            .resolve(image)
            .unwrap();
        let kubelet = KubeletAuth {
            auth: RegistryAuth::Basic("kube".into(), "secret".into()),
            server_address: server_address.into(),
        };
        plan.sources
            .iter()
            .map(|s| {
                let a = credentials_for(s, Some(&kubelet), file);
                (s.reference.registry().to_string(), basic(a))
            })
            .collect()
    }

    fn kube() -> Option<(String, String)> {
        Some(("kube".into(), "secret".into()))
    }

    const MIRRORED: &str = r#"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror.example"
[[registry.mirror]]
location = "trusted.example:5000"
send-credentials = true

[[registry]]
prefix = "quay.io"
location = "quay-proxy.example"
"#;

    #[test]
    fn kubelet_credentials_go_only_where_they_were_given() {
        let none = AuthFile::default();
        // For Docker Hub, however kubelet spells it: the untrusted mirror
        // gets nothing, the opted-in one and docker.io itself get them.
        for server in [
            "docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
            "HTTPS://Docker.IO/",
            "",
        ] {
            assert_eq!(
                routed(MIRRORED, "docker.io/library/nginx:1", server, &none),
                vec![
                    ("mirror.example".into(), None),
                    ("trusted.example:5000".into(), kube()),
                    ("docker.io".into(), kube()),
                ],
                "{server:?}"
            );
        }
        // Credentials for another registry go nowhere here, not even to the
        // opted-in mirror.
        assert_eq!(
            routed(MIRRORED, "docker.io/library/nginx:1", "ghcr.io", &none),
            vec![
                ("mirror.example".into(), None),
                ("trusted.example:5000".into(), None),
                ("docker.io".into(), None),
            ]
        );
        // A rewritten location is another host: quay.io's credentials stay
        // with quay.io.
        assert_eq!(
            routed(MIRRORED, "quay.io/a/b:1", "quay.io", &none),
            vec![("quay-proxy.example".into(), None)]
        );
        // With a port, the port is part of the registry.
        assert_eq!(
            routed("", "127.0.0.1:5000/a:1", "127.0.0.1:5000", &none),
            vec![("127.0.0.1:5000".into(), kube())]
        );
        assert_eq!(
            routed("", "127.0.0.1:5000/a:1", "127.0.0.1:5001", &none),
            vec![("127.0.0.1:5000".into(), None)]
        );
    }

    #[test]
    fn sources_without_kubelet_credentials_use_the_auth_file() {
        let file = AuthFile::parse(
            r#"{"auths": {"mirror.example": {"username": "m", "password": "mp"}}}"#,
            "t",
        )
        .unwrap();
        assert_eq!(
            routed(MIRRORED, "docker.io/library/nginx:1", "docker.io", &file),
            vec![
                ("mirror.example".into(), Some(("m".into(), "mp".into()))),
                ("trusted.example:5000".into(), kube()),
                ("docker.io".into(), kube()),
            ]
        );
        // No kubelet credentials at all: the file, per host.
        let plan = crate::registries::RegistriesConf::parse(MIRRORED, "t")
            .unwrap()
            .resolve("docker.io/library/nginx:1")
            .unwrap();
        let got: Vec<_> = plan
            .sources
            .iter()
            .map(|s| basic(credentials_for(s, None, &file)))
            .collect();
        assert_eq!(got, vec![Some(("m".into(), "mp".into())), None, None]);
    }

    /// Found by the auth_file fuzz target: with a hash map, the credentials
    /// (and the error) a file gave depended on the map's random order.
    #[test]
    fn keys_naming_one_host_resolve_the_same_every_time() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"username": "url", "password": "1"},
            "docker.io": {"username": "bare", "password": "2"},
            "registry-1.docker.io": {"username": "other", "password": "3"},
            "quay.io/team-b": {"username": "b", "password": "4"},
            "quay.io/team-a": {"username": "a", "password": "5"}
        }}"#;
        for _ in 0..20 {
            let f = AuthFile::parse(text, "t").unwrap();
            assert_eq!(f, AuthFile::parse(text, "t").unwrap());
            assert_eq!(
                basic(f.for_registry("docker.io")),
                Some(("bare".into(), "2".into()))
            );
            assert_eq!(
                basic(f.for_registry("quay.io")),
                Some(("a".into(), "5".into()))
            );
        }
        // The crashing input: two bad keys, one error, always the same.
        let bad = r#"{"auths": {"https://mndex.docker.io/v2/": {"auth": "Y`xpY2U6czNjcjN1"},
            "auths.0.1:s://mndex.docker.io/v1/": {"auth": "ok"}}}"#;
        let e = AuthFile::parse(bad, "t").unwrap_err();
        for _ in 0..20 {
            assert_eq!(AuthFile::parse(bad, "t").unwrap_err(), e);
        }
    }

    #[test]
    fn bad_files() {
        assert!(AuthFile::parse("{", "t").is_err());
        let e = AuthFile::parse(r#"{"auths": {"a.io": {"auth": "!!"}}}"#, "t").unwrap_err();
        assert!(e.to_string().contains("a.io"), "{e}");
        assert_eq!(
            AuthFile::load(Path::new("/nonexistent/auth.json")).unwrap(),
            AuthFile::default()
        );
    }
}
