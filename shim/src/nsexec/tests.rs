//! Tests of [`exec_in_container`]: bad specs refused, real execs into a container stand-in.

use super::*;
use serde_json::{json, Value};
use std::ffi::CString;
use std::io;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[test]
fn nsexec_rejects_bad_specs_before_touching_anything() {
    let devnull = || OwnedFd::from(File::open("/dev/null").unwrap());
    let spec = |process: Value, seccomp: Option<Value>, init_pid: i32| ExecSpec {
        init_pid,
        process: serde_json::from_value(process).unwrap(),
        seccomp: seccomp.map(|s| serde_json::from_value(s).unwrap()),
        console: None,
    };
    let base = || json!({"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/"});

    let mut no_args = base();
    no_args["args"] = json!([]);
    let err = exec_in_container(&spec(no_args, None, 1), devnull()).unwrap_err();
    assert!(matches!(err, NsExecError::InvalidSpec(_)), "{err}");

    let mut bad_env = base();
    bad_env["env"] = json!(["NOEQUALS"]);
    let err = exec_in_container(&spec(bad_env, None, 1), devnull()).unwrap_err();
    assert!(matches!(err, NsExecError::InvalidSpec(_)), "{err}");

    let notify = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]});
    let err = exec_in_container(&spec(base(), Some(notify), 1), devnull()).unwrap_err();
    assert!(matches!(err, NsExecError::Unsupported(_)), "{err}");

    let err = exec_in_container(&spec(base(), None, 0), devnull()).unwrap_err();
    assert!(matches!(err, NsExecError::InvalidSpec(_)), "{err}");

    // Above any pid_max: no such process.
    let err = exec_in_container(&spec(base(), None, 0x3fff_ffff), devnull()).unwrap_err();
    assert!(
        matches!(
            err,
            NsExecError::Init {
                pid: 0x3fff_ffff,
                ..
            }
        ),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------
// Real execs. The test binary re-executes itself as the exec helper; the helper runs from an
// .init_array constructor, i.e. before main and before the test harness starts any thread
// (setns(CLONE_NEWUSER) fails with EINVAL in a multi-threaded process).

const HELPER_ENV: &str = "VORDR_NSEXEC_TEST_HELPER";
/// The helper's exit code when exec_in_container returned an error.
const HELPER_FAILED: i32 = 250;
/// Where the helper finds its pid_report, and a second, deliberately leaked copy of it that
/// the exec'd process must not see.
const REPORT_FD: RawFd = 7;
const LEAKED_FD: RawFd = 9;
const TARGET_HOSTNAME: &str = "vordr-nsexec-target";
/// The target's user namespace maps its 0..65536 to these host ids.
const HOST_ID_BASE: u32 = 100_000;

#[used]
#[link_section = ".init_array"]
static RUN_HELPER_BEFORE_MAIN: extern "C" fn() = helper_before_main;

#[derive(serde::Serialize, serde::Deserialize)]
struct HelperSpec {
    init_pid: i32,
    process: Process,
    seccomp: Option<LinuxSeccomp>,
}

extern "C" fn helper_before_main() {
    let Ok(json) = std::env::var(HELPER_ENV) else {
        return;
    };
    let code = match serde_json::from_str::<HelperSpec>(&json) {
        Ok(h) => {
            // SAFETY: the test set this fd up for us (see spawn_exec).
            let report = unsafe { OwnedFd::from_raw_fd(REPORT_FD) };
            let spec = ExecSpec {
                init_pid: h.init_pid,
                process: h.process,
                seccomp: h.seccomp,
                console: None,
            };
            match exec_in_container(&spec, report) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("nsexec helper: {e}");
                    HELPER_FAILED
                }
            }
        }
        Err(e) => {
            eprintln!("nsexec helper: bad spec: {e}");
            HELPER_FAILED
        }
    };
    std::process::exit(code);
}

fn is_root() -> bool {
    // SAFETY: trivial syscall.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: needs root (user namespaces mapped to host ids, cgroups)");
    }
    root
}

fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn ns_link(pid: impl std::fmt::Display, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
}

fn wait_for(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what}: unshare exited early with {status}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A container stand-in: `unshare` with new user (0..65536 -> host 100000.., written by us:
/// `--map-users` would need newuidmap), pid, mount, uts, ipc and net namespaces and its own
/// /proc, running `sleep` as pid 1. Its mount namespace is a copy of the host's, so host
/// binaries work inside.
struct Target {
    unshare: Child,
    init_pid: i32,
    cgroups: CgroupDirs,
}

/// Test cgroups, removed on drop (after Target::drop has killed their processes).
struct CgroupDirs(Vec<PathBuf>);

impl CgroupDirs {
    /// Fresh test cgroups: pids, plus cgroup2 when it is mounted; a plain cgroup2 directory on a
    /// pure v2 host.
    fn create() -> CgroupDirs {
        let mut cgroups = CgroupDirs(Vec::new());
        let name = format!("vordr-nsexec-test-{}", unique());
        let parents: &[&str] = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            &["/sys/fs/cgroup"]
        } else if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
            &["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]
        } else {
            &["/sys/fs/cgroup/pids"]
        };
        for parent in parents {
            let dir = Path::new(parent).join(&name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            cgroups.0.push(dir);
        }
        cgroups
    }
}

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for dir in &self.0 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Err(e) = std::fs::remove_dir(dir) {
                if e.kind() == io::ErrorKind::NotFound || Instant::now() > deadline {
                    eprintln!("cleanup: rmdir {}: {e}", dir.display());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Target {
    /// `in_cgroup`: first move the target into fresh cgroups (pids, plus cgroup2 when it is
    /// mounted; a plain cgroup2 directory on a pure v2 host).
    fn start(in_cgroup: bool) -> Target {
        Target::start_with(in_cgroup, true)
    }

    /// `userns: false`: no user namespace (a container run by root without one).
    fn start_with(in_cgroup: bool, userns: bool) -> Target {
        let cgroups = if in_cgroup {
            CgroupDirs::create()
        } else {
            CgroupDirs(Vec::new())
        };
        let procs: Vec<CString> = cgroups
            .0
            .iter()
            .map(|d| {
                CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap()
            })
            .collect();
        let mut cmd = Command::new("unshare");
        if userns {
            cmd.arg("--user");
        }
        cmd.args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--mount-proc",
            "/bin/sleep",
            "600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        // SAFETY: only async-signal-safe calls (open/write/close/prctl) on data prepared
        // before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                for p in &procs {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                    let err = io::Error::last_os_error();
                    libc::close(fd);
                    if !ok {
                        return Err(err);
                    }
                }
                Ok(())
            });
        }
        let unshare = cmd.spawn().expect("spawn unshare (util-linux)");
        let upid = unshare.id();
        let mut target = Target {
            unshare,
            init_pid: 0,
            cgroups,
        };
        if userns {
            let our_userns = ns_link("self", "user");
            wait_for("unshare(CLONE_NEWUSER)", &mut target.unshare, || {
                std::fs::read_link(format!("/proc/{upid}/ns/user"))
                    .map(|l| l.to_string_lossy() != our_userns)
                    .unwrap_or(false)
            });
            for map in ["uid_map", "gid_map"] {
                std::fs::write(
                    format!("/proc/{upid}/{map}"),
                    format!("0 {HOST_ID_BASE} 65536\n"),
                )
                .unwrap_or_else(|e| panic!("write {map}: {e}"));
            }
        }
        let mut inner = 0;
        wait_for("the target's init", &mut target.unshare, || {
            let children = std::fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .unwrap_or_default();
            let Some(pid) = children.split_whitespace().next() else {
                return false;
            };
            inner = pid.parse().unwrap();
            std::fs::read_to_string(format!("/proc/{inner}/comm"))
                .map(|c| c.trim() == "sleep")
                .unwrap_or(false)
        });
        target.init_pid = inner;
        // Host root may set the hostname of the target's uts namespace without its user
        // namespace.
        let status = Command::new("nsenter")
            .args(["--target", &inner.to_string(), "--uts"])
            .args(["/bin/busybox", "hostname", TARGET_HOSTNAME])
            .status()
            .expect("spawn nsenter (util-linux)");
        assert!(status.success(), "nsenter hostname: {status}");
        target
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // Killing pid 1 of the pid namespace kills every exec'd process in it too.
        if self.init_pid > 0 {
            // SAFETY: plain kill.
            unsafe { libc::kill(self.init_pid, libc::SIGKILL) };
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// A process spec in config.json form, with a typical container capability set.
fn process(args: &[&str]) -> Value {
    let caps = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    json!({
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": true
    })
}

fn sh(script: &str) -> Value {
    process(&["/bin/busybox", "sh", "-c", script])
}

struct Exec {
    child: Child,
    report: Option<File>,
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn spawn_exec(target: &Target, process: Value, seccomp: Option<Value>, stdin: Stdio) -> Exec {
    let spec = HelperSpec {
        init_pid: target.init_pid,
        process: serde_json::from_value(process).expect("valid process json"),
        seccomp: seccomp.map(|s| serde_json::from_value(s).expect("valid seccomp json")),
    };
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let w = report_w.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(HELPER_ENV, serde_json::to_string(&spec).unwrap())
        // Should the constructor not take over, the harness only lists no test.
        .args(["--list", "--exact", "nsexec-helper-constructor-did-not-run"])
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only dup2/fcntl in the child.
    unsafe {
        cmd.pre_exec(move || {
            for fd in [REPORT_FD, LEAKED_FD] {
                if w == fd {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(w, fd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn the exec helper");
    drop(report_w);
    Exec {
        child,
        report: Some(File::from(report_r)),
    }
}

impl Exec {
    /// The pid the helper reports; None if it closed the report without one.
    fn read_pid(&mut self) -> Option<i32> {
        let mut file = self.report.take().expect("read_pid once");
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 30_000) };
        assert!(n == 1, "no pid report within 30s");
        let mut text = String::new();
        let mut byte = [0u8; 1];
        while file.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            text.push(byte[0] as char);
        }
        if text.is_empty() {
            return None;
        }
        Some(
            text.parse()
                .unwrap_or_else(|_| panic!("bad pid report {text:?}")),
        )
    }

    fn finish(self) -> Outcome {
        let pid = self.child.id() as i32;
        let child = self.child;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.expect("wait for the exec helper"),
            Err(_) => {
                // SAFETY: plain kill of our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("exec helper did not finish within 60s");
            }
        };
        let code = out
            .status
            .code()
            .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
        let outcome = Outcome {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_ne!(
            outcome.code, HELPER_FAILED,
            "exec_in_container failed: {}",
            outcome.stderr
        );
        outcome
    }
}

fn run(target: &Target, process: Value, seccomp: Option<Value>) -> Outcome {
    let mut exec = spawn_exec(target, process, seccomp, Stdio::null());
    let pid = exec.read_pid();
    let out = exec.finish();
    assert!(pid.is_some(), "no pid reported; stderr: {}", out.stderr);
    out
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

const NAMESPACE_NAMES: [&str; 8] = ["user", "ipc", "uts", "net", "pid", "mnt", "cgroup", "time"];

/// (a) + (b): root inside a user namespace that maps it to an unprivileged host id, in all
/// of the target's namespaces, and the reported pid is that process.
#[test]
fn nsexec_joins_the_targets_namespaces_and_is_not_host_root() {
    if !is_root() {
        return;
    }
    let target = Target::start(false);
    let script = "/bin/busybox id -u; /bin/busybox cat /proc/self/uid_map; \
                  for n in user ipc uts net pid mnt cgroup time; do \
                    /bin/busybox readlink /proc/self/ns/$n; done; \
                  /bin/busybox hostname; read x || true";
    let mut exec = spawn_exec(&target, sh(script), None, Stdio::piped());
    let pid = exec.read_pid().expect("a pid report");
    let mut stdout = BufReader::new(exec.child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..11 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        lines.push(line.trim().to_string());
    }

    // Seen from the host while it runs: the reported pid is the process, an unprivileged
    // host user, nested in the target's pid namespace.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_id = HOST_ID_BASE.to_string();
    assert_eq!(
        status_field(&status, "Uid"),
        [host_id.as_str(); 4].join(" "),
        "{status}"
    );
    assert_eq!(
        status_field(&status, "Gid"),
        [host_id.as_str(); 4].join(" ")
    );
    let nspid = status_field(&status, "NSpid");
    assert_eq!(nspid.split(' ').count(), 2, "NSpid {nspid}");
    for ns in NAMESPACE_NAMES {
        assert_eq!(
            ns_link(pid, ns),
            ns_link(target.init_pid, ns),
            "host view of {ns}"
        );
    }

    drop(exec.child.stdin.take());
    let out = exec.finish();
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);

    assert_eq!(lines[0], "0", "id -u inside");
    let uid_map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(uid_map, ["0", host_id.as_str(), "65536"], "uid_map inside");
    for (i, ns) in NAMESPACE_NAMES.iter().enumerate() {
        assert_eq!(lines[2 + i], ns_link(target.init_pid, ns), "{ns} namespace");
    }
    assert_ne!(ns_link("self", "user"), ns_link(target.init_pid, "user"));
    assert_ne!(ns_link("self", "pid"), ns_link(target.init_pid, "pid"));
    assert_eq!(lines[10], TARGET_HOSTNAME);
}

/// (c): the container's profile is applied, with and without no_new_privs (without it the
/// filter must be loaded while CAP_SYS_ADMIN is still there, even with no caps in the end).
#[test]
fn nsexec_applies_the_seccomp_profile() {
    if !is_root() {
        return;
    }
    let target = Target::start(false);
    // The target sees the host's filesystem: a scratch directory its root (host uid
    // 100000) may write to.
    let scratch = tempfile::Builder::new()
        .prefix("vordr-nsexec-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let dir = scratch.path().display().to_string();
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let script = |name: &str| {
        format!(
            "/bin/busybox mkdir {dir}/{name} && echo created; \
             /bin/busybox grep '^Seccomp:' /proc/self/status"
        )
    };

    let out = run(&target, sh(&script("free")), None);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "created\nSeccomp:\t0\n");

    let out = run(&target, sh(&script("nnp")), Some(profile.clone()));
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "Seccomp:\t2\n");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );

    let mut no_nnp = sh(&script("no-nnp"));
    no_nnp["noNewPrivileges"] = json!(false);
    no_nnp["capabilities"] =
        json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []});
    let out = run(&target, no_nnp, Some(profile));
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "Seccomp:\t2\n");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );

    // Nothing was created behind the filter's back.
    let out = run(&target, sh(&format!("/bin/busybox ls {dir}")), None);
    assert_eq!(out.stdout, "free\n");
}

