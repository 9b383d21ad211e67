//! The shim's lifecycle as containerd starts shims: `start` spawns the
//! long-lived server detached from the daemon and prints its address; the
//! server serves the task API until Shutdown; `delete` cleans up after a
//! shim that died.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, ExitSignal, Flags, Shim, StartOpts};
use vordr_shim_api::{socket_path, ExitRecord, SHIM_LOG_FILE};

use crate::task::{force_delete, protobuf_timestamp, TaskService};

pub struct VordrShim {
    id: String,
    namespace: String,
    exit: Arc<ExitSignal>,
}

impl Shim for VordrShim {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        VordrShim {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let dir = vordr_shim_api::socket_dir();
        vordr_fsmode::ensure_dir(&dir, vordr_fsmode::PRIVATE_DIR)
            .map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
        let socket = socket_path(&dir, &opts.id);
        let address = format!("unix://{}", socket.display());
        let bundle = std::env::current_dir().map_err(|e| Error::Other(e.to_string()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(bundle.join(SHIM_LOG_FILE))
            .map_err(|e| Error::Other(format!("shim log: {e}")))?;
        let exe = std::env::current_exe().map_err(|e| Error::Other(e.to_string()))?;
        let mut cmd = Command::new(exe);
        cmd.current_dir(&bundle)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .env("TTRPC_ADDRESS", &opts.ttrpc_address)
            .args(["-namespace", &opts.namespace, "-id", &opts.id])
            .args(["-address", &opts.address, "-socket", &address]);
        // Its own session: signals to the daemon's group never reach it.
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Other(format!("spawn shim: {e}")))?;
        // The server closes its stdout once it listens.
        let mut sink = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_end(&mut sink);
        }
        // containerd-shim binds under the server's umask: the socket is
        // made 0600 before anyone is told where it is (its directory is
        // 0700 meanwhile).
        if let Err(e) = vordr_fsmode::set_mode(&socket, vordr_fsmode::PRIVATE_SOCKET) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Other(format!(
                "shim socket {}: {e}",
                socket.display()
            )));
        }
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = std::env::current_dir().map_err(|e| Error::Other(e.to_string()))?;
        force_delete(&self.id, &bundle);
        let mut resp = DeleteResponse::new();
        let rec = ExitRecord::read(&bundle);
        resp.exit_status = rec.map(|r| r.exit_code as u32).unwrap_or(137);
        resp.pid = rec.map(|r| r.pid).unwrap_or(0);
        resp.exited_at = protobuf_timestamp(
            rec.map(|r| r.exited_at_ns)
                .unwrap_or_else(crate::exit::now_ns),
        );
        Ok(resp)
    }

    fn wait(&mut self) {
        // Serving: drop the start-up code and data from the working set.
        crate::trim::trim_working_set();
        self.exit.wait();
    }

    fn create_task_service(&self, _publisher: RemotePublisher) -> TaskService {
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        TaskService::new(&self.id, &self.namespace, &address, self.exit.clone())
    }
}
