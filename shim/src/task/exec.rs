//! Exec processes: started through the runtime, then tracked by pid until they exit.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_shim::TtrpcResult;

use super::console::{bind_console_socket, receive_master, EXEC_CONSOLE_WAIT};
use super::io::{copy_pty, null, open_stream};
use super::reply::{failed, internal, invalid, not_found};
use super::state::{PState, TaskService};
use crate::runtime::{OciRuntime, ProcessIo, Started};

/// A registered exec's request, taken when it starts.
struct ExecRequest {
    spec: Vec<u8>,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    bundle: PathBuf,
    init_pid: i32,
}

impl TaskService {
    /// Marks an exec running, its exit the one of `reaped` (which may have
    /// come already): the helper's, or the process's own when `detached`.
    pub(super) fn track_exec(
        &self,
        exec_id: &str,
        reaped: i32,
        detached: bool,
        pty: Option<Arc<OwnedFd>>,
    ) {
        let mut st = self.lock();
        if let Some(p) = st.execs.get_mut(exec_id) {
            if detached {
                p.pid = reaped;
            }
            p.reaped_pid = reaped;
            p.state = PState::Running;
            p.pty = pty;
        }
        if let Some((code, _)) = st.early.remove(&reaped) {
            drop(st);
            self.exited(reaped, code);
        }
    }

    /// Starts a registered exec through the runtime; returns its pid.
    pub(super) fn start_exec(
        &self,
        id: &str,
        exec_id: &str,
        rt: &dyn OciRuntime,
    ) -> TtrpcResult<i32> {
        let req = self.take_exec_request(exec_id)?;
        let process_json = req.bundle.join(format!("exec-{exec_id}.json"));
        let pid_file = req.bundle.join(format!("exec-{exec_id}.pid"));
        // The process's environment: 0600, as the container's config.json.
        vordr_fsmode::write_private(&process_json, &req.spec)
            .map_err(|e| internal(format!("exec spec: {e}")))?;
        let _ = std::fs::remove_file(&pid_file);
        let (io, console) = exec_stdio(id, exec_id, &req)?;
        let started = rt.exec(id, req.init_pid, &req.bundle, &process_json, &pid_file, io);
        let (mut started, pty) = receive_exec_pty(started, console)?;
        if let Some(master) = &pty {
            copy_pty(master, &req.stdin, &req.stdout)
                .map_err(|e| internal(format!("pty copy: {e}")))?;
        }
        let helper = match &mut started {
            Started::Helper(child) => child.id() as i32,
            // The process itself: its exit is the exec's.
            Started::Detached(pid) => {
                self.track_exec(exec_id, *pid, true, pty);
                return Ok(*pid);
            }
        };
        self.track_exec(exec_id, helper, false, pty);
        Ok(self.wait_exec_pid(exec_id, &pid_file))
    }

    /// Takes the spec of a registered exec that has not started yet.
    fn take_exec_request(&self, exec_id: &str) -> TtrpcResult<ExecRequest> {
        let mut st = self.lock();
        let init_pid = st.init.as_ref().map(|p| p.pid).unwrap_or(0);
        let bundle = st.bundle.clone();
        let p = st
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| not_found(format!("exec {exec_id} not found")))?;
        let spec = p
            .spec
            .take()
            .ok_or_else(|| failed(format!("exec {exec_id} already started")))?;
        Ok(ExecRequest {
            spec,
            stdin: p.stdin.clone(),
            stdout: p.stdout.clone(),
            stderr: p.stderr.clone(),
            terminal: p.terminal,
            bundle,
            init_pid,
        })
    }

    /// The helper writes the exec'd process's pid once it exists; 0 if it
    /// failed before the process existed (its status says why).
    fn wait_exec_pid(&self, exec_id: &str, pid_file: &Path) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = std::fs::read_to_string(pid_file) {
                if let Ok(pid) = s.trim().parse::<i32>() {
                    if let Some(p) = self.lock().execs.get_mut(exec_id) {
                        p.pid = pid;
                    }
                    return pid;
                }
            }
            let exited = self
                .lock()
                .execs
                .get(exec_id)
                .is_some_and(|p| p.exit.is_some());
            if exited || Instant::now() > deadline {
                return 0;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// An exec's stdio: its FIFOs, or with a terminal /dev/null and a console
/// socket (the terminal comes from the container's devpts, its master
/// through the socket, as containerd does with runc).
fn exec_stdio(
    id: &str,
    exec_id: &str,
    req: &ExecRequest,
) -> TtrpcResult<(ProcessIo, Option<(UnixListener, PathBuf)>)> {
    if req.terminal {
        let (l, sock) = bind_console_socket(&format!("{id}.{exec_id}.console"))?;
        let io = ProcessIo {
            stdin: null()?,
            stdout: null()?,
            stderr: null()?,
            console_socket: Some(sock.clone()),
        };
        return Ok((io, Some((l, sock))));
    }
    let io = ProcessIo {
        stdin: open_stream(&req.stdin, false).map_err(|e| invalid(format!("stdin: {e}")))?,
        stdout: open_stream(&req.stdout, true).map_err(|e| invalid(format!("stdout: {e}")))?,
        stderr: open_stream(&req.stderr, true).map_err(|e| invalid(format!("stderr: {e}")))?,
        console_socket: None,
    };
    Ok((io, None))
}

/// Once the runtime started an exec with a console socket, the terminal's
/// master it sent; removes the socket.
fn receive_exec_pty(
    started: crate::runtime::Result<Started>,
    console: Option<(UnixListener, PathBuf)>,
) -> TtrpcResult<(Started, Option<Arc<OwnedFd>>)> {
    match (started, console) {
        (Err(e), console) => {
            if let Some((_, sock)) = console {
                let _ = std::fs::remove_file(&sock);
            }
            Err(internal(e.to_string()))
        }
        (Ok(started), None) => Ok((started, None)),
        (Ok(mut started), Some((l, sock))) => {
            let master = receive_master(l, Some(EXEC_CONSOLE_WAIT));
            let _ = std::fs::remove_file(&sock);
            match master {
                Ok(m) => Ok((started, Some(Arc::new(m)))),
                Err(e) => {
                    // No terminal, no process: the helper stops before its fork.
                    if let Started::Helper(child) = &mut started {
                        let _ = child.kill();
                    }
                    Err(internal(format!("exec terminal: {e}")))
                }
            }
        }
    }
}