/// (d): exit codes and signals pass through; exec failures give 127 / 126; the PATH is the
/// process's.
#[test]
fn nsexec_passes_exit_codes_through() {
    if !is_root() {
        return;
    }
    let target = Target::start(false);
    assert_eq!(run(&target, sh("exit 7"), None).code, 7);
    assert_eq!(run(&target, sh("kill -9 $$"), None).code, 128 + 9);

    let out = run(&target, process(&["/no/such/binary"]), None);
    assert_eq!(out.code, 127);
    assert!(out.stderr.starts_with("vordr-nsexec: "), "{}", out.stderr);
    let out = run(&target, process(&["no-such-command-vordr"]), None);
    assert_eq!(out.code, 127);
    assert!(out.stderr.contains("not found in $PATH"), "{}", out.stderr);
    let out = run(&target, process(&["/etc/passwd"]), None);
    assert_eq!(out.code, 126, "stderr: {}", out.stderr);

    // `sh` is found through the process's PATH, not the helper's.
    let mut p = process(&["sh", "-c", "exit 5"]);
    assert_eq!(run(&target, p.clone(), None).code, 5);
    p["env"] = json!(["PATH=/nonexistent"]);
    let out = run(&target, p, None);
    assert_eq!(out.code, 127, "stderr: {}", out.stderr);
}

