//! runc, driven through its command line (the configured fallback).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::{run_helper, with_io, OciRuntime, ProcessIo, Result, RuntimeError};

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

impl OciRuntime for Runc {
    fn create(&self, id: &str, bundle: &Path, io: ProcessIo) -> Result<i32> {
        let pid_file = bundle.join("init.pid");
        let err_file = bundle.join("create-error");
        let mut c = self.cmd();
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

    fn exec(
        &self,
        id: &str,
        _init_pid: i32,
        _bundle: &Path,
        process_json: &Path,
        pid_file: &Path,
        io: ProcessIo,
    ) -> Result<Child> {
        if io.console_socket.is_none() {
            // A terminal exec gets the shim's pty as stdio: runc must not
            // allocate one (it would want a console socket).
            clear_terminal(process_json)?;
        }
        let mut c = self.cmd();
        c.arg("exec").arg("--process").arg(process_json);
        c.arg("--pid-file").arg(pid_file);
        if let Some(sock) = &io.console_socket {
            c.arg("--console-socket").arg(sock).arg("--detach");
        }
        c.arg(id);
        with_io(&mut c, io);
        c.spawn()
            .map_err(|e| RuntimeError(format!("runc exec: {e}")))
    }
}

/// Sets `terminal` false in a process JSON file.
fn clear_terminal(process_json: &Path) -> Result<()> {
    let err = |e: String| RuntimeError(format!("{}: {e}", process_json.display()));
    let data = std::fs::read(process_json).map_err(|e| err(e.to_string()))?;
    let mut v: serde_json::Value = serde_json::from_slice(&data).map_err(|e| err(e.to_string()))?;
    if v.get("terminal") == Some(&serde_json::Value::Bool(true)) {
        v["terminal"] = false.into();
        std::fs::write(process_json, v.to_string()).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// Reads a pid file written by a runtime.
pub(crate) fn read_pid(path: &Path) -> Result<i32> {
    let s = std::fs::read_to_string(path)
        .map_err(|e| RuntimeError(format!("read {}: {e}", path.display())))?;
    s.trim()
        .parse()
        .map_err(|_| RuntimeError(format!("{}: not a pid: {s:?}", path.display())))
}
