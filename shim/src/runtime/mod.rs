//! The OCI runtimes a shim can drive: youki through libcontainer (default)
//! and runc through its command line. Both create the container's init so
//! that it ends up the shim's child (the shim is a subreaper); an exec runs
//! as a helper process whose exit status is the exec'd process's, or, for
//! runc with a terminal, detached like the init.

mod runc;
pub mod youki;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Child;

use vordr_shim_api::{CreateOptions, RuntimeKind};

pub use runc::Runc;
pub use youki::{youki_create_main, Youki};

/// A failed runtime operation, with the runtime's own words.
#[derive(Debug)]
pub struct RuntimeError(pub String);

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// The stdio a new process gets.
pub struct ProcessIo {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The unix socket the runtime sends the pty master to (terminal mode).
    pub console_socket: Option<PathBuf>,
}

/// What a shim needs from an OCI runtime.
pub trait OciRuntime: Send + Sync {
    /// Creates the container from `bundle`; returns the init's pid once the
    /// init waits for start. The process creating it has exited by then.
    fn create(&self, id: &str, bundle: &Path, io: ProcessIo) -> Result<i32>;
    fn start(&self, id: &str) -> Result<()>;
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    fn delete(&self, id: &str, force: bool) -> Result<()>;
    fn pause(&self, id: &str) -> Result<()>;
    fn resume(&self, id: &str) -> Result<()>;
    /// Applies new resources (the JSON of an OCI `LinuxResources`).
    fn update(&self, id: &str, bundle: &Path, resources_json: &[u8]) -> Result<()>;
    /// Dumps the running container's processes with criu into `images`
    /// (criu's own files in `work`), leaving them running.
    fn checkpoint(&self, id: &str, images: &Path, work: &Path) -> Result<()>;
    /// Starts `process.json` inside the running container, writing the
    /// process's own pid to `pid_file`. With `io.console_socket` (a
    /// terminal), the terminal is allocated in the container's devpts and
    /// its master sent there.
    fn exec(
        &self,
        id: &str,
        init_pid: i32,
        bundle: &Path,
        process_json: &Path,
        pid_file: &Path,
        io: ProcessIo,
    ) -> Result<Started>;
}

/// How an exec started.
pub enum Started {
    /// A helper that exits with the process's status.
    Helper(Child),
    /// The process itself, a child of the shim (a subreaper) once the
    /// runtime that started it has left.
    Detached(i32),
}

/// The runtime the daemon asked for.
pub fn from_options(opts: &CreateOptions) -> Box<dyn OciRuntime> {
    match opts.runtime {
        RuntimeKind::Youki => Box::new(Youki {
            root: opts.runtime_root.clone(),
        }),
        RuntimeKind::Runc => Box::new(Runc {
            binary: if opts.runtime_path.as_os_str().is_empty() {
                PathBuf::from("runc")
            } else {
                opts.runtime_path.clone()
            },
            root: opts.runtime_root.clone(),
        }),
    }
}

/// Builds a helper command with the given stdio.
fn with_io(cmd: &mut std::process::Command, io: ProcessIo) {
    cmd.stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
}

/// Waits for a helper through the shim's reaper, which reaps every child.
pub(crate) fn wait_helper(pid: i32, sub: containerd_shim::monitor::Subscription) -> i32 {
    containerd_shim::monitor::wait_pid(pid, sub)
}

/// Runs a helper to completion; its stderr (or `err_file`) is the error.
pub(crate) fn run_helper(
    mut cmd: std::process::Command,
    what: &str,
    err_file: Option<&Path>,
) -> Result<()> {
    use containerd_shim::monitor::{monitor_subscribe, Topic};
    let sub = monitor_subscribe(Topic::Pid).map_err(|e| RuntimeError(e.to_string()))?;
    if err_file.is_none() {
        cmd.stderr(std::process::Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError(format!("{what}: {e}")))?;
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut err);
    }
    let code = wait_helper(child.id() as i32, sub);
    if code == 0 {
        return Ok(());
    }
    if let Some(f) = err_file {
        err = std::fs::read_to_string(f).unwrap_or_default();
    }
    let err = err.trim();
    Err(RuntimeError(if err.is_empty() {
        format!("{what} exited with {code}")
    } else {
        format!("{what}: {err}")
    }))
}
