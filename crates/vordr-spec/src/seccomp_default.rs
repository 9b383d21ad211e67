//! containerd's default seccomp profile: everything not listed fails with
//! EPERM; a fixed allow list; a few syscalls allowed only with the capability
//! that makes them useful; namespace-creating `clone` flags refused (and
//! `clone3` reported as missing) unless the container has CAP_SYS_ADMIN.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};

/// Syscalls every container may make.
const ALWAYS_ALLOWED: &[&str] = &[
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// `personality(2)` personas allowed: PER_LINUX, PER_LINUX32, UNAME26,
/// PER_LINUX32|UNAME26 and the 0xffffffff query.
const PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Syscalls allowed when the bounding set holds the capability.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
/// | CLONE_NEWNET | CLONE_NEWCGROUP.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// The default profile for containerd's 14 default capabilities.
pub fn default_seccomp() -> LinuxSeccomp {
    default_seccomp_for(&crate::default_capabilities())
}

/// The default profile for a container whose bounding set is `caps`
/// ("CAP_…" names): what containerd's `WithDefaultProfile` produces.
pub fn default_seccomp_for(caps: &[String]) -> LinuxSeccomp {
    let mut syscalls = vec![allow(ALWAYS_ALLOWED)];
    for persona in PERSONALITIES {
        syscalls.push(allow_if(
            "personality",
            0,
            *persona,
            LinuxSeccompOperator::ScmpCmpEq,
        ));
    }
    if kernel_at_least(4, 8) {
        // Before 4.8 ptrace could bypass seccomp.
        syscalls.push(allow(&["ptrace"]));
    }
    let arch_specific = arch_syscalls();
    if !arch_specific.is_empty() {
        syscalls.push(allow(arch_specific));
    }
    for cap in caps {
        if let Some((_, names)) = BY_CAPABILITY.iter().find(|(c, _)| c == cap) {
            syscalls.push(allow(names));
        }
    }
    if !caps.iter().any(|c| c == "CAP_SYS_ADMIN") {
        // clone may not create namespaces; the flags are argument 1 on s390.
        let flags_arg = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        // OCI/runc reading of SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo,
        // valueTwo left out (0) exactly as containerd writes it.
        syscalls.push(allow_if(
            "clone",
            flags_arg,
            CLONE_NAMESPACE_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        ));
        // clone3's flags cannot be inspected: make libcs fall back to clone.
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".to_string()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        syscalls.push(clone3);
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_architectures(Some(architectures()));
    profile.set_syscalls(Some(syscalls));
    profile
}

fn allow(names: &[&str]) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.iter().map(|n| n.to_string()).collect());
    rule.set_action(LinuxSeccompAction::ScmpActAllow);
    rule
}

fn allow_if(name: &str, index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSyscall {
    let mut rule = allow(&[name]);
    match LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
    {
        Ok(arg) => rule.set_args(Some(vec![arg])),
        // Cannot happen (every field is set); fail closed all the same.
        Err(_) => rule.set_action(LinuxSeccompAction::ScmpActErrno),
    };
    rule
}

/// The ABIs the filter covers on this build's architecture.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
    } else if cfg!(target_arch = "s390x") {
        vec![Arch::ScmpArchS390, Arch::ScmpArchS390x]
    } else if cfg!(target_arch = "riscv64") {
        vec![Arch::ScmpArchRiscv64]
    } else {
        Vec::new()
    }
}

/// Extra syscalls allowed on this build's architecture.
fn arch_syscalls() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["arch_prctl", "modify_ldt"]
    } else if cfg!(target_arch = "x86") {
        &["modify_ldt"]
    } else if cfg!(target_arch = "aarch64") || cfg!(target_arch = "arm") {
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ]
    } else if cfg!(target_arch = "powerpc64") {
        &["sync_file_range2", "swapcontext"]
    } else if cfg!(target_arch = "s390x") {
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ]
    } else if cfg!(target_arch = "riscv64") {
        &["riscv_flush_icache"]
    } else {
        &[]
    }
}

