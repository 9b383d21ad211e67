//! The host around Vordr: its clock and its security modules.

use std::path::Path;

use vordr_install::files::Root;

use crate::{Check, Probes};

/// The AppArmor profile Vordr puts RuntimeDefault containers in.
const APPARMOR_DEFAULT: &str = "vordr-default";

pub fn clock(probes: &dyn Probes) -> Check {
    const NAME: &str = "clock";
    let fix = "apt-get install systemd-timesyncd && systemctl enable --now systemd-timesyncd \
               (or chrony)";
    match probes.clock() {
        None => Check::skipped(
            NAME,
            "the host root is not /, so the running kernel's clock was not asked",
        ),
        Some(Err(e)) => Check::warning(NAME, e, fix),
        Some(Ok(c)) if c.synchronised => Check::ok(
            NAME,
            format!(
                "synchronised (adjtimex: maximum error {} ms)",
                c.max_error_us / 1000
            ),
        ),
        Some(Ok(_)) => Check::warning(
            NAME,
            "not synchronised (adjtimex reports no NTP discipline): registry TLS and kubelet's \
             certificates need the right time",
            fix,
        ),
    }
}

fn read(root: &Root, p: &str) -> Option<String> {
    std::fs::read_to_string(root.resolve(Path::new(p)))
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn security_modules(root: &Root) -> Vec<Check> {
    vec![apparmor(root), selinux(root)]
}

fn apparmor(root: &Root) -> Check {
    const NAME: &str = "apparmor";
    if read(root, "/sys/module/apparmor/parameters/enabled").as_deref() != Some("Y") {
        return Check::ok(
            NAME,
            "not enabled: containers that ask for an AppArmor profile other than Unconfined are \
             refused",
        );
    }
    let profiles = read(root, "/sys/kernel/security/apparmor/profiles").unwrap_or_default();
    let loaded = profiles.lines().any(|l| {
        l.rsplit_once(' ')
            .is_some_and(|(n, _)| n == APPARMOR_DEFAULT)
    });
    if loaded {
        Check::ok(NAME, format!("enabled; {APPARMOR_DEFAULT} loaded"))
    } else {
        Check::warning(
            NAME,
            format!(
                "enabled, but no profile {APPARMOR_DEFAULT} is loaded: containers with AppArmor \
                 RuntimeDefault are refused (FailedPrecondition)"
            ),
            format!(
                "write a profile named {APPARMOR_DEFAULT} to /etc/apparmor.d/{APPARMOR_DEFAULT} \
                 and apparmor_parser -r /etc/apparmor.d/{APPARMOR_DEFAULT}"
            ),
        )
    }
}

fn selinux(root: &Root) -> Check {
    const NAME: &str = "selinux";
    match read(root, "/sys/fs/selinux/enforce").as_deref() {
        None => Check::ok(
            NAME,
            "not enabled: containers that ask for SELinux options are refused",
        ),
        Some("1") => Check::ok(NAME, "enforcing"),
        Some(_) => Check::ok(NAME, "permissive"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{Clock, OfflineProbes, Status};

    #[test]
    fn clock_states() {
        let c = clock(&Fake::default());
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.starts_with("synchronised"), "{c:?}");
        let unsync = Fake {
            clock: Some(Ok(Clock {
                synchronised: false,
                max_error_us: 16_000_000,
            })),
            ..Fake::default()
        };
        let c = clock(&unsync);
        assert_eq!(c.status, Status::Warning);
        assert!(c.fix.unwrap().contains("timesyncd"));
        assert_eq!(clock(&OfflineProbes).status, Status::Skipped);
    }

    #[test]
    fn apparmor_and_selinux_states() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let [a, s] = <[Check; 2]>::try_from(security_modules(&r)).unwrap();
        assert_eq!((a.status, s.status), (Status::Ok, Status::Ok));
        assert!(a.detail.starts_with("not enabled") && s.detail.starts_with("not enabled"));
        put(t.path(), "/sys/module/apparmor/parameters/enabled", "Y\n");
        put(
            t.path(),
            "/sys/kernel/security/apparmor/profiles",
            "docker-default (enforce)\n",
        );
        let a = apparmor(&r);
        assert_eq!(a.status, Status::Warning, "{a:?}");
        put(
            t.path(),
            "/sys/kernel/security/apparmor/profiles",
            "docker-default (enforce)\nvordr-default (enforce)\n",
        );
        assert_eq!(apparmor(&r).status, Status::Ok);
        put(t.path(), "/sys/fs/selinux/enforce", "1");
        assert_eq!(selinux(&r).detail, "enforcing");
        put(t.path(), "/sys/fs/selinux/enforce", "0");
        assert_eq!(selinux(&r).detail, "permissive");
    }
}
