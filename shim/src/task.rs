//! The containerd task API for one container: the init process and its
//! execs, their stdio and exits.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use containerd_shim::api::*;
use containerd_shim::monitor::{monitor_subscribe, ExitEvent, Subject, Topic};
use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageDyn};
use containerd_shim::protos::types::task::{ProcessInfo, Status as TaskStatus};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, ExitSignal, Task, TtrpcContext, TtrpcResult};
use vordr_shim_api::{CreateOptions, ExitRecord, CREATE_OPTIONS_TYPE, REOPEN_LOG_ANNOTATION};

use crate::attach::{self, Attach, StdinTarget, Tee};
use crate::crilog::CriLog;
use crate::exit::{now_ns, oom_killed, write_record};
use crate::runtime::{self, OciRuntime, ProcessIo, Started};
use crate::shim::protobuf_timestamp;

/// How often an idle shim trims its working set.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// The lifecycle state of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PState {
    Created,
    Running,
    Paused,
    Stopped,
}

struct Proc {
    /// The pid to signal: the container's init, or the exec'd process.
    pid: i32,
    /// The pid the reaper reports: the init, or the exec helper.
    reaped_pid: i32,
    state: PState,
    exit: Option<(i32, i64)>,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    /// The exec's process spec, until it starts.
    spec: Option<Vec<u8>>,
    /// The pty master of an exec with a terminal, for ResizePty.
    pty: Option<Arc<OwnedFd>>,
}

