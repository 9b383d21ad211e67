//! The containers-registries.conf v2 format that CRI-O and podman read:
//! which registry an image reference goes to, its mirrors, whether it is
//! insecure (plain HTTP) or blocked, and where short names are searched.
//! [`RegistriesConf::resolve`] turns an image name into the ordered list of
//! places to pull it from.
//!
//! One key is Vordr's own: `send-credentials = true` in a
//! `[[registry.mirror]]` lets that mirror receive the credentials kubelet
//! sends for the registry it mirrors (see [`crate::auth::credentials_for`]);
//! without it a mirror gets only the auth file's entry for its own host.

use std::path::Path;

use oci_client::Reference;
use serde::Deserialize;

/// Errors from reading the file or resolving a reference.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistriesError {
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("parsing registries config {origin}: {reason}")]
    Parse { origin: String, reason: String },
    #[error("registries config: {0}")]
    Invalid(String),
    #[error("invalid image reference {image:?}: {reason}")]
    InvalidReference { image: String, reason: String },
    #[error("registry {registry} is blocked by the registries config (image {image})")]
    Blocked { registry: String, image: String },
}

/// When a mirror is used, by the reference's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullFromMirror {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Mirror {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub pull_from_mirror: PullFromMirror,
    /// Vordr's own key: the credentials kubelet sends for the registry this
    /// mirror stands in for go to the mirror too. Off by default: a mirror
    /// is another party, and gets only the auth file's entry for its own
    /// host.
    #[serde(default)]
    pub send_credentials: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Registry {
    /// What references this entry applies to; defaults to `location`.
    #[serde(default)]
    pub prefix: String,
    /// Where they are pulled from instead; empty means the prefix itself.
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<Mirror>,
}

/// A registries.conf file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistriesConf {
    #[serde(default = "default_search")]
    pub unqualified_search_registries: Vec<String>,
    #[serde(default, rename = "registry")]
    pub registries: Vec<Registry>,
    /// Accepted for compatibility with files written for podman; Vordr
    /// resolves short names through the search registries in order.
    #[serde(default)]
    pub short_name_mode: Option<String>,
}

fn default_search() -> Vec<String> {
    vec!["docker.io".to_string()]
}

impl Default for RegistriesConf {
    fn default() -> Self {
        RegistriesConf {
            unqualified_search_registries: default_search(),
            registries: vec![],
            short_name_mode: None,
        }
    }
}

/// One place to pull an image from, in order of preference.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The reference rewritten for this place.
    pub reference: Reference,
    /// Plain HTTP / unverified TLS allowed.
    pub insecure: bool,
    /// A mirror rather than the primary location.
    pub mirror: bool,
    /// A mirror configured to receive the credentials kubelet sends for
    /// the registry it mirrors (`send-credentials = true`).
    pub send_credentials: bool,
    /// The registry of the image name this source serves (`docker.io` for
    /// `docker.io/library/busybox`, whether from a mirror or a rewritten
    /// location): the registry kubelet's credentials name.
    pub image_registry: String,
}

/// Where to pull a given image from.
#[derive(Debug, Clone, PartialEq)]
pub struct PullPlan {
    /// The normalised name kubelet will see (`docker.io/library/busybox:latest`).
    pub reference: Reference,
    pub sources: Vec<Source>,
}

/// Whether `name` starts with a registry host (as the Docker reference
/// grammar decides: a first component with a dot or a port, or localhost).
fn has_registry(name: &str) -> bool {
    match name.split_once('/') {
        None => false,
        Some((first, _)) => first.contains('.') || first.contains(':') || first == "localhost",
    }
}

/// Whether `reference` (whole, normalised) falls under `prefix`.
fn matches_prefix(reference: &str, prefix: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = reference.split('/').next().unwrap_or("");
        let host = host.split(':').next().unwrap_or(host);
        return host.ends_with(&format!(".{domain}"));
    }
    if reference.len() < prefix.len() || !reference.starts_with(prefix) {
        return false;
    }
    match reference[prefix.len()..].chars().next() {
        None => true,
        Some('/') => true,
        // Below host level, a tag or digest may follow the repository.
        Some(':') | Some('@') => prefix.contains('/'),
        _ => false,
    }
}

impl RegistriesConf {
    /// Parses and validates a file's text.
    pub fn parse(text: &str, origin: &str) -> Result<RegistriesConf, RegistriesError> {
        let mut conf: RegistriesConf =
            toml::from_str(text).map_err(|e| RegistriesError::Parse {
                origin: origin.to_string(),
                reason: e.to_string(),
            })?;
        for r in &mut conf.registries {
            if r.prefix.is_empty() {
                r.prefix = r.location.clone();
            }
            if r.prefix.is_empty() {
                return Err(RegistriesError::Invalid(
                    "a [[registry]] needs a prefix or a location".into(),
                ));
            }
            if r.prefix.starts_with("*.") {
                if !r.location.is_empty() {
                    return Err(RegistriesError::Invalid(format!(
                        "wildcard prefix {:?} cannot have a location",
                        r.prefix
                    )));
                }
            } else if r.location.is_empty() {
                r.location = r.prefix.clone();
            }
            for m in &r.mirrors {
                if m.location.is_empty() {
                    return Err(RegistriesError::Invalid(format!(
                        "a mirror of {:?} has no location",
                        r.prefix
                    )));
                }
            }
        }
        let mut prefixes: Vec<&str> = conf.registries.iter().map(|r| r.prefix.as_str()).collect();
        prefixes.sort();
        if let Some(w) = prefixes.windows(2).find(|w| w[0] == w[1]) {
            return Err(RegistriesError::Invalid(format!(
                "prefix {:?} appears twice",
                w[0]
            )));
        }
        Ok(conf)
    }

