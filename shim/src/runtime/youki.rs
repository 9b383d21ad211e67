//! youki, through its libcontainer crate. libcontainer clones the calling
//! process, so everything that clones runs in a fresh single-threaded helper:
//! the shim's own binary started again with a hidden verb. start, kill,
//! delete, pause, resume and update do not clone and run in the shim.

use std::path::{Path, PathBuf};
use std::process::Command;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

use super::runc::read_pid;
use super::{run_helper, with_io, OciRuntime, ProcessIo, Result, RuntimeError, Started};

/// Hidden verb of the shim binary that creates a container with libcontainer.
pub const CREATE_VERB: &str = "__youki-create";
/// Hidden verb of the shim binary that execs into a container.
pub const EXEC_VERB: &str = "__exec";

pub struct Youki {
    pub root: PathBuf,
}

impl Youki {
    fn load(&self, id: &str) -> Result<Container> {
        Container::load(self.root.join(id))
            .map_err(|e| RuntimeError(format!("load container {id}: {e}")))
    }
}

fn err(what: &str) -> impl Fn(libcontainer::error::LibcontainerError) -> RuntimeError + '_ {
    move |e| RuntimeError(format!("{what}: {e}"))
}

impl OciRuntime for Youki {
    fn create(&self, id: &str, bundle: &Path, io: ProcessIo) -> Result<i32> {
        patch_config(&bundle.join("config.json"))?;
        let pid_file = bundle.join("init.pid");
        let err_file = bundle.join("create-error");
        let _ = std::fs::remove_file(&err_file);
        let exe = std::env::current_exe().map_err(|e| RuntimeError(e.to_string()))?;
        let mut c = Command::new(exe);
        c.arg(CREATE_VERB)
            .arg(&self.root)
            .arg(id)
            .arg(bundle)
            .arg(&pid_file)
            .arg(&err_file);
        if let Some(sock) = &io.console_socket {
            c.arg(sock);
        }
        with_io(&mut c, io);
        run_helper(c, "youki create", Some(&err_file))?;
        read_pid(&pid_file)
    }

    fn start(&self, id: &str) -> Result<()> {
        self.load(id)?.start().map_err(err("youki start"))
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let sig = libcontainer::signal::Signal::try_from(signal)
            .map_err(|e| RuntimeError(format!("signal {signal}: {e}")))?;
        self.load(id)?.kill(sig, all).map_err(err("youki kill"))
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        self.load(id)?.delete(force).map_err(err("youki delete"))
    }

    fn pause(&self, id: &str) -> Result<()> {
        self.load(id)?.pause().map_err(err("youki pause"))
    }

    fn resume(&self, id: &str) -> Result<()> {
        self.load(id)?.resume().map_err(err("youki resume"))
    }

    fn update(&self, id: &str, bundle: &Path, resources_json: &[u8]) -> Result<()> {
        use libcgroups::common::{
            create_cgroup_manager, CgroupConfig, CgroupManager, ControllerOpt,
        };
        let resources: libcontainer::oci_spec::runtime::LinuxResources =
            serde_json::from_slice(resources_json)
                .map_err(|e| RuntimeError(format!("resources: {e}")))?;
        let spec = libcontainer::oci_spec::runtime::Spec::load(bundle.join("config.json"))
            .map_err(|e| RuntimeError(format!("config.json: {e}")))?;
        let path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .ok_or_else(|| RuntimeError("config.json has no cgroupsPath".into()))?;
        let manager = create_cgroup_manager(CgroupConfig {
            systemd_cgroup: crate::cgroup::is_systemd(&path),
            cgroup_path: path,
            container_name: id.to_string(),
        })
        .map_err(|e| RuntimeError(format!("cgroup: {e}")))?;
        manager
            .apply(&ControllerOpt {
                resources: &resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| RuntimeError(format!("update cgroup: {e}")))
    }

    fn checkpoint(&self, id: &str, images: &Path, work: &Path) -> Result<()> {
        let opts = libcontainer::container::CheckpointOptions {
            ext_unix_sk: false,
            file_locks: false,
            image_path: images.to_path_buf(),
            leave_running: true,
            shell_job: false,
            tcp_established: false,
            work_path: Some(work.to_path_buf()),
            manage_cgroups_mode: rust_criu::CgMode::SOFT,
            link_remap: false,
        };
        self.load(id)?
            .checkpoint(&opts)
            .map_err(err("youki checkpoint"))
    }

    fn exec(
        &self,
        _id: &str,
        init_pid: i32,
        bundle: &Path,
        process_json: &Path,
        pid_file: &Path,
        io: ProcessIo,
    ) -> Result<Started> {
        let exe = std::env::current_exe().map_err(|e| RuntimeError(e.to_string()))?;
        let mut c = Command::new(exe);
        c.arg(EXEC_VERB)
            .arg(init_pid.to_string())
            .arg(process_json)
            .arg(bundle.join("config.json"))
            .arg(pid_file);
        if let Some(sock) = &io.console_socket {
            c.arg(sock);
        }
        with_io(&mut c, io);
        c.spawn()
            .map(Started::Helper)
            .map_err(|e| RuntimeError(format!("exec helper: {e}")))
    }
}

/// Rewrites the parts of an OCI config that youki 0.7 reads differently
/// from runc, so that both runtimes run the same spec the same way.
fn patch_config(path: &Path) -> Result<()> {
    // Once per bundle: swapping twice would undo it.
    let marker = path.with_file_name("config.youki-patched");
    if marker.exists() {
        return Ok(());
    }
    let data = std::fs::read(path).map_err(|e| RuntimeError(format!("{}: {e}", path.display())))?;
    let mut spec: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| RuntimeError(format!("{}: {e}", path.display())))?;
    if youki_compat(&mut spec) {
        let out = serde_json::to_vec(&spec).map_err(|e| RuntimeError(e.to_string()))?;
        vordr_fsmode::write_private(path, &out)
            .map_err(|e| RuntimeError(format!("{}: {e}", path.display())))?;
    }
    std::fs::write(&marker, b"").map_err(|e| RuntimeError(format!("{}: {e}", marker.display())))?;
    Ok(())
}

