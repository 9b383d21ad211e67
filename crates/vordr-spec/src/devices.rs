//! Device nodes (`linux.devices`) and the devices cgroup rules.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use k8s_cri::v1::ContainerConfig;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use crate::{invalid, io_error, SpecError};

/// Directories of the host's /dev that are not walked for devices.
const SKIPPED_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Devices and cgroup rules from the CRI `devices` list.
#[derive(Debug, Default)]
pub(crate) struct Devices {
    pub devices: Vec<LinuxDevice>,
    pub cgroup_rules: Vec<LinuxDeviceCgroup>,
}

/// The rule every non-privileged container starts with.
pub(crate) fn deny_all() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(false);
    rule.set_access(Some("rwm".to_string()));
    rule
}

/// The single rule of a privileged container.
pub(crate) fn allow_all() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_access(Some("rwm".to_string()));
    rule
}

/// The CRI devices: each host path is a device node (or a directory of
/// them); its container path defaults to the host path; permissions default
/// to "rwm".
pub(crate) fn cri_devices(config: &ContainerConfig) -> Result<Devices, SpecError> {
    let mut out = Devices::default();
    for (i, d) in config.devices.iter().enumerate() {
        let field = format!("devices[{i}].host_path");
        if d.host_path.is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        let access = if d.permissions.is_empty() {
            "rwm".to_string()
        } else if d.permissions.chars().all(|c| "rwm".contains(c)) {
            d.permissions.clone()
        } else {
            return Err(invalid(
                format!("devices[{i}].permissions"),
                format!("{:?} is not a combination of r, w and m", d.permissions),
            ));
        };
        let resolved = match std::fs::canonicalize(&d.host_path) {
            Ok(p) => p,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Err(invalid(field, format!("{} does not exist", d.host_path)));
            }
            Err(e) => return Err(io_error(format!("resolving {field} {}", d.host_path), e)),
        };
        let container_path =
            Some(PathBuf::from(&d.container_path)).filter(|p| !p.as_os_str().is_empty());
        let meta = std::fs::symlink_metadata(&resolved)
            .map_err(|e| io_error(format!("stat {field} {}", resolved.display()), e))?;
        let found = if meta.is_dir() {
            walk(&resolved, container_path.as_deref())
                .map_err(|e| io_error(format!("listing {field} {}", resolved.display()), e))?
        } else {
            match device_from_path(&resolved)
                .map_err(|e| io_error(format!("stat {field} {}", resolved.display()), e))?
            {
                Some(mut dev) => {
                    if let Some(p) = container_path {
                        dev.set_path(p);
                    }
                    vec![dev]
                }
                None => {
                    return Err(invalid(
                        field,
                        format!("{} is not a device node", d.host_path),
                    ))
                }
            }
        };
        for dev in found {
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(dev.typ()));
            rule.set_major(Some(dev.major()));
            rule.set_minor(Some(dev.minor()));
            rule.set_access(Some(access.clone()));
            out.cgroup_rules.push(rule);
            out.devices.push(dev);
        }
    }
    Ok(out)
}

/// Every device node under the host's /dev, for privileged containers.
pub(crate) fn host_devices() -> Result<Vec<LinuxDevice>, SpecError> {
    walk(Path::new("/dev"), None).map_err(|e| io_error("listing the host's /dev", e))
}

