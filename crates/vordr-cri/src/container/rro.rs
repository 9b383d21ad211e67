//! Recursive read-only mounts (CRI `Mount.recursive_read_only`, kubelet's
//! `recursiveReadOnly: Enabled`): the runtime makes a volume and every
//! mount below it read-only with mount_setattr(2) (`rro` in the OCI spec).
//! That needs the kernel's mount_setattr (5.12) and a runtime that knows
//! `rro`: youki's libcontainer does, runc from 1.1 (its `features` lists
//! it). Probed once per handler; Status reports the answer and
//! CreateContainer refuses such mounts where it is no.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::ContainerConfig;
use tonic::Status;
use vordr_config::RuntimeHandler;

use crate::state::Runtime;

/// How long `runc features` may take.
const FEATURES_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the kernel has mount_setattr(2): a call on a bad descriptor
/// fails with EBADF (or EINVAL) where it exists, ENOSYS where it does not.
pub fn kernel_supports() -> bool {
    // SAFETY: mount_setattr with fd -1, an empty path, no attributes and a
    // zero size reads and writes nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// Whether the runc at `path` takes `rro`: `runc features` (runc 1.1 and
/// later) lists it among its mount options.
pub fn runc_supports(path: &Path) -> bool {
    let Ok(mut child) = Command::new(path)
        .arg("features")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + FEATURES_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ =
            std::io::Read::read_to_end(&mut std::io::Read::take(&mut stdout, 1 << 20), &mut out);
    }
    lists_rro(&out)
}

/// Whether `runc features` output lists `rro` among the mount options.
fn lists_rro(features_json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(features_json)
        .ok()
        .and_then(|v| {
            v.get("mountOptions")?
                .as_array()
                .map(|a| a.iter().any(|o| o == "rro"))
        })
        .unwrap_or(false)
}

/// Support per handler name ("" is the default handler): the kernel's, and
/// the runtime's. A youki handler can run a container with runc (a shared
/// PID namespace on cgroup v1), so it needs that runc to take `rro` too.
pub fn probe(handlers: &BTreeMap<String, RuntimeHandler>, default: &str) -> BTreeMap<String, bool> {
    let kernel = kernel_supports();
    let runc = crate::container::handler::runc_of(handlers);
    let runc_ok = kernel && runc_supports(&runc.path);
    let mut out: BTreeMap<String, bool> = handlers
        .iter()
        .map(|(name, h)| {
            let ok = match h.kind.as_str() {
                "runc" if h.path == runc.path => runc_ok,
                "runc" => kernel && runc_supports(&h.path),
                _ => runc_ok,
            };
            (name.clone(), ok)
        })
        .collect();
    let default_ok = out.get(default).copied().unwrap_or(false);
    out.insert(String::new(), default_ok);
    out
}

impl Runtime {
    /// Whether handler `name` ("" for the default) makes recursive
    /// read-only mounts (probed on first use; the daemon asks at start).
    pub fn rro_support(&self, name: &str) -> bool {
        self.rro
            .get_or_init(|| {
                probe(
                    &self.config.runtime.handlers,
                    &self.config.runtime.default_runtime,
                )
            })
            .get(name)
            .copied()
            .unwrap_or(false)
    }

    /// FailedPrecondition naming the mount when `config` asks for a
    /// recursive read-only mount that `handler` ("" for the default)
    /// cannot make here.
    pub fn require_rro(&self, handler: &str, config: &ContainerConfig) -> Result<(), Status> {
        let Some(i) = config.mounts.iter().position(|m| m.recursive_read_only) else {
            return Ok(());
        };
        if self.rro_support(handler) {
            return Ok(());
        }
        Err(Status::failed_precondition(format!(
            "mounts[{i}].recursive_read_only: runtime handler {handler:?} cannot make recursive \
             read-only mounts on this node (needs mount_setattr, Linux 5.12, and youki or runc 1.1 or later)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_mount_setattr() {
        // Every machine here runs Linux 6.x.
        assert!(kernel_supports());
    }

    #[test]
    fn rro_is_read_from_runc_features() {
        assert!(lists_rro(br#"{"mountOptions":["ro","rro","rbind"]}"#));
        assert!(!lists_rro(br#"{"mountOptions":["ro","rbind"]}"#));
        assert!(!lists_rro(b"runc: unknown command features"));
        assert!(!runc_supports(Path::new("/nonexistent/runc")));
    }

    #[test]
    fn every_handler_and_the_default_get_an_answer() {
        let mut handlers = BTreeMap::new();
        handlers.insert(
            "youki".to_string(),
            RuntimeHandler {
                kind: "youki".into(),
                path: Default::default(),
            },
        );
        handlers.insert(
            "old".to_string(),
            RuntimeHandler {
                kind: "runc".into(),
                path: "/nonexistent/runc".into(),
            },
        );
        let got = probe(&handlers, "old");
        assert_eq!(got.get("old"), Some(&false));
        assert_eq!(got.get(""), Some(&false), "the default is 'old'");
        // youki's own answer follows the runc it falls back to: here
        // "old", the only runc configured.
        assert_eq!(got.get("youki"), Some(&false));
    }
}
