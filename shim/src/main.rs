//! containerd-shim-vordr-v1: the per-container shim of Vordr. It serves the
//! containerd task API over TTRPC, drives youki (or runc), writes the
//! container's CRI log, reaps its exit and outlives `vordr serve` restarts.

mod attach;
mod cgroup;
mod crilog;
mod exit;
mod nsexec;
mod podinit;
mod runtime;
mod shim;
mod task;
mod trim;

fn main() {
    // One malloc arena: a shim's few threads need no per-thread heaps.
    // SAFETY: called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let args: Vec<String> = std::env::args().collect();
    // Helper verbs run before any thread exists: libcontainer clones.
    match args.get(1).map(String::as_str) {
        Some(runtime::youki::CREATE_VERB) => {
            std::process::exit(runtime::youki_create_main(&args[2..]))
        }
        Some(runtime::youki::EXEC_VERB) => std::process::exit(nsexec_main(&args[2..])),
        Some(podinit::POD_INIT_VERB) => std::process::exit(podinit::pod_init_main(&args[2..])),
        _ => {}
    }
    let config = containerd_shim::Config {
        no_setup_logger: true,
        ..Default::default()
    };
    containerd_shim::run::<shim::VordrShim>("io.containerd.vordr.v1", Some(config));
}

/// `__exec INIT_PID PROCESS_JSON CONFIG_JSON PID_FILE`: joins the container
/// and runs the process; exits with its status.
fn nsexec_main(args: &[String]) -> i32 {
    let (init_pid, process, config, pid_file, console) = match args {
        [a, b, c, d] => (a, b, c, d, None),
        [a, b, c, d, e] => (a, b, c, d, Some(e)),
        _ => {
            eprintln!("usage: __exec INIT_PID PROCESS_JSON CONFIG_JSON PID_FILE [CONSOLE_SOCKET]");
            return 2;
        }
    };
    let run = || -> Result<i32, String> {
        use libcontainer::oci_spec::runtime::{Process, Spec};
        let init_pid: i32 = init_pid
            .parse()
            .map_err(|_| format!("bad pid {init_pid}"))?;
        let process: Process =
            serde_json::from_slice(&std::fs::read(process).map_err(|e| format!("{process}: {e}"))?)
                .map_err(|e| format!("{process}: {e}"))?;
        let spec = Spec::load(config).map_err(|e| format!("{config}: {e}"))?;
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        let report = std::fs::File::create(pid_file).map_err(|e| format!("{pid_file}: {e}"))?;
        // Connected now: the socket is out of reach once in the container.
        let console = match console {
            Some(path) => Some(
                std::os::unix::net::UnixStream::connect(path)
                    .map_err(|e| format!("console socket {path}: {e}"))?
                    .into(),
            ),
            None => None,
        };
        nsexec::exec_in_container(
            &nsexec::ExecSpec {
                init_pid,
                process,
                seccomp,
                console,
            },
            report.into(),
        )
        .map_err(|e| e.to_string())
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("exec: {e}");
            126
        }
    }
}
