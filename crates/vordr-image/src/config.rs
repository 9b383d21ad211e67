//! The OCI image config, parsed in one place for every reader: the pull
//! (its layers' diff ids), CreateContainer (user, env, entrypoint, cmd,
//! working directory, stop signal) and the image's CRI view (its user).

use serde::Deserialize;

/// What Vordr reads of an image config. Absent fields are empty, as the
/// image spec says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub stop_signal: String,
    /// The layers' uncompressed digests, bottom first; `None` when the
    /// config has no `rootfs` (a pull refuses such an image).
    pub diff_ids: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    config: Option<Body>,
    #[serde(default)]
    rootfs: Option<Rootfs>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Body {
    user: Option<String>,
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    stop_signal: Option<String>,
}

#[derive(Deserialize)]
struct Rootfs {
    diff_ids: Vec<String>,
}

/// A stored image config that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the image config: {0}")]
    Content(#[from] crate::content::ContentError),
    #[error("parsing the image config: {0}")]
    Parse(#[from] serde_json::Error),
}

/// Parses an image config blob.
pub fn parse(data: &[u8]) -> Result<ImageConfig, serde_json::Error> {
    let f: File = serde_json::from_slice(data)?;
    let c = f.config.unwrap_or_default();
    Ok(ImageConfig {
        user: c.user.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        working_dir: c.working_dir.unwrap_or_default(),
        stop_signal: c.stop_signal.unwrap_or_default(),
        diff_ids: f.rootfs.map(|r| r.diff_ids),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_their_absence() {
        let c = parse(
            br#"{"config":{"User":"1000:1000","Env":["A=1"],"Entrypoint":["/e"],
                "Cmd":["c"],"WorkingDir":"/w","StopSignal":"SIGQUIT"},
                "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#,
        )
        .unwrap();
        assert_eq!(c.user, "1000:1000");
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.entrypoint, ["/e"]);
        assert_eq!(c.cmd, ["c"]);
        assert_eq!(c.working_dir, "/w");
        assert_eq!(c.stop_signal, "SIGQUIT");
        assert_eq!(c.diff_ids, Some(vec!["sha256:aa".to_string()]));
        let empty = parse(b"{}").unwrap();
        assert_eq!(empty, ImageConfig::default());
        assert!(parse(b"7").is_err());
        assert!(parse(br#"{"config":{"Env":"not a list"}}"#).is_err());
    }
}