/// Returns whether it changed anything:
/// - `process.noNewPrivileges: false` is dropped: youki treats a present
///   `false` as set and then loads seccomp after dropping CAP_SYS_ADMIN,
///   which the kernel refuses;
/// - rootfsPropagation "rshared"/"rslave"/"rprivate" (containerd's values,
///   which runc accepts) become "shared"/"slave"/"private": youki refuses the
///   r-forms and always applies them recursively;
/// - seccomp SCMP_CMP_MASKED_EQ arguments: runc reads `value` as the mask
///   and `valueTwo` as the datum, youki the other way round, so they swap.
pub fn youki_compat(spec: &mut serde_json::Value) -> bool {
    let mut changed = false;
    if let Some(process) = spec.get_mut("process").and_then(|p| p.as_object_mut()) {
        if process.get("noNewPrivileges") == Some(&serde_json::Value::Bool(false)) {
            process.remove("noNewPrivileges");
            changed = true;
        }
    }
    if let Some(p) = spec.pointer_mut("/linux/rootfsPropagation") {
        if let Some(s) = p.as_str().and_then(|s| s.strip_prefix('r')) {
            if ["shared", "slave", "private"].contains(&s) {
                *p = serde_json::Value::String(s.to_string());
                changed = true;
            }
        }
    }
    if let Some(syscalls) = spec
        .pointer_mut("/linux/seccomp/syscalls")
        .and_then(|v| v.as_array_mut())
    {
        for sc in syscalls {
            let Some(args) = sc.get_mut("args").and_then(|a| a.as_array_mut()) else {
                continue;
            };
            for a in args {
                if a.get("op").and_then(|o| o.as_str()) != Some("SCMP_CMP_MASKED_EQ") {
                    continue;
                }
                let value = a.get("value").cloned().unwrap_or(serde_json::json!(0));
                let two = a.get("valueTwo").cloned().unwrap_or(serde_json::json!(0));
                a["value"] = two;
                a["valueTwo"] = value;
                changed = true;
            }
        }
    }
    changed
}

/// `containerd-shim-vordr-v1 __youki-create ROOT ID BUNDLE PID_FILE ERR_FILE [CONSOLE_SOCKET]`:
/// runs single-threaded, before anything else in the binary.
pub fn youki_create_main(args: &[String]) -> i32 {
    let [root, id, bundle, pid_file, err_file, rest @ ..] = args else {
        eprintln!("usage: {CREATE_VERB} ROOT ID BUNDLE PID_FILE ERR_FILE [CONSOLE_SOCKET]");
        return 2;
    };
    let console = rest.first().map(PathBuf::from);
    // libcontainer says what went wrong through tracing: into the error file
    // (stderr is the container's).
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(err_file)
    {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(f))
            .with_max_level(tracing::Level::ERROR)
            .with_ansi(false)
            .without_time()
            .try_init();
    }
    let systemd =
        libcontainer::oci_spec::runtime::Spec::load(Path::new(bundle).join("config.json"))
            .ok()
            .and_then(|s| s.linux().as_ref()?.cgroups_path().clone())
            .is_some_and(|p| crate::cgroup::is_systemd(&p));
    let res = ContainerBuilder::new(id.clone(), SyscallType::default())
        .with_root_path(root)
        .and_then(|b| b.with_pid_file(Some(pid_file)))
        .map(|b| b.with_console_socket(console))
        .and_then(|b| b.validate_id())
        .and_then(|b| {
            b.as_init(bundle)
                .with_systemd(systemd)
                .with_detach(true)
                .build()
        });
    match res {
        Ok(_) => 0,
        Err(e) => {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(err_file)
            {
                let _ = writeln!(f, "{e}");
            }
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::youki_compat;

    #[test]
    fn rewrites_what_youki_reads_differently() {
        let mut spec = serde_json::json!({
            "process": {"noNewPrivileges": false},
            "linux": {
                "rootfsPropagation": "rshared",
                "seccomp": {"syscalls": [
                    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
                ]}
            }
        });
        assert!(youki_compat(&mut spec));
        assert!(spec["process"].get("noNewPrivileges").is_none());
        assert_eq!(spec["linux"]["rootfsPropagation"], "shared");
        let clone = &spec["linux"]["seccomp"]["syscalls"][0]["args"][0];
        assert_eq!(
            (clone["value"].as_u64(), clone["valueTwo"].as_u64()),
            (Some(0), Some(2114060288))
        );
        let p = &spec["linux"]["seccomp"]["syscalls"][1]["args"][0];
        assert_eq!(p["value"], 8);
        let mut plain = serde_json::json!({
            "process": {"noNewPrivileges": true},
            "linux": {"rootfsPropagation": "slave"}
        });
        assert!(!youki_compat(&mut plain));
    }
}
