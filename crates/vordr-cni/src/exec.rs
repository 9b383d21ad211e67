//! Running one plugin binary the way the CNI specification says: the
//! command and attachment in `CNI_*` variables, the network config on
//! stdin, a result or an error object on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::CniError;

/// Plugin output beyond this is not read (a result is a few KiB).
const MAX_OUTPUT: u64 = 1 << 20;

/// What the plugin is asked to do, and for which attachment.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// ADD, CHECK, DEL, STATUS or GC.
    pub command: &'static str,
    pub container_id: &'a str,
    /// The pinned network namespace (may no longer exist for DEL).
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// `CNI_ARGS`: `K=V` pairs joined by `;`.
    pub args: &'a str,
    pub bin_dirs: &'a [PathBuf],
    pub timeout: Duration,
}

/// The plugin binary `plugin` from the first directory that has it.
pub fn find(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter()
        .map(|d| d.join(plugin))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| CniError::PluginMissing {
            plugin: plugin.to_string(),
            dirs: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        })
}

/// Runs plugin `plugin` with `stdin` as its config; its stdout on success.
pub async fn run(plugin: &str, stdin: &[u8], inv: &Invocation<'_>) -> Result<Vec<u8>, CniError> {
    let binary = find(plugin, inv.bin_dirs)?;
    let failed = |message: String| CniError::Plugin {
        plugin: plugin.to_string(),
        command: inv.command,
        message,
    };
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let cni_path = std::env::join_paths(inv.bin_dirs)
        .map_err(|e| failed(format!("plugin directories: {e}")))?;
    let mut child = tokio::process::Command::new(&binary)
        .env_clear()
        .env("PATH", path)
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("starting {}: {e}", binary.display())))?;
    let mut input = child.stdin.take().expect("piped stdin");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let work = async {
        let feed = async {
            let r = input.write_all(stdin).await;
            drop(input);
            r
        };
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let (mut out, mut err) = ((&mut out).take(MAX_OUTPUT), (&mut err).take(64 << 10));
        let read_out = out.read_to_end(&mut o);
        let read_err = err.read_to_end(&mut e);
        let (fed, _, _, status) = tokio::join!(feed, read_out, read_err, child.wait());
        (fed, o, e, status)
    };
    let (fed, stdout, stderr, status) =
        tokio::time::timeout(inv.timeout, work)
            .await
            .map_err(|_| CniError::Timeout {
                plugin: plugin.to_string(),
                command: inv.command,
                seconds: inv.timeout.as_secs(),
            })?;
    let status = status.map_err(|e| failed(format!("waiting: {e}")))?;
    if status.success() {
        // A plugin may exit before reading all of a config it ignores.
        let _ = fed;
        return Ok(stdout);
    }
    Err(failed(error_message(&stdout, &stderr, &status.to_string())))
}

/// The error object a failed plugin printed, else its stderr.
fn error_message(stdout: &[u8], stderr: &[u8], status: &str) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorObject {
        #[serde(default)]
        code: u32,
        #[serde(default)]
        msg: String,
        #[serde(default)]
        details: String,
    }
    match serde_json::from_slice::<ErrorObject>(stdout) {
        Ok(e) if !e.msg.is_empty() => {
            let mut m = e.msg;
            if !e.details.is_empty() {
                m.push_str(": ");
                m.push_str(&e.details);
            }
            format!("{m} (code {})", e.code)
        }
        _ => {
            let text = String::from_utf8_lossy(stderr).trim().to_string();
            if text.is_empty() {
                format!("{status}: {}", String::from_utf8_lossy(stdout).trim())
            } else {
                format!("{status}: {text}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_objects_and_stderr() {
        assert_eq!(
            error_message(
                br#"{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"why"}"#,
                b"",
                "exit 1"
            ),
            "bad: why (code 7)"
        );
        assert_eq!(error_message(b"", b"boom\n", "exit 2"), "exit 2: boom");
    }

    fn script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn inv<'a>(dirs: &'a [PathBuf], timeout: Duration) -> Invocation<'a> {
        Invocation {
            command: "ADD",
            container_id: "c1",
            netns: Path::new("/run/netns/x"),
            ifname: "eth0",
            args: "K8S_POD_NAME=p",
            bin_dirs: dirs,
            timeout,
        }
    }

    #[tokio::test]
    async fn the_environment_stdin_and_failures() {
        let d = tempfile::tempdir().unwrap();
        let dirs = vec![d.path().join("none"), d.path().to_path_buf()];
        script(d.path(), "echoenv", "cat >/dev/null; echo \"{\\\"cmd\\\":\\\"$CNI_COMMAND\\\",\\\"args\\\":\\\"$CNI_ARGS\\\",\\\"path\\\":\\\"$CNI_PATH\\\"}\"");
        let out = run("echoenv", b"{}", &inv(&dirs, Duration::from_secs(10)))
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cmd"], "ADD");
        assert_eq!(v["args"], "K8S_POD_NAME=p");
        assert!(v["path"]
            .as_str()
            .unwrap()
            .ends_with(&d.path().display().to_string()));

        script(
            d.path(),
            "fails",
            r#"echo '{"code":11,"msg":"try again"}'; exit 1"#,
        );
        let e = run("fails", b"{}", &inv(&dirs, Duration::from_secs(10)))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CNI plugin fails ADD failed: try again (code 11)"
        );

        script(d.path(), "hangs", "sleep 30");
        let e = run("hangs", b"{}", &inv(&dirs, Duration::from_millis(300)))
            .await
            .unwrap_err();
        assert!(matches!(e, CniError::Timeout { .. }), "{e}");

        let e = run("absent", b"{}", &inv(&dirs, Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(matches!(e, CniError::PluginMissing { .. }), "{e}");
    }
}