impl Proc {
    fn new(req_stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Proc {
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
const EARLY_KEEP: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    bundle: PathBuf,
    options: CreateOptions,
    cgroups_path: PathBuf,
    init: Option<Proc>,
    execs: HashMap<String, Proc>,
    /// Exits the reaper saw before the pid was recorded (code, when). Most
    /// are runtime helpers nobody claims: kept for [`EARLY_KEEP`] only.
    early: HashMap<i32, (i32, Instant)>,
    log: Option<Arc<CriLog>>,
    copiers: Vec<JoinHandle<()>>,
    /// The pty master of a terminal container, for ResizePty.
    console: Option<OwnedFd>,
    /// Where attached stdin goes: the write end of the container's stdin
    /// pipe, or its terminal's master.
    stdin: StdinTarget,
    /// The container's attach socket.
    attach: Arc<Attach>,
}

pub struct TaskService {
    id: String,
    namespace: String,
    events_address: String,
    state: Arc<(Mutex<State>, Condvar)>,
    runtime: Arc<Mutex<Option<Arc<dyn OciRuntime>>>>,
    exit: Arc<ExitSignal>,
}

fn invalid(msg: impl Into<String>) -> containerd_shim::protos::ttrpc::Error {
    status(containerd_shim::protos::ttrpc::Code::INVALID_ARGUMENT, msg)
}
fn not_found(msg: impl Into<String>) -> containerd_shim::protos::ttrpc::Error {
    status(containerd_shim::protos::ttrpc::Code::NOT_FOUND, msg)
}
fn failed(msg: impl Into<String>) -> containerd_shim::protos::ttrpc::Error {
    status(
        containerd_shim::protos::ttrpc::Code::FAILED_PRECONDITION,
        msg,
    )
}
fn internal(msg: impl Into<String>) -> containerd_shim::protos::ttrpc::Error {
    status(containerd_shim::protos::ttrpc::Code::INTERNAL, msg)
}
fn status(
    code: containerd_shim::protos::ttrpc::Code,
    msg: impl Into<String>,
) -> containerd_shim::protos::ttrpc::Error {
    containerd_shim::protos::ttrpc::Error::RpcStatus(containerd_shim::protos::ttrpc::get_status(
        code,
        msg.into(),
    ))
}

impl TaskService {
    pub fn new(id: &str, namespace: &str, events_address: &str, exit: Arc<ExitSignal>) -> Self {
        let svc = TaskService {
            id: id.to_string(),
            namespace: namespace.to_string(),
            events_address: events_address.to_string(),
            state: Arc::new((Mutex::new(State::default()), Condvar::new())),
            runtime: Arc::new(Mutex::new(None)),
            exit,
        };
        svc.spawn_exit_loop();
        svc
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn runtime(&self) -> TtrpcResult<Arc<dyn OciRuntime>> {
        self.runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| failed("container not created"))
    }

    /// Handles every exit the reaper sees.
    fn spawn_exit_loop(&self) {
        let sub = match monitor_subscribe(Topic::All) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vordr shim: cannot watch exits: {e}");
                return;
            }
        };
        let state = self.state.clone();
        let id = self.id.clone();
        let ns = self.namespace.clone();
        let addr = self.events_address.clone();
        let exit = self.exit.clone();
        // The shim starts in the container's bundle.
        let bundle = std::env::current_dir().unwrap_or_default();
        std::thread::spawn(move || loop {
            // Between exits, now and then, give back what serving RPCs
            // brought into the working set.
            match sub.rx.recv_timeout(TRIM_EVERY) {
                Ok(ExitEvent { subject, exit_code }) => {
                    let Subject::Pid(pid) = subject else { continue };
                    on_exit(&state, &id, &ns, &addr, pid, exit_code);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    // Collected behind its back (the daemon's state was
                    // wiped): with nothing left running, the shim goes too.
                    let st = state.0.lock().unwrap_or_else(|e| e.into_inner());
                    let idle = st.init.as_ref().is_none_or(|p| p.exit.is_some());
                    drop(st);
                    if idle && !bundle.as_os_str().is_empty() && !bundle.exists() {
                        exit.signal();
                        break;
                    }
                    crate::trim::trim_working_set()
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        });
    }

    fn check_id(&self, id: &str) -> TtrpcResult<()> {
        if id == self.id {
            Ok(())
        } else {
            Err(not_found(format!(
                "container {id} is not served by this shim"
            )))
        }
    }
}

/// Records an exit: the init's (durably, then an event) or an exec's.
fn on_exit(
    state: &Arc<(Mutex<State>, Condvar)>,
    id: &str,
    ns: &str,
    addr: &str,
    pid: i32,
    code: i32,
) {
    let at = now_ns();
    let mut st = state.0.lock().unwrap_or_else(|e| e.into_inner());
    let bundle = st.bundle.clone();
    let cgroups = st.cgroups_path.clone();
    let mut event = None;
    if let Some(init) = st
        .init
        .as_mut()
        .filter(|p| p.reaped_pid == pid && p.exit.is_none())
    {
        init.exit = Some((code, at));
        init.state = PState::Stopped;
        let oom = oom_killed(&cgroups);
        let rec = ExitRecord {
            pid: pid as u32,
            exit_code: code,
            exited_at_ns: at,
            oom_killed: oom,
        };
        if let Err(e) = write_record(&bundle, &rec) {
            eprintln!("vordr shim: exit record: {e}");
        }
        let copiers = std::mem::take(&mut st.copiers);
        let attach = st.attach.clone();
        drop(st);
        // Let the log take what the container wrote last.
        let deadline = Instant::now() + Duration::from_secs(2);
        for c in copiers {
            while !c.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Attached clients have all there is: they read end of file.
        attach.close_all();
        st = state.0.lock().unwrap_or_else(|e| e.into_inner());
        if oom {
            let mut ev = TaskOOM::new();
            ev.container_id = id.to_string();
            publish(addr, ns, "/tasks/oom", Box::new(ev));
        }
        event = Some((String::new(), pid, code));
    } else if let Some((eid, p)) = st
        .execs
        .iter_mut()
        .find(|(_, p)| p.reaped_pid == pid && p.exit.is_none())
    {
        p.exit = Some((code, at));
        p.state = PState::Stopped;
        event = Some((eid.clone(), p.pid, code));
    } else {
        let now = Instant::now();
        st.early
            .retain(|_, (_, seen)| now.duration_since(*seen) < EARLY_KEEP);
        st.early.insert(pid, (code, now));
    }
    drop(st);
    state.1.notify_all();
    if let Some((exec_id, pid, code)) = event {
        let mut ev = TaskExit::new();
        ev.container_id = id.to_string();
        ev.id = if exec_id.is_empty() {
            id.to_string()
        } else {
            exec_id
        };
        ev.pid = pid as u32;
        ev.exit_status = code as u32;
        ev.exited_at = protobuf_timestamp(at);
        publish(addr, ns, "/tasks/exit", Box::new(ev));
    }
}

/// Publishes to the daemon, connecting anew each time: the daemon may have
/// restarted since. A daemon that is down reads the exit file later.
fn publish(addr: &str, ns: &str, topic: &str, ev: Box<dyn MessageDyn>) {
    if addr.is_empty() {
        return;
    }
    match RemotePublisher::new(addr) {
        Ok(p) => {
            if let Err(e) = p.publish(Context::default(), topic, ns, ev) {
                eprintln!("vordr shim: publish {topic}: {e}");
            }
        }
        Err(e) => eprintln!("vordr shim: events endpoint {addr}: {e}"),
    }
}

/// Opens a FIFO or file the daemon named for a stream; empty means none.
fn open_stream(path: &str, write: bool) -> std::io::Result<OwnedFd> {
    if path.is_empty() {
        return Ok(File::open("/dev/null")?.into());
    }
    let f = if write {
        // Read-write never blocks on a FIFO whose reader is not there yet.
        OpenOptions::new().read(true).write(true).open(path)?
    } else {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        // SAFETY: plain fcntl on an fd we own.
        unsafe {
            let fl = libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_GETFL);
            libc::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::F_SETFL,
                fl & !libc::O_NONBLOCK,
            );
        }
        f
    };
    Ok(f.into())
}

/// Copies a container's output into its CRI log (or nowhere).
fn copy_output(log: Option<Arc<CriLog>>, name: &str, mut f: impl std::io::Read) {
    match log {
        Some(l) => l.copy(name, f),
        None => drop(std::io::copy(&mut f, &mut std::io::sink())),
    }
}

/// Copies an exec's pty master to its stdout FIFO, and its stdin FIFO (if
/// any) to the master, each on a thread that ends with the stream.
fn copy_pty(master: &Arc<OwnedFd>, stdin: &str, stdout: &str) -> std::io::Result<()> {
    let out = File::from(open_stream(stdout, true)?);
    let from_master = File::from(master.try_clone()?);
    std::thread::spawn(move || {
        let (mut r, mut w) = (from_master, out);
        // Ends with EIO once the process and its children closed the slave.
        let _ = std::io::copy(&mut r, &mut w);
    });
    if !stdin.is_empty() {
        let input = File::from(open_stream(stdin, false)?);
        let to_master = File::from(master.try_clone()?);
        std::thread::spawn(move || {
            let (mut r, mut w) = (input, to_master);
            let _ = std::io::copy(&mut r, &mut w);
        });
    }
    Ok(())
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// How long an exec's runtime has to send its terminal's master.
const EXEC_CONSOLE_WAIT: Duration = Duration::from_secs(10);

/// Receives the pty master a runtime sends to a console socket, waiting at
/// most `wait` (for ever without) for it to connect and send.
fn receive_master(
    listener: std::os::unix::net::UnixListener,
    wait: Option<Duration>,
) -> std::io::Result<OwnedFd> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsFd, AsRawFd, FromRawFd};
    if let Some(wait) = wait {
        let ms = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, ms).map_err(std::io::Error::from)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the runtime sent no terminal",
            ));
        }
    }
    let (conn, _) = listener.accept()?;
    conn.set_read_timeout(wait)?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just gave us this descriptor.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::other("no pty master received"))
}