/// (e): capability sets, user, groups, umask and cwd are exactly the process's.
#[test]
fn nsexec_drops_to_the_process_user_and_capabilities() {
    if !is_root() {
        return;
    }
    let target = Target::start(false);
    let script = "/bin/busybox grep -E '^(Cap|Uid|Gid|Groups|NoNewPrivs)' /proc/self/status; \
                  umask; pwd";

    let mut p = sh(script);
    p["capabilities"] =
        json!({"bounding": [], "effective": [], "permitted": [], "inheritable": [], "ambient": []});
    let out = run(&target, p, None);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(&out.stdout, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), "1");
    assert_eq!(status_field(&out.stdout, "Uid"), "0 0 0 0");

    let mut p = sh(script);
    p["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027});
    p["cwd"] = json!("/tmp");
    p["noNewPrivileges"] = json!(false);
    let nbs = json!(["CAP_NET_BIND_SERVICE"]);
    p["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"],
        "effective": nbs, "permitted": nbs, "inheritable": nbs, "ambient": nbs
    });
    let out = run(&target, p, None);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(status_field(&out.stdout, "Uid"), "1000 1000 1000 1000");
    assert_eq!(status_field(&out.stdout, "Gid"), "1001 1001 1001 1001");
    assert_eq!(status_field(&out.stdout, "Groups"), "10 20");
    assert_eq!(status_field(&out.stdout, "CapBnd"), "0000000000000401");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(status_field(&out.stdout, cap), "0000000000000400", "{cap}");
    }
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), "0");
    assert!(out.stdout.ends_with("0027\n/tmp\n"), "{}", out.stdout);

    // A uid outside the user namespace's mapping is refused.
    let mut p = sh("true");
    p["user"] = json!({"uid": 70000, "gid": 0});
    let out = run(&target, p, None);
    assert_eq!(out.code, 127);
    assert!(out.stderr.contains("not mapped"), "{}", out.stderr);
}

