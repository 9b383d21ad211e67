//! The contract between `vordr serve` and its per-container shims: what the
//! daemon passes in a task's options, what the shim leaves on disk, and where
//! its socket lives. Both sides depend on this crate and nothing heavier.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the shim binary, looked up next to `vordr` and then on PATH.
pub const SHIM_BINARY: &str = "containerd-shim-vordr-v1";

/// The containerd namespace shims are started in (as containerd's CRI plugin).
pub const NAMESPACE: &str = "k8s.io";

/// `type_url` of the JSON [`CreateOptions`] in `CreateTaskRequest.options`.
pub const CREATE_OPTIONS_TYPE: &str = "types.vordr.dev/vordr.shim.v1.CreateOptions";

/// `type_url` of the JSON OCI process in `ExecProcessRequest.spec`.
pub const PROCESS_SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// `type_url` of the JSON OCI `LinuxResources` in `UpdateTaskRequest.resources`.
pub const RESOURCES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// An `UpdateTaskRequest` carrying this annotation asks the shim to reopen the
/// container's log file (CRI ReopenContainerLog); it changes no resources.
pub const REOPEN_LOG_ANNOTATION: &str = "io.vordr.shim.reopen-log";

/// The record of the container's exit, written by the shim into the bundle
/// before it publishes the exit, so that it survives the daemon and the shim.
pub const EXIT_FILE: &str = "exit.json";

/// The shim's own log (its stderr), in the bundle.
pub const SHIM_LOG_FILE: &str = "shim.log";

/// Hidden verb of the shim binary that starts the init of a pod whose
/// containers share a PID namespace; it prints the init's pid.
pub const POD_INIT_VERB: &str = "__pod-init";

/// Environment variable naming the directory the shim puts its socket in.
pub const SOCKET_DIR_ENV: &str = "VORDR_SHIM_SOCKET_DIR";

/// The directory a shim puts its sockets in: [`SOCKET_DIR_ENV`], else
/// `/run/vordr/s`.
pub fn socket_dir() -> std::path::PathBuf {
    std::env::var_os(SOCKET_DIR_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/run/vordr/s"))
}

/// Which OCI runtime a shim drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// youki's libcontainer, in the shim's own helper processes.
    #[default]
    Youki,
    /// runc, through its command line.
    Runc,
}

/// How the daemon wants a container run, sent with Create.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CreateOptions {
    pub runtime: RuntimeKind,
    /// The runc binary (runc only).
    #[serde(default)]
    pub runtime_path: PathBuf,
    /// The runtime's state directory.
    pub runtime_root: PathBuf,
    /// The CRI log file stdout and stderr go to; none discards them.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// Longer lines are split into partial (`P`) records of this many bytes.
    pub max_log_line: usize,
    /// Give the container a stdin pipe the shim holds open (CRI `stdin`),
    /// for attach; CloseIO closes it. Otherwise stdin is /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// Close that stdin when the first attached client closes its input
    /// (CRI `stdin_once`).
    #[serde(default)]
    pub stdin_once: bool,
}

/// The container's exit, as the shim saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub pid: u32,
    /// Exit code, or 128 + signal number.
    pub exit_code: i32,
    /// Nanoseconds since the Unix epoch.
    pub exited_at_ns: i64,
    /// The memory cgroup killed a process of the container.
    pub oom_killed: bool,
}

impl ExitRecord {
    /// Reads the record a shim left in `bundle`, if any.
    pub fn read(bundle: &Path) -> Option<ExitRecord> {
        let data = std::fs::read(bundle.join(EXIT_FILE)).ok()?;
        serde_json::from_slice(&data).ok()
    }
}

/// Where the shim of container `id` listens, under `dir`: short, so that it
/// fits a unix socket address whatever the id.
pub fn socket_path(dir: &Path, id: &str) -> PathBuf {
    // FNV-1a, enough to keep ids apart in one directory.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    dir.join(format!("{h:016x}.sock"))
}

/// The name (for [`socket_path`]) of a container's attach socket.
pub fn attach_socket_name(id: &str) -> String {
    format!("{id}.attach")
}

/// The frames a shim's attach socket carries to the daemon: one byte
/// naming the stream ([`attach_frame::STDOUT`] or [`attach_frame::STDERR`]),
/// the data's length as a big-endian u32, the data. The other way, the
/// socket carries the container's stdin as plain bytes.
pub mod attach_frame {
    /// The container's stdout (or its terminal).
    pub const STDOUT: u8 = 1;
    /// The container's stderr.
    pub const STDERR: u8 = 2;
    /// Stream byte and length.
    pub const HEADER_LEN: usize = 5;
    /// The most data one frame carries; a reader refuses longer ones.
    pub const MAX_DATA: usize = 1 << 20;

    /// `data` of `stream` as frames of at most [`MAX_DATA`] bytes each.
    pub fn encode(stream: u8, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + HEADER_LEN);
        for chunk in data.chunks(MAX_DATA) {
            out.push(stream);
            out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    /// The stream and data length a header announces; `None` for a length
    /// over [`MAX_DATA`] (a reader stops there).
    pub fn decode_header(head: &[u8; HEADER_LEN]) -> Option<(u8, usize)> {
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        (len <= MAX_DATA).then_some((head[0], len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_are_short_and_distinct() {
        let dir = Path::new("/run/vordr/s");
        let a = socket_path(dir, &"a".repeat(64));
        let b = socket_path(dir, &"b".repeat(64));
        assert_ne!(a, b);
        assert!(a.as_os_str().len() < 108);
        assert_eq!(a, socket_path(dir, &"a".repeat(64)));
    }

    #[test]
    fn options_round_trip() {
        let o = CreateOptions {
            runtime: RuntimeKind::Runc,
            runtime_path: "/usr/sbin/runc".into(),
            runtime_root: "/run/vordr/runc".into(),
            log_path: Some("/var/log/pods/x/c/0.log".into()),
            max_log_line: 16384,
            stdin: true,
            stdin_once: true,
        };
        let s = serde_json::to_string(&o).unwrap();
        assert!(s.contains("\"runc\""));
        let back: CreateOptions = serde_json::from_str(&s).unwrap();
        assert_eq!(back.runtime, RuntimeKind::Runc);
        assert_eq!(back.max_log_line, 16384);
        assert!(back.stdin_once);
        // Options written by an older daemon (no stdin_once) still read.
        let old: CreateOptions =
            serde_json::from_str(&s.replace(",\"stdin_once\":true", "")).unwrap();
        assert!(!old.stdin_once);
    }

    #[test]
    fn attach_frames_round_trip_and_split() {
        use attach_frame::*;
        let f = encode(STDERR, b"hello");
        assert_eq!(f, b"\x02\x00\x00\x00\x05hello");
        let head: [u8; HEADER_LEN] = f[..HEADER_LEN].try_into().unwrap();
        assert_eq!(decode_header(&head), Some((STDERR, 5)));
        let big = vec![7u8; MAX_DATA + 3];
        let f = encode(STDOUT, &big);
        assert_eq!(f.len(), big.len() + 2 * HEADER_LEN);
        let second: [u8; HEADER_LEN] = f[HEADER_LEN + MAX_DATA..][..HEADER_LEN].try_into().unwrap();
        assert_eq!(decode_header(&second), Some((STDOUT, 3)));
        let mut too_long = [STDOUT, 0, 0, 0, 0];
        too_long[1..].copy_from_slice(&(MAX_DATA as u32 + 1).to_be_bytes());
        assert_eq!(decode_header(&too_long), None);
    }
}
