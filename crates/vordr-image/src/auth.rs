//! Registry credentials from a docker-style auth file (`config.json` /
//! containers `auth.json`), used when kubelet sends none.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthFileError {
    #[error("reading auth file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("auth file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    auths: HashMap<String, Entry>,
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

/// The host part of an auth file key (`https://index.docker.io/v1/` ->
/// `docker.io`), as docker and podman normalise it.
fn host_of(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

impl AuthFile {
    /// Parses the file's text.
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
            hosts.insert(host_of(&key), (user, pass, e.registry_token));
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
