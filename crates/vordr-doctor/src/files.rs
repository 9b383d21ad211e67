//! Vordr's own files: its root, run and socket directories (there, owned
//! by root, nobody else may write), the socket, the free space under the
//! root directory, and the registries configuration the daemon loads.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use vordr_config::Config;
use vordr_fsmode::{PRIVATE_SOCKET, TRAVERSE_DIR};
use vordr_image::registries::RegistriesConf;
use vordr_install::files::Root;

use crate::{Check, Probes, Space};

/// Below this much free space under the root directory, pulls fail.
pub const SPACE_MISSING: u64 = 256 << 20;
/// Below this much (or [`SPACE_WARN_PERCENT`]), it is worth a look.
pub const SPACE_WARN: u64 = 2 << 30;
pub const SPACE_WARN_PERCENT: u64 = 10;

pub fn checks(root: &Root, config: &Config, probes: &dyn Probes) -> Vec<Check> {
    let s = &config.server;
    let mut out = vec![
        directory(root, "root-dir", &s.root),
        directory(root, "run-dir", &s.run_dir),
    ];
    if let Some(dir) = s
        .socket
        .parent()
        .filter(|d| *d != s.run_dir && *d != s.root)
    {
        out.push(directory(root, "socket-dir", dir));
    }
    out.push(socket(root, &s.socket));
    out.push(disk_space(root, &s.root, probes));
    out.push(registries(root, &s.registries_config));
    out
}

fn octal(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// An ancestor of `dir` others may write to without the sticky bit (they
/// could swap the directory below it).
fn open_ancestor(root: &Root, dir: &Path) -> Option<(PathBuf, u32)> {
    dir.ancestors().skip(1).find_map(|a| {
        let m = std::fs::metadata(root.resolve(a)).ok()?;
        let mode = m.mode();
        (mode & 0o022 != 0 && mode & 0o1000 == 0).then(|| (a.to_path_buf(), mode))
    })
}

fn directory(root: &Root, name: &str, dir: &Path) -> Check {
    let shown = dir.display();
    let fix_mode = format!(
        "chown root:root {shown} && chmod {} {shown}",
        octal(TRAVERSE_DIR)
    );
    if let Some((a, mode)) = open_ancestor(root, dir) {
        return Check::missing(
            name,
            format!(
                "{} above {shown} is {} (others may write it, no sticky bit): they could \
                 replace Vordr's state",
                a.display(),
                octal(mode)
            ),
            format!("chmod go-w {}", a.display()),
        );
    }
    let m = match std::fs::symlink_metadata(root.resolve(dir)) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::warning(
                name,
                format!(
                    "{shown} is not there yet (vordr serve makes it, {})",
                    octal(TRAVERSE_DIR)
                ),
                "systemctl start vordr (or vordr serve)",
            )
        }
        Err(e) => return Check::missing(name, format!("{shown}: {e}"), fix_mode),
    };
    if !m.is_dir() {
        return Check::missing(
            name,
            format!("{shown} is not a directory"),
            format!("move {shown} away; vordr serve makes the directory"),
        );
    }
    let (uid, mode) = (m.uid(), m.mode() & 0o7777);
    if uid != 0 || mode & 0o022 != 0 {
        return Check::missing(
            name,
            format!(
                "{shown} is owned by uid {uid}, mode {}: only root may own and write it",
                octal(mode)
            ),
            fix_mode,
        );
    }
    if mode != TRAVERSE_DIR {
        return Check::warning(
            name,
            format!(
                "{shown} is {} (vordr serve sets {} at its next start)",
                octal(mode),
                octal(TRAVERSE_DIR)
            ),
            fix_mode,
        );
    }
    Check::ok(name, format!("{shown}, root, {}", octal(mode)))
}