/// rlimits (raising a hard limit needs host privileges), oom_score_adj (lowering it too),
/// the environment, and no leaked fds.
#[test]
fn nsexec_sets_rlimits_oom_score_env_and_closes_fds() {
    if !is_root() {
        return;
    }
    let mut memlock = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut memlock) },
        0
    );
    // With CAP_SYS_RESOURCE (not every sandbox grants it to root), check that the helper
    // applies rlimits and oom_score_adj while it still has host privileges: raise a hard
    // limit and lower the score, which nobody inside the user namespace could do.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = u64::from_str_radix(&status_field(&status, "CapEff"), 16).unwrap();
    let sys_resource = cap_eff & (1 << 24) != 0; // CAP_SYS_RESOURCE
    let (memlock_hard_kib, oom_score_adj) = if sys_resource {
        let kib = if memlock.rlim_max == libc::RLIM_INFINITY {
            1 << 30
        } else {
            memlock.rlim_max / 1024 * 2 + 1024
        };
        (kib, -7)
    } else {
        eprintln!("no CAP_SYS_RESOURCE: not raising a hard limit nor lowering oom_score_adj");
        let kib = if memlock.rlim_max == libc::RLIM_INFINITY {
            1 << 20
        } else {
            memlock.rlim_max / 1024
        };
        (kib, 123)
    };
    let target = Target::start(false);
    let mut p = sh("ulimit -n; ulimit -Hn; ulimit -Hl; /bin/busybox cat /proc/self/oom_score_adj");
    p["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
        {"type": "RLIMIT_MEMLOCK", "soft": 0, "hard": memlock_hard_kib * 1024}
    ]);
    p["oomScoreAdj"] = json!(oom_score_adj);
    let out = run(&target, p, None);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout,
        format!("100\n200\n{memlock_hard_kib}\n{oom_score_adj}\n")
    );

    // The process's environment only (deduplicated, HOME from the container's
    // /etc/passwd): nothing of the helper's.
    let mut p = process(&["/bin/busybox", "env"]);
    p["env"] = json!(["PATH=/usr/bin:/bin", "FOO=1", "HOME=", "FOO=2"]);
    let out = run(&target, p, None);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "PATH=/usr/bin:/bin\nFOO=2\nHOME=/root\n");
    let mut p = process(&["/bin/busybox", "env"]);
    p["user"] = json!({"uid": 4242, "gid": 4242});
    let out = run(&target, p, None);
    assert!(out.stdout.ends_with("\nHOME=/\n"), "{}", out.stdout);

    // 0, 1, 2 and ls's own directory fd: neither the report fd nor the leaked one.
    let out = run(
        &target,
        process(&["/bin/busybox", "ls", "/proc/self/fd"]),
        None,
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "0\n1\n2\n3\n");
}

