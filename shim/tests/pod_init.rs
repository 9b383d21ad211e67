//! `containerd-shim-vordr-v1 __pod-init` end to end (as root): the init it
//! starts is confined like a pause container, ends on SIGTERM, and its
//! failures come back as messages with no pid printed.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use vordr_shim_api::POD_INIT_VERB;

#[test]
fn pod_init_starts_a_confined_init() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_containerd-shim-vordr-v1"));
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": [
            "write", "close", "rt_sigprocmask", "rt_sigtimedwait", "wait4", "waitid",
            "exit", "exit_group", "brk", "mmap", "munmap", "madvise", "sigaltstack",
            "rt_sigreturn", "restart_syscall", "futex"
        ], "action": "SCMP_ACT_ALLOW"}]
    });
    let run = |extra: &[&str], stdin: &[u8]| {
        let mut cmd = std::process::Command::new(exe);
        cmd.arg(POD_INIT_VERB)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // A careless parent: a directory of the host leaked to the verb.
        // SAFETY: only open(2) in the child.
        unsafe {
            cmd.pre_exec(|| {
                if libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        // A verb that refuses its arguments does not read its stdin.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child.wait_with_output().unwrap()
    };
    let profile = serde_json::to_vec(&profile).unwrap();
    let out = run(&["--uid", "4321", "--gid", "8765"], &profile);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid"), "4321 4321 4321 4321");
    assert_eq!(field("Gid"), "8765 8765 8765 8765");
    assert_eq!(field("Groups"), "");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");
    assert_eq!(field("NSpid").split(' ').nth(1), Some("1"), "{status}");
    // Nothing but stdio (on /dev/null) is open in it: not the leaked fd.
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"]);
    for fd in 0..3 {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap(),
            std::path::Path::new("/dev/null")
        );
    }
    // Its root is an empty tmpfs; its network namespace the host's.
    let root: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/root"))
        .unwrap()
        .collect();
    assert!(root.is_empty(), "{root:?}");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        std::fs::read_link("/proc/self/ns/mnt").unwrap()
    );
    // SIGTERM ends it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "the init ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Failures: a bad namespace path, no profile, a bad profile.
    let out = run(
        &["--uid", "1", "--gid", "1", "--net", "/no/such/ns"],
        &profile,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("network namespace /no/such/ns"), "{err}");
    let out = run(&["--uid", "1", "--gid", "1"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("seccomp profile"));
    // A file that is not a namespace: setns fails after the checks, in
    // the verb; its message comes back.
    let out = run(
        &["--uid", "1", "--gid", "1", "--ipc", "/dev/null"],
        &profile,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("joining the pod's IPC namespace"), "{err}");
    // A failure in the init itself (a profile libseccomp refuses is
    // caught after the fork): the verb reports it and prints no pid.
    let bad = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["write"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    });
    let out = run(
        &["--uid", "1", "--gid", "1"],
        &serde_json::to_vec(&bad).unwrap(),
    );
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seccomp"), "{err}");
}