    /// Reads `path`; a missing file means the defaults, as for podman.
    pub fn load(path: &Path) -> Result<RegistriesConf, RegistriesError> {
        match std::fs::read_to_string(path) {
            Ok(text) => RegistriesConf::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConf::default()),
            Err(e) => Err(RegistriesError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// The entry with the longest prefix matching `reference`.
    fn entry_for(&self, reference: &str) -> Option<&Registry> {
        self.registries
            .iter()
            .filter(|r| matches_prefix(reference, &r.prefix))
            .max_by_key(|r| {
                // An exact prefix beats a wildcard one.
                (!r.prefix.starts_with("*."), r.prefix.len())
            })
    }

    fn parse_ref(image: &str, text: &str) -> Result<Reference, RegistriesError> {
        Reference::try_from(text).map_err(|e| RegistriesError::InvalidReference {
            image: image.to_string(),
            reason: e.to_string(),
        })
    }

    /// The sources for one fully qualified, normalised reference.
    fn sources_for(
        &self,
        image: &str,
        reference: &Reference,
    ) -> Result<Vec<Source>, RegistriesError> {
        let whole = reference.whole();
        let Some(entry) = self.entry_for(&whole) else {
            return Ok(vec![Source {
                reference: reference.clone(),
                insecure: false,
                mirror: false,
                send_credentials: false,
                image_registry: reference.registry().to_string(),
            }]);
        };
        if entry.blocked {
            return Err(RegistriesError::Blocked {
                registry: entry.prefix.clone(),
                image: whole,
            });
        }
        let rest = if entry.prefix.starts_with("*.") {
            ""
        } else {
            &whole[entry.prefix.len()..]
        };
        let mut sources = Vec::new();
        let by_digest = reference.digest().is_some();
        for m in &entry.mirrors {
            let wanted = match m.pull_from_mirror {
                PullFromMirror::All => true,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            };
            if wanted {
                sources.push(Source {
                    reference: Self::parse_ref(image, &format!("{}{rest}", m.location))?,
                    insecure: m.insecure,
                    mirror: true,
                    send_credentials: m.send_credentials,
                    image_registry: reference.registry().to_string(),
                });
            }
        }
        let primary = if entry.location.is_empty() {
            reference.clone()
        } else {
            Self::parse_ref(image, &format!("{}{rest}", entry.location))?
        };
        sources.push(Source {
            reference: primary,
            insecure: entry.insecure,
            mirror: false,
            send_credentials: false,
            image_registry: reference.registry().to_string(),
        });
        Ok(sources)
    }

    /// Where to pull `image` from: its normalised reference, and the mirrors
    /// and primary location in order. A short name (no registry host) is
    /// qualified with each unqualified-search registry in turn.
    pub fn resolve(&self, image: &str) -> Result<PullPlan, RegistriesError> {
        if image.is_empty() {
            return Err(RegistriesError::InvalidReference {
                image: image.into(),
                reason: "empty".into(),
            });
        }
        let name_part = image.split('@').next().unwrap_or(image);
        if has_registry(name_part) || self.unqualified_search_registries.is_empty() {
            let reference = Self::parse_ref(image, image)?;
            let sources = self.sources_for(image, &reference)?;
            return Ok(PullPlan { reference, sources });
        }
        let mut plan: Option<PullPlan> = None;
        for registry in &self.unqualified_search_registries {
            let reference = Self::parse_ref(image, &format!("{registry}/{image}"))?;
            let sources = self.sources_for(image, &reference)?;
            match &mut plan {
                None => plan = Some(PullPlan { reference, sources }),
                Some(p) => p.sources.extend(sources),
            }
        }
        Ok(plan.expect("at least one search registry"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["docker.io", "quay.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true

[[registry.mirror]]
location = "trusted-mirror.example"
send-credentials = true

[[registry]]
prefix = "registry.k8s.io"
location = "127.0.0.1:5000/k8s"
insecure = true

[[registry]]
prefix = "docker.io/library/busybox"
location = "127.0.0.1:5001/bb"
[[registry.mirror]]
location = "mirror.example:5000/bb"
pull-from-mirror = "digest-only"

[[registry]]
location = "evil.example"
blocked = true

[[registry]]
prefix = "*.corp.example"
insecure = true
"#;

    fn conf() -> RegistriesConf {
        RegistriesConf::parse(CONF, "test").unwrap()
    }

    fn wholes(p: &PullPlan) -> Vec<(String, bool, bool)> {
        p.sources
            .iter()
            .map(|s| (s.reference.whole(), s.insecure, s.mirror))
            .collect()
    }

    #[test]
    fn mirror_then_primary() {
        let p = conf().resolve("docker.io/library/nginx:1.25").unwrap();
        assert_eq!(p.reference.whole(), "docker.io/library/nginx:1.25");
        assert_eq!(
            wholes(&p),
            vec![
                ("127.0.0.1:5000/library/nginx:1.25".into(), true, true),
                (
                    "trusted-mirror.example/library/nginx:1.25".into(),
                    false,
                    true
                ),
                ("docker.io/library/nginx:1.25".into(), false, false),
            ]
        );
        let opted_in: Vec<bool> = p.sources.iter().map(|s| s.send_credentials).collect();
        assert_eq!(opted_in, vec![false, true, false]);
        assert!(p.sources.iter().all(|s| s.image_registry == "docker.io"));
    }

    #[test]
    fn longest_prefix_wins_and_location_rewrites() {
        let p = conf().resolve("docker.io/library/busybox:1.35").unwrap();
        // digest-only mirror skipped for a tag.
        assert_eq!(
            wholes(&p),
            vec![("127.0.0.1:5001/bb:1.35".into(), false, false)]
        );
        let digest = "sha256:".to_string() + &"a".repeat(64);
        let p = conf()
            .resolve(&format!("docker.io/library/busybox@{digest}"))
            .unwrap();
        assert_eq!(
            wholes(&p),
            vec![
                (format!("mirror.example:5000/bb@{digest}"), false, true),
                (format!("127.0.0.1:5001/bb@{digest}"), false, false),
            ]
        );
        let p = conf().resolve("registry.k8s.io/pause:3.9").unwrap();
        assert_eq!(p.reference.whole(), "registry.k8s.io/pause:3.9");
        assert_eq!(
            wholes(&p),
            vec![("127.0.0.1:5000/k8s/pause:3.9".into(), true, false)]
        );
    }

    #[test]
    fn short_names_search_in_order_and_normalise() {
        let p = conf().resolve("busybox").unwrap();
        assert_eq!(p.reference.whole(), "docker.io/library/busybox:latest");
        assert_eq!(
            wholes(&p),
            vec![
                ("127.0.0.1:5001/bb:latest".into(), false, false),
                ("quay.io/busybox:latest".into(), false, false),
            ]
        );
    }

    #[test]
    fn blocked_and_wildcard() {
        let e = conf().resolve("evil.example/x:1").unwrap_err();
        assert_eq!(
            e,
            RegistriesError::Blocked {
                registry: "evil.example".into(),
                image: "evil.example/x:1".into()
            }
        );
        let p = conf().resolve("reg.corp.example:5000/team/app:2").unwrap();
        assert_eq!(
            wholes(&p),
            vec![("reg.corp.example:5000/team/app:2".into(), true, false)]
        );
        let p = conf().resolve("corp.example/app:2").unwrap();
        assert_eq!(
            wholes(&p),
            vec![("corp.example/app:2".into(), false, false)]
        );
    }

    #[test]
    fn prefix_boundaries() {
        assert!(matches_prefix("docker.io/library/busybox:1", "docker.io"));
        assert!(!matches_prefix("docker.iox/a:1", "docker.io"));
        assert!(matches_prefix(
            "docker.io/library/busybox:1",
            "docker.io/library/busybox"
        ));
        assert!(!matches_prefix(
            "docker.io/library/busyboxes:1",
            "docker.io/library/busybox"
        ));
        assert!(!matches_prefix("127.0.0.1:5000/a:1", "127.0.0.1"));
    }

    #[test]
    fn unregistered_and_bad_references() {
        let p = conf().resolve("ghcr.io/a/b:1").unwrap();
        assert_eq!(wholes(&p), vec![("ghcr.io/a/b:1".into(), false, false)]);
        for bad in ["", "UPPER/case:1", "a b", "docker.io/x:bad tag"] {
            assert!(
                matches!(
                    conf().resolve(bad),
                    Err(RegistriesError::InvalidReference { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn defaults_and_file_errors() {
        let d = RegistriesConf::load(Path::new("/nonexistent/registries.conf")).unwrap();
        assert_eq!(d, RegistriesConf::default());
        let p = d.resolve("busybox:1.35").unwrap();
        assert_eq!(
            wholes(&p),
            vec![("docker.io/library/busybox:1.35".into(), false, false)]
        );
        for (text, want) in [
            ("[[registry]]\ninsecure = true\n", "prefix or a location"),
            (
                "[[registry]]\nlocation = \"a.io\"\n[[registry]]\nprefix = \"a.io\"\n",
                "appears twice",
            ),
            (
                "[[registry]]\nprefix = \"*.a.io\"\nlocation = \"b.io\"\n",
                "wildcard",
            ),
            ("[[registry]]\nlocation = \"a.io\"\nbogus = 1\n", "bogus"),
            (
                "[[registry]]\nlocation = \"a.io\"\n[[registry.mirror]]\ninsecure = true\n",
                "location",
            ),
        ] {
            let e = RegistriesConf::parse(text, "t").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