/// (f): the exec joins the target's cgroups (created for the test, removed afterwards).
#[test]
fn nsexec_joins_the_targets_cgroups() {
    if !is_root() {
        return;
    }
    let target = Target::start(true);
    let out = run(&target, sh("/bin/busybox cat /proc/self/cgroup"), None);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for dir in &target.cgroups.0 {
        let name = dir.file_name().unwrap().to_string_lossy();
        let expect = if dir.starts_with("/sys/fs/cgroup/pids") {
            format!(":pids:/{name}")
        } else {
            format!("0::/{name}")
        };
        assert!(
            out.stdout.lines().any(|l| l.ends_with(&expect)),
            "want a line ending in {expect} in\n{}",
            out.stdout
        );
        assert!(
            !ours.contains(name.as_ref()),
            "the test itself is not in {name}"
        );
    }
    assert!(!target.cgroups.0.is_empty());
}

/// The helper forwards SIGTERM to the process and reports its death by it.
#[test]
fn nsexec_forwards_signals() {
    if !is_root() {
        return;
    }
    let target = Target::start(false);
    let mut exec = spawn_exec(
        &target,
        process(&["/bin/busybox", "sleep", "60"]),
        None,
        Stdio::null(),
    );
    let pid = exec.read_pid().expect("a pid report");
    // Wait for the execve so the signal meets busybox sleep, not our setup code.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
        != b"/bin/busybox\0sleep\x0060\0"
    {
        assert!(Instant::now() < deadline, "exec'd sleep did not show up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    // SAFETY: plain kill of our own child.
    assert_eq!(
        unsafe { libc::kill(exec.child.id() as i32, libc::SIGTERM) },
        0
    );
    let out = exec.finish();
    assert_eq!(out.code, 128 + libc::SIGTERM, "stderr: {}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A container without a user namespace: the helper stays host root until the child drops
/// to the process's user; stdio is handed to that user.
#[test]
fn nsexec_without_user_namespace_drops_host_root() {
    if !is_root() {
        return;
    }
    let target = Target::start_with(false, false);
    assert_eq!(ns_link("self", "user"), ns_link(target.init_pid, "user"));
    let mut p = sh(
        "/bin/busybox id -u; /bin/busybox grep '^CapEff:' /proc/self/status; \
                    /bin/busybox readlink /proc/self/ns/pid; \
                    echo reopened > /proc/self/fd/1",
    );
    p["user"] = json!({"uid": 1000, "gid": 1000});
    p["capabilities"] = json!({"bounding": [], "effective": [], "permitted": []});
    let out = run(&target, p, None);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "1000\nCapEff:\t0000000000000000\n{}\nreopened\n",
            ns_link(target.init_pid, "pid")
        )
    );
}