/// Whether the running kernel is at least `major.minor` (false if unknown).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| parse_release(&r))
        .is_some_and(|v| v >= (major, minor))
}

/// "6.1.0-18-amd64" → (6, 1).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `name` with no argument constraints is allowed.
    fn allowed(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().iter().flatten().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().as_ref().is_none_or(|a| a.is_empty())
                && s.names().iter().any(|n| n == name)
        })
    }

    fn mentioned(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls()
            .iter()
            .flatten()
            .any(|s| s.names().iter().any(|n| n == name))
    }

    #[test]
    fn errno_by_default_and_common_syscalls_allowed() {
        let p = default_seccomp();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), None);
        assert_eq!(ALWAYS_ALLOWED.len(), 356);
        for name in [
            "read",
            "write",
            "openat",
            "close",
            "mmap",
            "execve",
            "futex",
            "epoll_wait",
            "socket",
            "connect",
            "exit_group",
            "rt_sigreturn",
            "getrandom",
            "clock_gettime",
            "chroot",
        ] {
            assert!(allowed(&p, name), "{name} should be allowed");
        }
        if cfg!(target_arch = "x86_64") {
            assert!(allowed(&p, "arch_prctl"));
            assert_eq!(
                p.architectures().as_deref(),
                Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
            );
        }
    }

    #[test]
    fn dangerous_syscalls_refused_without_capabilities() {
        let p = default_seccomp();
        for name in [
            "kexec_load",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "bpf",
            "perf_event_open",
            "open_by_handle_at",
            "acct",
            "settimeofday",
            "iopl",
            "keyctl",
            "add_key",
            "swapon",
            "pivot_root",
            "userfaultfd",
            "process_vm_readv",
        ] {
            assert!(!allowed(&p, name), "{name} should not be allowed");
        }
        // clone is allowed only without namespace flags; clone3 gets ENOSYS.
        let clone = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone".to_string()])
            .expect("clone rule");
        let arg = clone
            .args()
            .as_ref()
            .and_then(|a| a.first())
            .copied()
            .expect("arg");
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), 0x7e02_0000);
        assert_eq!(arg.value_two(), None);
        let clone3 = p
            .syscalls()
            .iter()
            .flatten()
            .find(|s| s.names() == &["clone3".to_string()])
            .expect("clone3 rule");
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
    }

    #[test]
    fn personality_rules() {
        let p = default_seccomp();
        let values: Vec<u64> = p
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names() == &["personality".to_string()])
            .filter_map(|s| s.args().as_ref().and_then(|a| a.first()).map(|a| a.value()))
            .collect();
        assert_eq!(values, PERSONALITIES);
        assert!(!allowed(&p, "personality"));
    }

    #[test]
    fn capabilities_unlock_syscalls() {
        let caps: Vec<String> = ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_TIME"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let p = default_seccomp_for(&caps);
        for name in [
            "mount",
            "unshare",
            "clone",
            "clone3",
            "process_vm_readv",
            "clock_settime",
        ] {
            assert!(allowed(&p, name), "{name}");
        }
        assert!(!allowed(&p, "kexec_load"));
        assert!(!allowed(&p, "reboot"));
        // With CAP_SYS_ADMIN there is no clone3 ENOSYS rule.
        assert!(!p
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.action() == LinuxSeccompAction::ScmpActErrno));
        let none = default_seccomp_for(&[]);
        assert!(!mentioned(&none, "chroot"));
        assert!(mentioned(&none, "clone3"));
    }

    #[test]
    fn release_parsing() {
        assert_eq!(parse_release("6.18.44-fc-v782\n"), Some((6, 18)));
        assert_eq!(parse_release("4.8.0"), Some((4, 8)));
        assert_eq!(parse_release("garbage"), None);
        assert_eq!(
            kernel_at_least(0, 0),
            parse_release(
                &std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
            )
            .is_some()
        );
    }
}
