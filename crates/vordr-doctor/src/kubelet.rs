//! kubelet's runtime endpoint: its config file's `containerRuntimeEndpoint`
//! and kubeadm's `--container-runtime-endpoint` flag (which wins), read
//! where and as the installer reads them.

use vordr_config::Config;

use crate::{Check, Options};

const NAME: &str = "kubelet";

/// An endpoint as a socket path: `unix://` dropped, `/var/run` as `/run`.
fn socket_path(endpoint: &str) -> String {
    let p = endpoint.trim().trim_start_matches("unix://");
    match p.strip_prefix("/var/run/") {
        Some(rest) => format!("/run/{rest}"),
        None => p.to_string(),
    }
}

pub fn check(o: &Options, config: &Config) -> Check {
    let ours = format!("unix://{}", config.server.socket.display());
    let install = "vordr install --host-root / (it points kubelet at Vordr and restarts it)";
    let files =
        match vordr_install::kubelet_endpoints(&o.host_root, &o.kubelet_config, &o.kubeadm_flags) {
            Ok(f) => f,
            Err(e) => {
                return Check::warning(
                    NAME,
                    format!("{e}"),
                    format!(
                        "set containerRuntimeEndpoint: {ours} in kubelet's configuration yourself"
                    ),
                )
            }
        };
    if files.is_empty() {
        return Check::warning(
            NAME,
            format!(
                "neither {} nor {} is there: no kubelet on this node (or it is configured \
                 elsewhere)",
                o.kubelet_config.display(),
                o.kubeadm_flags.display()
            ),
            format!("point kubelet at {ours}: --container-runtime-endpoint, or containerRuntimeEndpoint in its config file"),
        );
    }
    // A flag overrides the config file; neither leaves kubelet's default.
    let effective = files
        .iter()
        .filter(|f| f.endpoint.is_some())
        .max_by_key(|f| f.is_flags);
    match effective {
        Some(f) => {
            let e = f.endpoint.as_deref().unwrap_or_default();
            if socket_path(e) == socket_path(&ours) {
                Check::ok(NAME, format!("{} points kubelet at {e}", f.file.display()))
            } else {
                Check::missing(
                    NAME,
                    format!(
                        "{} points kubelet at {e}, not at Vordr ({ours})",
                        f.file.display()
                    ),
                    install,
                )
            }
        }
        None => Check::missing(
            NAME,
            format!(
                "{} set no runtime endpoint: kubelet uses its default (containerd's socket), \
                 not Vordr ({ours})",
                files
                    .iter()
                    .map(|f| f.file.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            install,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::Status;

    const CONTAINERD: &str = "unix:///var/run/containerd/containerd.sock";

    #[test]
    fn the_flag_wins_over_the_config_file_and_no_kubelet_is_a_warning() {
        let t = tempfile::tempdir().unwrap();
        let o = Options::new(t.path());
        let config = Config::default();
        let c = check(&o, &config);
        assert_eq!(c.status, Status::Warning, "{c:?}");
        assert!(c.detail.contains("no kubelet"), "{c:?}");

        let kc = "/var/lib/kubelet/config.yaml";
        put(
            t.path(),
            kc,
            "kind: KubeletConfiguration\ncgroupDriver: cgroupfs\n",
        );
        let c = check(&o, &config);
        assert_eq!(c.status, Status::Missing, "{c:?}");
        assert!(c.detail.contains("default"), "{c:?}");

        put(
            t.path(),
            kc,
            &format!("kind: KubeletConfiguration\ncontainerRuntimeEndpoint: {CONTAINERD}\n"),
        );
        let c = check(&o, &config);
        assert_eq!(c.status, Status::Missing, "{c:?}");
        assert!(c.detail.contains("containerd.sock"), "{c:?}");
        assert!(c.fix.unwrap().starts_with("vordr install"));

        // /var/run is /run; no scheme is a path.
        put(
            t.path(),
            kc,
            "containerRuntimeEndpoint: \"unix:///var/run/vordr/vordr.sock\"\n",
        );
        assert_eq!(check(&o, &config).status, Status::Ok);

        let flags = "/var/lib/kubelet/kubeadm-flags.env";
        put(
            t.path(),
            flags,
            &format!("KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint={CONTAINERD} --v=2\"\n"),
        );
        let c = check(&o, &config);
        assert_eq!(c.status, Status::Missing, "{c:?}");
        assert!(c.detail.starts_with(flags), "{c:?}");
        put(
            t.path(),
            flags,
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=/run/vordr/vordr.sock\"\n",
        );
        put(
            t.path(),
            kc,
            &format!("containerRuntimeEndpoint: {CONTAINERD}\n"),
        );
        assert_eq!(check(&o, &config).status, Status::Ok);
        // Vordr on another socket.
        let other =
            Config::from_overlay_str("[server]\nsocket = \"/run/v2/v.sock\"\n", "t").unwrap();
        assert_eq!(check(&o, &other).status, Status::Missing);
    }

    #[test]
    fn a_file_the_installer_cannot_read_is_a_warning() {
        let t = tempfile::tempdir().unwrap();
        put(
            t.path(),
            "/var/lib/kubelet/config.yaml",
            "{\"kind\": \"KubeletConfiguration\"}\n",
        );
        let c = check(&Options::new(t.path()), &Config::default());
        assert_eq!(c.status, Status::Warning, "{c:?}");
        assert!(c.detail.contains("JSON"), "{c:?}");
    }
}
