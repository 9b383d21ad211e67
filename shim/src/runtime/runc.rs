//! runc, driven through its command line (the configured fallback).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run_helper, with_io, OciRuntime, ProcessIo, Result, RuntimeError, Started};

pub struct Runc {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl Runc {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        c
    }

    fn run(&self, args: &[&str], what: &str) -> Result<()> {
        let mut c = self.cmd();
        c.args(args);
        run_helper(c, what, None)
    }
}

/// Whether the bundle's spec names its cgroup in runc's systemd form.
fn systemd_cgroup(bundle: &Path) -> bool {
    let Ok(text) = std::fs::read(bundle.join("config.json")) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(str::to_string))
        .is_some_and(|p| crate::cgroup::is_systemd(Path::new(&p)))
}

impl OciRuntime for Runc {
    fn create(&self, id: &str, bundle: &Path, io: ProcessIo) -> Result<i32> {
        let pid_file = bundle.join("init.pid");
        let err_file = bundle.join("create-error");
        let mut c = self.cmd();
        if systemd_cgroup(bundle) {
            // runc keeps the manager in its state: later commands follow it.
            c.arg("--systemd-cgroup");
        }
        c.arg("--log")
            .arg(&err_file)
            .arg("--log-format")
            .arg("text");
        c.arg("create").arg("--bundle").arg(bundle);
        c.arg("--pid-file").arg(&pid_file);
        if let Some(sock) = &io.console_socket {
            c.arg("--console-socket").arg(sock);
        }
        c.arg(id);
        with_io(&mut c, io);
        run_helper(c, "runc create", Some(&err_file))?;
        read_pid(&pid_file)
    }

    fn start(&self, id: &str) -> Result<()> {
        self.run(&["start", id], "runc start")
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, &sig]);
        self.run(&args, "runc kill")
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run(&args, "runc delete")
    }

    fn pause(&self, id: &str) -> Result<()> {
        self.run(&["pause", id], "runc pause")
    }

    fn resume(&self, id: &str) -> Result<()> {
        self.run(&["resume", id], "runc resume")
    }

    fn update(&self, id: &str, bundle: &Path, resources_json: &[u8]) -> Result<()> {
        let path = bundle.join("update.json");
        std::fs::write(&path, resources_json)
            .map_err(|e| RuntimeError(format!("write {}: {e}", path.display())))?;
        let mut c = self.cmd();
        c.arg("update").arg("--resources").arg(&path).arg(id);
        let r = run_helper(c, "runc update", None);
        let _ = std::fs::remove_file(&path);
        r
    }

    fn checkpoint(&self, id: &str, images: &Path, work: &Path) -> Result<()> {
        let mut c = self.cmd();
        c.arg("checkpoint").arg("--image-path").arg(images);
        c.arg("--work-path")
            .arg(work)
            .arg("--leave-running")
            .arg(id);
        run_helper(c, "runc checkpoint", None)
    }

    fn exec(
        &self,
        id: &str,
        _init_pid: i32,
        _bundle: &Path,
        process_json: &Path,
        pid_file: &Path,
        io: ProcessIo,
    ) -> Result<Started> {
        let mut c = self.cmd();
        if let Some(sock) = &io.console_socket {
            // runc allocates the terminal in the container, sends its master,
            // starts the process and leaves it to the shim, as for the init.
            let err_file = process_json.with_extension("error");
            c.arg("--log")
                .arg(&err_file)
                .arg("--log-format")
                .arg("text");
            c.arg("exec").arg("--process").arg(process_json);
            c.arg("--pid-file").arg(pid_file);
            c.arg("--console-socket").arg(sock).arg("--detach").arg(id);
            with_io(&mut c, io);
            let r = run_helper(c, "runc exec", Some(&err_file));
            let _ = std::fs::remove_file(&err_file);
            r?;
            return read_pid(pid_file).map(Started::Detached);
        }
        // Without a terminal runc runs in the foreground and exits with the
        // process's status, copying between its stdio and the process's.
        c.arg("exec").arg("--process").arg(process_json);
        c.arg("--pid-file").arg(pid_file);
        c.arg(id);
        with_io(&mut c, io);
        c.spawn()
            .map(Started::Helper)
            .map_err(|e| RuntimeError(format!("runc exec: {e}")))
    }
}

/// Reads a pid file written by a runtime.
pub(crate) fn read_pid(path: &Path) -> Result<i32> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| RuntimeError(format!("read {}: {e}", path.display())))?;
    s.trim()
        .parse()
        .map_err(|_| RuntimeError(format!("{}: not a pid: {s:?}", path.display())))
}
