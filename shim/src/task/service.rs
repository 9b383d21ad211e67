//! The containerd task API over TTRPC: each call checked and answered by the task modules.

use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use containerd_shim::api::*;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::ttrpc::Code;
use containerd_shim::protos::types::task::{ProcessInfo, Status as TaskStatus};
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use vordr_shim_api::{CreateOptions, CREATE_OPTIONS_TYPE, REOPEN_LOG_ANNOTATION};

use super::console::resize;
use super::reply::{failed, internal, invalid, not_found, protobuf_timestamp, status};
use super::state::{PState, Proc, State, TaskService};
use crate::exit::now_ns;

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
                Code::ALREADY_EXISTS,
                format!("container {} already created", req.id),
            ));
        }
        let pid = self.create_init(&req, opts)?;
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
                Code::ALREADY_EXISTS,
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

    /// Dumps the running container with criu into `req.path` (a directory
    /// the daemon made for it), leaving it running.
    fn checkpoint(&self, _ctx: &TtrpcContext, req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        self.check_id(&req.id)?;
        let images = Path::new(&req.path);
        if !images.is_absolute() {
            return Err(invalid(format!(
                "checkpoint path {:?} is not absolute",
                req.path
            )));
        }
        let (bundle, running) = {
            let st = self.lock();
            let running = st.init.as_ref().is_some_and(|p| p.state == PState::Running);
            (st.bundle.clone(), running)
        };
        if !running {
            return Err(failed("the container is not running".to_string()));
        }
        let work = bundle.join("criu-work");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&work)
            .map_err(|e| internal(format!("{}: {e}", work.display())))?;
        let r = self.runtime()?.checkpoint(&req.id, images, &work);
        // criu's log of the dump goes with the images, where the daemon
        // puts it into the archive (dump.log, as CRI-O's archives have it).
        let _ = std::fs::copy(work.join("dump.log"), images.join("dump.log"));
        let _ = std::fs::remove_dir_all(&work);
        r.map_err(|e| internal(e.to_string()))?;
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
        resize(fd, req.width, req.height).map_err(|e| internal(format!("resize: {e}")))?;
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
        let metrics = |e| internal(format!("metrics: {e}"));
        let mut any = Any::new();
        // v2: cpu.stat, memory.current/stat/events, pids.current, io.stat,
        // as containerd's v2 Metrics; v1 as its v1 Metrics.
        let (type_url, bytes) = if cg.v2() {
            let m = containerd_shim::cgroup::collect_metrics_v2(&cg).map_err(metrics)?;
            ("io.containerd.cgroups.v2.Metrics", m.write_to_bytes())
        } else {
            let m = containerd_shim::cgroup::collect_metrics(&cg).map_err(metrics)?;
            ("io.containerd.cgroups.v1.Metrics", m.write_to_bytes())
        };
        any.type_url = type_url.to_string();
        any.value = bytes.map_err(|e| internal(e.to_string()))?;
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