/// Devices under `dir`, recursively, skipping pseudo-filesystem directories,
/// the console, symlinks, FIFOs and anything that vanishes meanwhile.
fn walk(dir: &Path, container_dir: Option<&Path>) -> io::Result<Vec<LinuxDevice>> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let file_type = entry.file_type()?;
        let target = container_dir.map(|c| c.join(&name));
        if file_type.is_dir() {
            if SKIPPED_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            out.extend(walk(&entry.path(), target.as_deref())?);
            continue;
        }
        if name == "console" {
            continue;
        }
        match device_from_path(&entry.path()) {
            Ok(Some(mut dev)) => {
                if let Some(t) = target {
                    dev.set_path(t);
                }
                out.push(dev);
            }
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The device at `path` (not following a final symlink); `None` when it is
/// not a character or block device.
pub(crate) fn device_from_path(path: &Path) -> io::Result<Option<LinuxDevice>> {
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let mut dev = LinuxDevice::default();
    dev.set_path(path.to_path_buf());
    dev.set_typ(typ);
    dev.set_major(nix::sys::stat::major(rdev) as i64);
    dev.set_minor(nix::sys::stat::minor(rdev) as i64);
    dev.set_file_mode(Some(meta.mode() & 0o7777));
    dev.set_uid(Some(meta.uid()));
    dev.set_gid(Some(meta.gid()));
    Ok(Some(dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::Device;

    fn config(devices: Vec<Device>) -> ContainerConfig {
        ContainerConfig {
            devices,
            ..Default::default()
        }
    }

    fn device(host: &str, container: &str, perms: &str) -> Device {
        Device {
            host_path: host.into(),
            container_path: container.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn dev_null_is_a_char_device() {
        let got =
            cri_devices(&config(vec![device("/dev/null", "/dev/mynull", "rw")])).expect("null");
        assert_eq!(got.devices.len(), 1);
        let d = &got.devices[0];
        assert_eq!(d.path(), Path::new("/dev/mynull"));
        assert_eq!(d.typ(), LinuxDeviceType::C);
        assert_eq!((d.major(), d.minor()), (1, 3));
        let r = &got.cgroup_rules[0];
        assert!(r.allow());
        assert_eq!(r.typ(), Some(LinuxDeviceType::C));
        assert_eq!((r.major(), r.minor()), (Some(1), Some(3)));
        assert_eq!(r.access().as_deref(), Some("rw"));
    }

    #[test]
    fn defaults_and_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        let got =
            cri_devices(&config(vec![device(&link.to_string_lossy(), "", "")])).expect("zero");
        // Symlinks are resolved; an empty container path is the resolved host path.
        assert_eq!(got.devices[0].path(), Path::new("/dev/zero"));
        assert_eq!((got.devices[0].major(), got.devices[0].minor()), (1, 5));
        assert_eq!(got.cgroup_rules[0].access().as_deref(), Some("rwm"));
    }

    #[test]
    fn bad_devices_are_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("regular");
        std::fs::write(&file, "x").expect("write");
        let file = file.to_string_lossy().into_owned();
        for (dev, field) in [
            (device("/nope/dev", "/dev/x", "rwm"), "devices[1].host_path"),
            (device(&file, "/dev/x", "rwm"), "devices[1].host_path"),
            (device("", "/dev/x", "rwm"), "devices[1].host_path"),
            (
                device("/dev/null", "/dev/x", "rwx"),
                "devices[1].permissions",
            ),
        ] {
            let err = cri_devices(&config(vec![device("/dev/null", "", ""), dev])).unwrap_err();
            assert!(err.is_invalid_argument(), "{err}");
            assert!(err.to_string().starts_with(field), "{err}");
        }
        let err = cri_devices(&config(vec![device(&file, "", "")])).unwrap_err();
        assert!(err.to_string().ends_with("is not a device node"), "{err}");
    }

    #[test]
    fn directories_are_walked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("sub");
        std::fs::create_dir(dir.path().join("pts")).expect("pts");
        std::fs::write(dir.path().join("plain"), "x").expect("plain");
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o660);
        let mknod = |p: &Path, kind, dev| nix::sys::stat::mknod(p, kind, mode, dev);
        let made = mknod(
            &sub.join("null2"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::makedev(1, 3),
        )
        .and_then(|_| {
            mknod(
                &dir.path().join("pts/skipped"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::makedev(1, 3),
            )
        });
        if made.is_err() {
            // mknod needs CAP_MKNOD; nothing more to check without it.
            return;
        }
        // Whatever the umask did, make the mode known.
        std::fs::set_permissions(
            sub.join("null2"),
            std::os::unix::fs::PermissionsExt::from_mode(0o660),
        )
        .expect("chmod");
        let got = cri_devices(&config(vec![device(
            &dir.path().to_string_lossy(),
            "/dev/mine",
            "r",
        )]))
        .expect("walk");
        assert_eq!(got.devices.len(), 1);
        assert_eq!(got.devices[0].path(), Path::new("/dev/mine/sub/null2"));
        assert_eq!(got.devices[0].file_mode(), Some(0o660));
        assert_eq!(got.cgroup_rules[0].access().as_deref(), Some("r"));
    }

    #[test]
    fn host_devices_include_null() {
        let all = host_devices().expect("host devices");
        assert!(all.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(all.iter().all(|d| !d.path().starts_with("/dev/pts")));
    }
}