fn socket(root: &Root, path: &Path) -> Check {
    const NAME: &str = "socket";
    let shown = path.display();
    let m = match std::fs::symlink_metadata(root.resolve_parent(path)) {
        Ok(m) => m,
        Err(_) => return Check::ok(NAME, format!("{shown} is not there (Vordr is not running)")),
    };
    if !m.file_type().is_socket() {
        return Check::missing(
            NAME,
            format!("{shown} is not a socket: vordr serve cannot listen there"),
            format!("rm {shown}"),
        );
    }
    let (uid, mode) = (m.uid(), m.mode() & 0o7777);
    if uid != 0 || mode & 0o077 != 0 {
        return Check::missing(
            NAME,
            format!(
                "{shown} is owned by uid {uid}, mode {}: whoever reaches it runs containers as \
                 root",
                octal(mode)
            ),
            format!(
                "chown root:root {shown} && chmod {} {shown} (vordr serve sets it when it \
                 starts)",
                octal(PRIVATE_SOCKET)
            ),
        );
    }
    Check::ok(NAME, format!("{shown}, root, {}", octal(mode)))
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// How much free space under the root directory is enough.
pub fn judge_space(dir: &Path, s: Space) -> Check {
    const NAME: &str = "disk-space";
    let percent = (s.available as u128 * 100)
        .checked_div(s.total as u128)
        .unwrap_or(0) as u64;
    let detail = format!(
        "{} free of {} ({percent}%) under {}",
        gib(s.available),
        gib(s.total),
        dir.display()
    );
    let fix = format!(
        "free space on the filesystem of {} (crictl rmi --prune removes unused images), or \
         move [server] root to a larger one",
        dir.display()
    );
    if s.available < SPACE_MISSING {
        Check::missing(
            NAME,
            format!("{detail}: image pulls and new containers fail"),
            fix,
        )
    } else if s.available < SPACE_WARN || percent < SPACE_WARN_PERCENT {
        Check::warning(
            NAME,
            format!("{detail}: kubelet starts evicting pods soon"),
            fix,
        )
    } else {
        Check::ok(NAME, detail)
    }
}

fn disk_space(root: &Root, dir: &Path, probes: &dyn Probes) -> Check {
    // The root directory may not exist yet: its nearest ancestor that does
    // is the filesystem it will be made on.
    let here = dir
        .ancestors()
        .map(|a| root.resolve(a))
        .find(|p| p.exists())
        .unwrap_or_else(|| root.dir().to_path_buf());
    match probes.free_space(&here) {
        Ok(s) => judge_space(dir, s),
        Err(e) => Check::warning(
            "disk-space",
            format!("statvfs {}: {e}", here.display()),
            format!("df -h {}", dir.display()),
        ),
    }
}

fn registries(root: &Root, path: &Path) -> Check {
    const NAME: &str = "registries";
    let shown = path.display();
    match std::fs::read_to_string(root.resolve(path)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::ok(
            NAME,
            format!("no {shown}: the defaults (no mirrors, fully qualified image names)"),
        ),
        Err(e) => Check::missing(
            NAME,
            format!("{shown}: {e}: vordr serve cannot load it"),
            format!("chmod 0644 {shown}"),
        ),
        Ok(text) => match RegistriesConf::parse(&text, &shown.to_string()) {
            Ok(c) => Check::ok(
                NAME,
                format!(
                    "{shown} parses: {} [[registry]] entries",
                    c.registries.len()
                ),
            ),
            Err(e) => Check::missing(
                NAME,
                format!("{e}: vordr serve does not start with it"),
                format!("fix {shown} (containers-registries.conf v2)"),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::testing::*;
    use crate::Status;

    fn mkdir(root: &Path, p: &str, mode: u32) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn directories_are_there_owned_by_root_and_not_writable_by_others() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let d = Path::new("/var/lib/vordr");
        mkdir(t.path(), "/var/lib", 0o755);
        let c = directory(&r, "root-dir", d);
        assert_eq!(c.status, Status::Warning, "{c:?}");
        assert!(c.detail.contains("not there yet"), "{c:?}");
        mkdir(t.path(), "/var/lib/vordr", 0o711);
        if nix::unistd::geteuid().is_root() {
            assert_eq!(directory(&r, "root-dir", d).status, Status::Ok);
            mkdir(t.path(), "/var/lib/vordr", 0o755);
            assert_eq!(directory(&r, "root-dir", d).status, Status::Warning);
            mkdir(t.path(), "/var/lib/vordr", 0o777);
            let c = directory(&r, "root-dir", d);
            assert_eq!(c.status, Status::Missing, "{c:?}");
            assert_eq!(
                c.fix.as_deref(),
                Some("chown root:root /var/lib/vordr && chmod 0711 /var/lib/vordr")
            );
            mkdir(t.path(), "/var/lib/vordr", 0o711);
            std::os::unix::fs::chown(t.path().join("var/lib/vordr"), Some(1000), None).unwrap();
            let c = directory(&r, "root-dir", d);
            assert_eq!(c.status, Status::Missing, "{c:?}");
            assert!(c.detail.contains("uid 1000"), "{c:?}");
            std::os::unix::fs::chown(t.path().join("var/lib/vordr"), Some(0), None).unwrap();
        }
        // A parent others may write without the sticky bit.
        mkdir(t.path(), "/var/lib", 0o777);
        let c = directory(&r, "root-dir", d);
        assert_eq!(c.status, Status::Missing, "{c:?}");
        assert_eq!(c.fix.as_deref(), Some("chmod go-w /var/lib"));
        mkdir(t.path(), "/var/lib", 0o1777);
        assert_ne!(directory(&r, "root-dir", d).status, Status::Missing);
        // Not a directory.
        mkdir(t.path(), "/run", 0o755);
        put(t.path(), "/run/vordr", "");
        assert_eq!(
            directory(&r, "run-dir", Path::new("/run/vordr")).status,
            Status::Missing
        );
    }

    #[test]
    fn the_socket_is_root_s_alone() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let s = Path::new("/run/vordr/vordr.sock");
        assert_eq!(socket(&r, s).status, Status::Ok);
        mkdir(t.path(), "/run/vordr", 0o711);
        let here = t.path().join("run/vordr/vordr.sock");
        let _l = std::os::unix::net::UnixListener::bind(&here).unwrap();
        std::fs::set_permissions(&here, std::fs::Permissions::from_mode(0o600)).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert_eq!(socket(&r, s).status, Status::Ok);
        }
        std::fs::set_permissions(&here, std::fs::Permissions::from_mode(0o666)).unwrap();
        let c = socket(&r, s);
        assert_eq!(c.status, Status::Missing, "{c:?}");
        assert!(c.detail.contains("0666"), "{c:?}");
        drop(_l);
        std::fs::remove_file(&here).unwrap();
        put(t.path(), "/run/vordr/vordr.sock", "");
        assert_eq!(socket(&r, s).status, Status::Missing);
    }

    #[test]
    fn free_space_thresholds() {
        let d = Path::new("/var/lib/vordr");
        let at = |available: u64, total: u64| judge_space(d, Space { available, total }).status;
        assert_eq!(at(100 << 20, 100 << 30), Status::Missing);
        assert_eq!(at(1 << 30, 100 << 30), Status::Warning);
        assert_eq!(at(5 << 30, 100 << 30), Status::Warning, "5%");
        assert_eq!(at(20 << 30, 100 << 30), Status::Ok);
        assert_eq!(at(0, 0), Status::Missing);
        // The fake probes' answer is used, on the root's nearest directory.
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let tight = Fake {
            space: Space {
                available: 1 << 20,
                total: 1 << 30,
            },
            ..Fake::default()
        };
        let c = disk_space(&r, d, &tight);
        assert_eq!(c.status, Status::Missing, "{c:?}");
        assert!(
            c.detail.starts_with("0.0 GiB free of 1.0 GiB (0%)"),
            "{c:?}"
        );
    }

    #[test]
    fn registries_config_parses_or_is_missing() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let p = Path::new("/etc/containers/registries.conf");
        assert_eq!(registries(&r, p).status, Status::Ok);
        put(
            t.path(),
            "/etc/containers/registries.conf",
            "[[registry]]\nprefix = \"docker.io\"\n[[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\n",
        );
        let c = registries(&r, p);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("1 [[registry]]"), "{c:?}");
        put(
            t.path(),
            "/etc/containers/registries.conf",
            "[[registry]]\nprefix = 3\n",
        );
        let c = registries(&r, p);
        assert_eq!(c.status, Status::Missing, "{c:?}");
    }
}