/// Force-deletes the container with the runtime recorded in the bundle.
pub fn force_delete(id: &str, bundle: &Path) {
    if let Ok(data) = std::fs::read(bundle.join("options.json")) {
        if let Ok(opts) = serde_json::from_slice::<CreateOptions>(&data) {
            let _ = runtime::from_options(&opts).delete(id, true);
        }
    }
}

impl Task for TaskService {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        self.check_id(&req.id)?;
        let opts: CreateOptions = match req.options.as_ref() {
            Some(any) if any.type_url == CREATE_OPTIONS_TYPE => {
                serde_json::from_slice(&any.value).map_err(|e| invalid(format!("options: {e}")))?
            }
            Some(any) => return Err(invalid(format!("options: unknown type {}", any.type_url))),
            None => CreateOptions::default(),
        };
        if self.lock().init.is_some() {
            return Err(status(
                containerd_shim::protos::ttrpc::Code::ALREADY_EXISTS,
                format!("container {} already created", req.id),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = libcontainer::oci_spec::runtime::Spec::load(bundle.join("config.json"))
            .map_err(|e| invalid(format!("config.json: {e}")))?;
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_default();
        std::fs::write(
            bundle.join("options.json"),
            serde_json::to_vec(&opts).map_err(|e| internal(e.to_string()))?,
        )
        .map_err(|e| internal(format!("options.json: {e}")))?;
        let rt: Arc<dyn OciRuntime> = Arc::from(runtime::from_options(&opts));
        let log = match &opts.log_path {
            Some(p) => Some(
                CriLog::open(p, opts.max_log_line)
                    .map_err(|e| invalid(format!("log path {}: {e}", p.display())))?,
            ),
            None => None,
        };

        let (stdin, stdin_writer) = if opts.stdin {
            let (r, w) = pipe().map_err(|e| internal(e.to_string()))?;
            (r, Some(w))
        } else {
            let s = open_stream(&req.stdin, false).map_err(|e| invalid(format!("stdin: {e}")))?;
            (s, None)
        };
        let mut copiers = Vec::new();
        let attach = Arc::new(Attach::default());
        let stdin_target: StdinTarget = Arc::new(Mutex::new(stdin_writer));
        let dir = vordr_shim_api::socket_dir();
        attach
            .serve(
                &vordr_shim_api::socket_path(&dir, &vordr_shim_api::attach_socket_name(&req.id)),
                stdin_target.clone(),
                opts.stdin_once,
            )
            .map_err(|e| internal(format!("attach socket: {e}")))?;
        let io = if req.terminal {
            // Short enough for a socket address whatever the bundle path.
            let sock = vordr_shim_api::socket_path(&dir, &format!("{}.console", req.id));
            let _ = std::fs::remove_file(&sock);
            let listener = vordr_fsmode::bind_unix(&sock, vordr_fsmode::PRIVATE_SOCKET)
                .map_err(|e| internal(format!("console socket: {e}")))?;
            let log = log.clone();
            let sock_path = sock.clone();
            let state = self.state.clone();
            let (attach, stdin_target) = (attach.clone(), stdin_target.clone());
            let wants_stdin = opts.stdin;
            copiers.push(std::thread::spawn(move || {
                let accepted = receive_master(listener, None);
                let _ = std::fs::remove_file(&sock_path);
                if let Ok(master) = accepted {
                    if let Ok(dup) = master.try_clone() {
                        state.0.lock().unwrap_or_else(|e| e.into_inner()).console = Some(dup);
                    }
                    if wants_stdin {
                        if let Ok(dup) = master.try_clone() {
                            *stdin_target.lock().unwrap_or_else(|e| e.into_inner()) = Some(dup);
                        }
                    }
                    let f = Tee {
                        inner: File::from(master),
                        stream: attach::STDOUT,
                        attach,
                    };
                    copy_output(log, "stdout", f);
                }
            }));
            let null = || File::open("/dev/null").map(OwnedFd::from);
            ProcessIo {
                stdin,
                stdout: null().map_err(|e| internal(e.to_string()))?,
                stderr: null().map_err(|e| internal(e.to_string()))?,
                console_socket: Some(sock),
            }
        } else {
            let (out_r, out_w) = pipe().map_err(|e| internal(e.to_string()))?;
            let (err_r, err_w) = pipe().map_err(|e| internal(e.to_string()))?;
            for (name, stream, r) in [
                ("stdout", attach::STDOUT, out_r),
                ("stderr", attach::STDERR, err_r),
            ] {
                let log = log.clone();
                let attach = attach.clone();
                copiers.push(std::thread::spawn(move || {
                    let f = Tee {
                        inner: File::from(r),
                        stream,
                        attach,
                    };
                    copy_output(log, name, f);
                }));
            }
            ProcessIo {
                stdin,
                stdout: out_w,
                stderr: err_w,
                console_socket: None,
            }
        };
        {
            let mut st = self.lock();
            st.bundle = bundle.clone();
            st.options = opts;
            st.cgroups_path = cgroups_path;
            st.log = log;
            st.stdin = stdin_target;
            st.attach = attach;
        }
        let pid = match rt.create(&req.id, &bundle, io) {
            Ok(pid) => pid,
            Err(e) => {
                let _ = rt.delete(&req.id, true);
                return Err(internal(e.to_string()));
            }
        };
        let mut p = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        p.pid = pid;
        p.reaped_pid = pid;
        let mut st = self.lock();
        st.copiers = copiers;
        st.init = Some(p);
        let early = st.early.remove(&pid).map(|(code, _)| code);
        drop(st);
        *self.runtime.lock().unwrap_or_else(|e| e.into_inner()) = Some(rt);
        if let Some(code) = early {
            on_exit(
                &self.state,
                &self.id,
                &self.namespace,
                &self.events_address,
                pid,
                code,
            );
        }
        let mut resp = CreateTaskResponse::new();
        resp.pid = pid as u32;
        Ok(resp)
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        self.check_id(&req.id)?;
        let rt = self.runtime()?;
        let mut resp = StartResponse::new();
        if req.exec_id.is_empty() {
            let pid = {
                let st = self.lock();
                let init = st
                    .init
                    .as_ref()
                    .ok_or_else(|| failed("container not created"))?;
                if init.state != PState::Created {
                    return Err(failed("container already started"));
                }
                init.pid
            };
            rt.start(&req.id).map_err(|e| internal(e.to_string()))?;
            if let Some(init) = self.lock().init.as_mut() {
                if init.state == PState::Created {
                    init.state = PState::Running;
                }
            }
            resp.pid = pid as u32;
            return Ok(resp);
        }
        self.start_exec(&req.id, &req.exec_id, rt.as_ref())
            .map(|pid| {
                resp.pid = pid as u32;
                resp
            })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        self.check_id(&req.id)?;
        let st = self.lock();
        let p = if req.exec_id.is_empty() {
            st.init.as_ref()
        } else {
            st.execs.get(&req.exec_id)
        }
        .ok_or_else(|| not_found(format!("process {} not found", req.exec_id)))?;
        let mut resp = StateResponse::new();
        resp.id = req.id.clone();
        resp.exec_id = req.exec_id.clone();
        resp.bundle = st.bundle.display().to_string();
        resp.pid = p.pid as u32;
        resp.status = match p.state {
            PState::Created => TaskStatus::CREATED,
            PState::Running => TaskStatus::RUNNING,
            PState::Paused => TaskStatus::PAUSED,
            PState::Stopped => TaskStatus::STOPPED,
        }
        .into();
        resp.stdin = p.stdin.clone();
        resp.stdout = p.stdout.clone();
        resp.stderr = p.stderr.clone();
        resp.terminal = p.terminal;
        if let Some((code, at)) = p.exit {
            resp.exit_status = code as u32;
            resp.exited_at = protobuf_timestamp(at);
        }
        Ok(resp)
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        if req.exec_id.is_empty() {
            let running = {
                let st = self.lock();
                let init = st
                    .init
                    .as_ref()
                    .ok_or_else(|| failed("container not created"))?;
                init.exit.is_none()
            };
            if !running && !req.all {
                return Ok(Empty::new());
            }
            let rt = self.runtime()?;
            return match rt.kill(&req.id, req.signal as i32, req.all) {
                Ok(()) => Ok(Empty::new()),
                // It exited meanwhile.
                Err(_) if self.lock().init.as_ref().is_some_and(|p| p.exit.is_some()) => {
                    Ok(Empty::new())
                }
                Err(e) => Err(internal(e.to_string())),
            };
        }
        let st = self.lock();
        let p = st
            .execs
            .get(&req.exec_id)
            .ok_or_else(|| not_found(format!("exec {} not found", req.exec_id)))?;
        if p.exit.is_none() && p.pid > 0 {
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
                .map_err(|e| invalid(format!("signal {}: {e}", req.signal)))?;
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), sig);
        }
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        let mut st = self.lock();
        match st.init.as_ref() {
            Some(p) if p.state == PState::Running => {}
            _ => return Err(failed("container is not running")),
        }
        if st.execs.contains_key(&req.exec_id) {
            return Err(status(
                containerd_shim::protos::ttrpc::Code::ALREADY_EXISTS,
                format!("exec {} exists", req.exec_id),
            ));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .ok_or_else(|| invalid("exec without a process spec"))?;
        let mut p = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        p.spec = Some(spec);
        st.execs.insert(req.exec_id.clone(), p);
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        self.check_id(&req.id)?;
        let mut st = self.lock();
        loop {
            let p = if req.exec_id.is_empty() {
                st.init.as_ref()
            } else {
                st.execs.get(&req.exec_id)
            }
            .ok_or_else(|| not_found(format!("process {} not found", req.exec_id)))?;
            if let Some((code, at)) = p.exit {
                let mut resp = WaitResponse::new();
                resp.exit_status = code as u32;
                resp.exited_at = protobuf_timestamp(at);
                return Ok(resp);
            }
            st = self.state.1.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        self.check_id(&req.id)?;
        let mut resp = DeleteResponse::new();
        if !req.exec_id.is_empty() {
            let mut st = self.lock();
            let p = st
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| not_found(format!("exec {} not found", req.exec_id)))?;
            if p.exit.is_none() && p.state != PState::Created {
                return Err(failed(format!("exec {} is running", req.exec_id)));
            }
            let p = st.execs.remove(&req.exec_id).expect("checked above");
            let bundle = st.bundle.clone();
            let _ = std::fs::remove_file(bundle.join(format!("exec-{}.json", req.exec_id)));
            let _ = std::fs::remove_file(bundle.join(format!("exec-{}.pid", req.exec_id)));
            resp.pid = p.pid as u32;
            if let Some((code, at)) = p.exit {
                resp.exit_status = code as u32;
                resp.exited_at = protobuf_timestamp(at);
            }
            return Ok(resp);
        }
        let (pid, exit) = {
            let st = self.lock();
            let init = st
                .init
                .as_ref()
                .ok_or_else(|| failed("container not created"))?;
            if init.exit.is_none() && init.state != PState::Created {
                return Err(failed("container is running"));
            }
            (init.pid, init.exit)
        };
        let rt = self.runtime()?;
        rt.delete(&req.id, true)
            .map_err(|e| internal(e.to_string()))?;
        resp.pid = pid as u32;
        let (code, at) = exit.unwrap_or((137, now_ns()));
        resp.exit_status = code as u32;
        resp.exited_at = protobuf_timestamp(at);
        let mut st = self.lock();
        if let Some(init) = st.init.as_mut() {
            init.state = PState::Stopped;
            if init.exit.is_none() {
                init.exit = Some((code, at));
            }
        }
        Ok(resp)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        self.check_id(&req.id)?;
        let cg = self.lock().cgroups_path.clone();
        let rel = cg.strip_prefix("/").unwrap_or(&cg).to_path_buf();
        let mut resp = PidsResponse::new();
        for base in [
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup",
        ] {
            if let Ok(s) = std::fs::read_to_string(Path::new(base).join(&rel).join("cgroup.procs"))
            {
                for pid in s.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                    let mut info = ProcessInfo::new();
                    info.pid = pid;
                    resp.processes.push(info);
                }
                break;
            }
        }
        Ok(resp)
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        self.runtime()?
            .pause(&req.id)
            .map_err(|e| internal(e.to_string()))?;
        if let Some(p) = self.lock().init.as_mut() {
            p.state = PState::Paused;
        }
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        self.runtime()?
            .resume(&req.id)
            .map_err(|e| internal(e.to_string()))?;
        if let Some(p) = self.lock().init.as_mut() {
            if p.state == PState::Paused {
                p.state = PState::Running;
            }
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        if req.annotations.contains_key(REOPEN_LOG_ANNOTATION) {
            let log = self.lock().log.clone();
            if let Some(log) = log {
                log.reopen()
                    .map_err(|e| internal(format!("reopen log: {e}")))?;
            }
            return Ok(Empty::new());
        }
        let Some(res) = req.resources.as_ref() else {
            return Ok(Empty::new());
        };
        let bundle = self.lock().bundle.clone();
        self.runtime()?
            .update(&req.id, &bundle, &res.value)
            .map_err(|e| internal(e.to_string()))?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        if req.exec_id.is_empty() && req.stdin {
            // The container reads end of file.
            *self.lock().stdin.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        let st = self.lock();
        let exec_pty;
        let fd: &OwnedFd = if req.exec_id.is_empty() {
            st.console
                .as_ref()
                .ok_or_else(|| failed("the container has no terminal"))?
        } else {
            exec_pty = st
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| not_found(format!("exec {} not found", req.exec_id)))?
                .pty
                .clone()
                .ok_or_else(|| failed(format!("exec {} has no terminal", req.exec_id)))?;
            &exec_pty
        };
        let ws = libc::winsize {
            ws_row: req.height.min(u32::from(u16::MAX)) as u16,
            ws_col: req.width.min(u32::from(u16::MAX)) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
        let r = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(fd),
                libc::TIOCSWINSZ,
                &ws as *const libc::winsize,
            )
        };
        if r != 0 {
            return Err(internal(format!(
                "resize: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Empty::new())
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        self.check_id(&req.id)?;
        let pid = self
            .lock()
            .init
            .as_ref()
            .map(|p| p.pid)
            .ok_or_else(|| failed("container not created"))?;
        let cg = containerd_shim::cgroup::get_cgroup(pid as u32)
            .map_err(|e| internal(format!("cgroup: {e}")))?;
        let metrics = containerd_shim::cgroup::collect_metrics(&cg)
            .map_err(|e| internal(format!("metrics: {e}")))?;
        let mut any = Any::new();
        any.type_url = "io.containerd.cgroups.v1.Metrics".to_string();
        any.value = metrics
            .write_to_bytes()
            .map_err(|e| internal(e.to_string()))?;
        let mut resp = StatsResponse::new();
        resp.stats = Some(any).into();
        Ok(resp)
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        self.check_id(&req.id)?;
        let mut resp = ConnectResponse::new();
        resp.shim_pid = std::process::id();
        resp.task_pid = self.lock().init.as_ref().map(|p| p.pid as u32).unwrap_or(0);
        resp.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(resp)
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        let st = self.lock();
        let busy = st.init.as_ref().is_some_and(|p| p.exit.is_none())
            || st.execs.values().any(|p| p.exit.is_none() && p.pid > 0);
        if busy && !req.now {
            return Ok(Empty::new());
        }
        drop(st);
        self.exit.signal();
        Ok(Empty::new())
    }
}

impl TaskService {
    /// Marks an exec running, its exit the one of `reaped` (which may have
    /// come already): the helper's, or the process's own when `detached`.
    fn track_exec(&self, exec_id: &str, reaped: i32, detached: bool, pty: Option<Arc<OwnedFd>>) {
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
            on_exit(
                &self.state,
                &self.id,
                &self.namespace,
                &self.events_address,
                reaped,
                code,
            );
        }
    }

    /// Starts a registered exec through the runtime; returns its pid.
    fn start_exec(&self, id: &str, exec_id: &str, rt: &dyn OciRuntime) -> TtrpcResult<i32> {
        let (spec, stdin, stdout, stderr, terminal, bundle, init_pid) = {
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
            (
                spec,
                p.stdin.clone(),
                p.stdout.clone(),
                p.stderr.clone(),
                p.terminal,
                bundle,
                init_pid,
            )
        };
        let process_json = bundle.join(format!("exec-{exec_id}.json"));
        let pid_file = bundle.join(format!("exec-{exec_id}.pid"));
        // The process's environment: 0600, as the container's config.json.
        vordr_fsmode::write_private(&process_json, &spec)
            .map_err(|e| internal(format!("exec spec: {e}")))?;
        let _ = std::fs::remove_file(&pid_file);
        let mut console = None;
        let io = if terminal {
            // The terminal comes from the container's devpts, its master
            // through a console socket, as containerd does with runc.
            let dir = vordr_shim_api::socket_dir();
            let sock = vordr_shim_api::socket_path(&dir, &format!("{id}.{exec_id}.console"));
            let _ = std::fs::remove_file(&sock);
            let l = vordr_fsmode::bind_unix(&sock, vordr_fsmode::PRIVATE_SOCKET)
                .map_err(|e| internal(format!("console socket: {e}")))?;
            console = Some((l, sock.clone()));
            let null = || {
                File::open("/dev/null")
                    .map(OwnedFd::from)
                    .map_err(|e| internal(e.to_string()))
            };
            ProcessIo {
                stdin: null()?,
                stdout: null()?,
                stderr: null()?,
                console_socket: Some(sock),
            }
        } else {
            ProcessIo {
                stdin: open_stream(&stdin, false).map_err(|e| invalid(format!("stdin: {e}")))?,
                stdout: open_stream(&stdout, true).map_err(|e| invalid(format!("stdout: {e}")))?,
                stderr: open_stream(&stderr, true).map_err(|e| invalid(format!("stderr: {e}")))?,
                console_socket: None,
            }
        };
        let started = rt.exec(id, init_pid, &bundle, &process_json, &pid_file, io);
        let (mut started, pty) = match (started, console) {
            (Err(e), console) => {
                if let Some((_, sock)) = console {
                    let _ = std::fs::remove_file(&sock);
                }
                return Err(internal(e.to_string()));
            }
            (Ok(started), None) => (started, None),
            (Ok(mut started), Some((l, sock))) => {
                let master = receive_master(l, Some(EXEC_CONSOLE_WAIT));
                let _ = std::fs::remove_file(&sock);
                match master {
                    Ok(m) => (started, Some(Arc::new(m))),
                    Err(e) => {
                        // No terminal, no process: the helper stops before its fork.
                        if let Started::Helper(child) = &mut started {
                            let _ = child.kill();
                        }
                        return Err(internal(format!("exec terminal: {e}")));
                    }
                }
            }
        };
        if let Some(master) = &pty {
            copy_pty(master, &stdin, &stdout).map_err(|e| internal(format!("pty copy: {e}")))?;
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
        // The helper writes the exec'd process's pid once it exists.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = std::fs::read_to_string(&pid_file) {
                if let Ok(pid) = s.trim().parse::<i32>() {
                    if let Some(p) = self.lock().execs.get_mut(exec_id) {
                        p.pid = pid;
                    }
                    return Ok(pid);
                }
            }
            let exited = self
                .lock()
                .execs
                .get(exec_id)
                .is_some_and(|p| p.exit.is_some());
            if exited || Instant::now() > deadline {
                // It failed before the process existed: its status says why.
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
