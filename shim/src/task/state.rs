//! What the task service knows: the init, its execs, their states and exits, stdio and log.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use containerd_shim::{ExitSignal, TtrpcResult};
use vordr_shim_api::CreateOptions;

use super::reply::{failed, not_found};
use crate::attach::{Attach, StdinTarget};
use crate::crilog::CriLog;
use crate::runtime::OciRuntime;

/// The lifecycle state of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PState {
    Created,
    Running,
    Paused,
    Stopped,
}

pub(super) struct Proc {
    /// The pid to signal: the container's init, or the exec'd process.
    pub pid: i32,
    /// The pid the reaper reports: the init, or the exec helper.
    pub reaped_pid: i32,
    pub state: PState,
    pub exit: Option<(i32, i64)>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    /// The exec's process spec, until it starts.
    pub spec: Option<Vec<u8>>,
    /// The pty master of an exec with a terminal, for ResizePty.
    pub pty: Option<Arc<OwnedFd>>,
}

impl Proc {
    pub fn new(req_stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Proc {
        Proc {
            pid: 0,
            reaped_pid: 0,
            state: PState::Created,
            exit: None,
            stdin: req_stdin.to_string(),
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            terminal,
            spec: None,
            pty: None,
        }
    }
}

/// How long an unclaimed exit is kept: far longer than the moment between
/// a process's start and the shim recording its pid.
pub(super) const EARLY_KEEP: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct State {
    pub bundle: PathBuf,
    pub options: CreateOptions,
    pub cgroups_path: PathBuf,
    /// Set by the v2 OOM watcher (`crate::cgroup::watch_oom`).
    pub oom_seen: Arc<std::sync::atomic::AtomicBool>,
    /// Whether that watcher runs (cgroup v2).
    pub oom_watched: bool,
    pub init: Option<Proc>,
    pub execs: HashMap<String, Proc>,
    /// Exits the reaper saw before the pid was recorded (code, when). Most
    /// are runtime helpers nobody claims: kept for [`EARLY_KEEP`] only.
    pub early: HashMap<i32, (i32, Instant)>,
    pub log: Option<Arc<CriLog>>,
    pub copiers: Vec<JoinHandle<()>>,
    /// The pty master of a terminal container, for ResizePty.
    pub console: Option<OwnedFd>,
    /// Where attached stdin goes: the write end of the container's stdin
    /// pipe, or its terminal's master.
    pub stdin: StdinTarget,
    /// The container's attach socket.
    pub attach: Arc<Attach>,
}

/// The state shared with the exit loop and copier threads, and the
/// condition variable signalled on every exit.
pub(super) type Shared = Arc<(Mutex<State>, Condvar)>;

/// Locks the shared state, whatever a panicking holder left.
pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.0.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct TaskService {
    pub(super) id: String,
    pub(super) namespace: String,
    pub(super) events_address: String,
    pub(super) state: Shared,
    pub(super) runtime: Arc<Mutex<Option<Arc<dyn OciRuntime>>>>,
    pub(super) exit: Arc<ExitSignal>,
}

impl TaskService {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(super) fn runtime(&self) -> TtrpcResult<Arc<dyn OciRuntime>> {
        self.runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| failed("container not created"))
    }

    pub(super) fn check_id(&self, id: &str) -> TtrpcResult<()> {
        if id == self.id {
            Ok(())
        } else {
            Err(not_found(format!(
                "container {id} is not served by this shim"
            )))
        }
    }
}
