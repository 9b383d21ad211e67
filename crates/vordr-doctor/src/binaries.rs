//! The binaries Vordr runs: netavark or the CNI plugins (by
//! `network.driver`), each runtime handler's runtime, libseccomp (the
//! installer's list of host packages), and the shim.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use vordr_config::{Config, NetworkDriver};
use vordr_install::files::Root;

use crate::Check;

/// The shim's file name.
pub const SHIM: &str = vordr_install::SHIM;

/// Where the daemon's PATH lookup goes (the systemd unit's PATH).
const PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

pub fn checks(root: &Root, config: &Config, vordr_dir: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    for r in vordr_install::requirements(root, config) {
        let default = format!("runtime-{}", config.runtime.default_runtime);
        out.push(match &r.found {
            Some(p) => Check::ok(&r.name, format!("{}", p.display())),
            // Only pods of a RuntimeClass naming it need another handler.
            None if r.name.starts_with("runtime-") && r.name != default => {
                Check::warning(&r.name, r.missing, format!("apt-get install {}", r.package))
            }
            None => Check::missing(&r.name, r.missing, format!("apt-get install {}", r.package)),
        });
    }
    if config.network.driver == NetworkDriver::Cni {
        out.push(cni_config(root, config));
    }
    for (name, h) in &config.runtime.handlers {
        if h.kind == "youki" {
            out.push(Check::ok(
                &format!("runtime-{name}"),
                "youki's libcontainer, inside the shim",
            ));
        }
    }
    out.push(shim(root, config, vordr_dir));
    out
}

/// Whether the network add-on has written its config list yet.
fn cni_config(root: &Root, config: &Config) -> Check {
    const NAME: &str = "cni-config";
    let dir = &config.network.cni.conf_dir;
    let lists: Vec<String> = std::fs::read_dir(root.resolve(dir))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    [".conflist", ".conf", ".json"]
                        .iter()
                        .any(|x| n.ends_with(x))
                })
                .collect()
        })
        .unwrap_or_default();
    if lists.is_empty() {
        Check::warning(
            NAME,
            format!(
                "no .conflist, .conf or .json in {}: NetworkReady stays false until the \
                 cluster's network add-on writes one",
                dir.display()
            ),
            format!(
                "install the cluster's network add-on (it writes {}), or set [network] driver = \
                 \"netavark\"",
                dir.display()
            ),
        )
    } else {
        let mut lists = lists;
        lists.sort();
        Check::ok(NAME, format!("{}: {}", dir.display(), lists.join(", ")))
    }
}

fn executable(root: &Root, p: &Path) -> bool {
    std::fs::metadata(root.resolve(p)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// The shim where the daemon looks for it: the configured path, else next
/// to the vordr that serves, else PATH.
fn shim(root: &Root, config: &Config, vordr_dir: &Path) -> Check {
    const NAME: &str = "shim";
    let configured = &config.runtime.shim_path;
    let candidates: Vec<PathBuf> = if configured.as_os_str().is_empty() {
        std::iter::once(vordr_dir.to_path_buf())
            .chain(PATH.iter().map(PathBuf::from))
            .map(|d| d.join(SHIM))
            .collect()
    } else {
        vec![configured.clone()]
    };
    match candidates.iter().find(|p| executable(root, p)) {
        Some(p) => Check::ok(NAME, p.display().to_string()),
        None => {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            Check::missing(
                NAME,
                format!(
                    "no executable {SHIM} at {}: no container can start",
                    looked.join(", ")
                ),
                "vordr install --host-root / (it puts the shim next to vordr in /usr/local/bin), \
                 or set [runtime] shim_path",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::Status;

    fn statuses(v: &[Check]) -> Vec<(String, Status)> {
        v.iter().map(|c| (c.name.clone(), c.status)).collect()
    }

    #[test]
    fn netavark_runtimes_libseccomp_and_the_shim() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let config = Config::default();
        let dir = Path::new("/usr/local/bin");
        let s = |n: &str, st| (n.to_string(), st);
        assert_eq!(
            statuses(&checks(&r, &config, dir)),
            [
                s("netavark", Status::Missing),
                s("runtime-runc", Status::Warning),
                s("libseccomp", Status::Missing),
                s("runtime-youki", Status::Ok),
                s("shim", Status::Missing),
            ]
        );
        put_exe(t.path(), "/usr/lib/podman/netavark");
        put_exe(t.path(), "/usr/sbin/runc");
        put(t.path(), "/usr/lib/x86_64-linux-gnu/libseccomp.so.2", "");
        put(t.path(), "/usr/lib/libseccomp.so.2", "");
        put_exe(t.path(), "/usr/bin/containerd-shim-vordr-v1");
        let all = checks(&r, &config, dir);
        assert!(all.iter().all(|c| c.status == Status::Ok), "{all:#?}");
        let shim = all.iter().find(|c| c.name == "shim").unwrap();
        assert_eq!(shim.detail, "/usr/bin/containerd-shim-vordr-v1");
        // Next to vordr comes before PATH.
        put_exe(t.path(), "/opt/vordr/containerd-shim-vordr-v1");
        let all = checks(&r, &config, Path::new("/opt/vordr"));
        let shim = all.iter().find(|c| c.name == "shim").unwrap();
        assert_eq!(shim.detail, "/opt/vordr/containerd-shim-vordr-v1");
        // The default handler's runtime missing is missing.
        let runc = Config::from_overlay_str(
            "[runtime]\ndefault_runtime = \"runc\"\nshim_path = \"/nowhere/shim\"\n",
            "t",
        )
        .unwrap();
        std::fs::remove_file(t.path().join("usr/sbin/runc")).unwrap();
        let all = statuses(&checks(&r, &runc, dir));
        assert!(all.contains(&s("runtime-runc", Status::Missing)), "{all:?}");
        assert!(all.contains(&s("shim", Status::Missing)), "{all:?}");
    }

    #[test]
    fn the_cni_driver_needs_plugins_and_warns_without_a_config_list() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let cni = Config::from_overlay_str("[network]\ndriver = \"cni\"\n", "t").unwrap();
        let all = checks(&r, &cni, Path::new("/usr/local/bin"));
        let get = |all: &[Check], n: &str| all.iter().find(|c| c.name == n).unwrap().clone();
        assert_eq!(get(&all, "cni-plugins").status, Status::Missing);
        assert_eq!(get(&all, "cni-config").status, Status::Warning);
        assert!(all.iter().all(|c| c.name != "netavark"));
        put_exe(t.path(), "/opt/cni/bin/bridge");
        put(t.path(), "/etc/cni/net.d/10-flannel.conflist", "{}");
        let all = checks(&r, &cni, Path::new("/usr/local/bin"));
        assert_eq!(get(&all, "cni-plugins").status, Status::Ok);
        let c = get(&all, "cni-config");
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("10-flannel.conflist"), "{c:?}");
    }
}
