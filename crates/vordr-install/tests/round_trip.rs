//! Install on a fresh host root, install again, uninstall: every file the
//! installer writes, edits and restores, checked byte for byte and mode by
//! mode against a temporary root with kubeadm-like kubelet files.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use vordr_install::*;

/// What a tree holds: path -> (kind, mode, bytes or link target).
type Tree = BTreeMap<PathBuf, (char, u32, Vec<u8>)>;

fn tree(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, ('l', 0, t.into_os_string().into_encoded_bytes()));
            } else if m.is_dir() {
                out.insert(rel, ('d', mode, Vec::new()));
                stack.push(p);
            } else {
                out.insert(rel, ('f', mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

const KUBELET_CONFIG: &str = "# kubeadm wrote this\n\
apiVersion: kubelet.config.k8s.io/v1beta1\n\
authentication:\n\
  x509:\n\
    clientCAFile: /etc/kubernetes/pki/ca.crt\n\
cgroupDriver: cgroupfs\n\
containerRuntimeEndpoint: \"unix:///var/run/containerd/containerd.sock\"\n\
kind: KubeletConfiguration\n\
rotateCertificates: true\n";

const FLAGS: &str = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.9\"\n";

const CRICTL: &str = "runtime-endpoint: unix:///run/containerd/containerd.sock\n";

const VORDR_SOCK: &str = "unix:///run/vordr/vordr.sock";

struct Host {
    root: tempfile::TempDir,
    src: tempfile::TempDir,
}

impl Host {
    /// A host root with kubelet's files (the config file 0600, as some
    /// distributions keep it) and a crictl.yaml for containerd, plus the
    /// binaries to install.
    fn new() -> Host {
        let root = tempfile::tempdir().unwrap();
        let put = |p: &str, data: &str, mode: u32| {
            let p = root.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, PermissionsExt::from_mode(mode)).unwrap();
        };
        put("var/lib/kubelet/config.yaml", KUBELET_CONFIG, 0o600);
        put("var/lib/kubelet/kubeadm-flags.env", FLAGS, 0o644);
        put("etc/crictl.yaml", CRICTL, 0o644);
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join(VORDR), b"\x7fELF vordr").unwrap();
        std::fs::write(src.path().join(SHIM), b"\x7fELF shim").unwrap();
        Host { root, src }
    }

    fn options(&self) -> Options {
        Options::new(self.root.path(), self.src.path())
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p.trim_start_matches('/'))
    }

    fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.path(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn mode(&self, p: &str) -> u32 {
        std::fs::symlink_metadata(self.path(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    fn install(&self) -> Plan {
        let plan = plan_install(&self.options()).unwrap();
        plan.apply(|_| {}).unwrap();
        plan
    }

    fn uninstall(&self) -> Plan {
        let plan = plan_uninstall(&self.options()).unwrap();
        plan.apply(|_| {}).unwrap();
        plan
    }
}

fn steps(p: &Plan) -> Vec<&str> {
    p.steps.iter().map(|s| s.what.as_str()).collect()
}

#[test]
fn install_twice_then_uninstall_restores_the_host_byte_for_byte() {
    let h = Host::new();
    let before = tree(h.root.path());

    // Planning alone (what --dry-run prints) writes nothing.
    let plan = plan_install(&h.options()).unwrap();
    assert_eq!(tree(h.root.path()), before);
    assert_eq!(
        steps(&plan),
        [
            "install /usr/local/bin/vordr (10 bytes, mode 0755)",
            "install /usr/local/bin/containerd-shim-vordr-v1 (9 bytes, mode 0755)",
            "write /etc/vordr/config.toml (the default configuration, mode 0644)",
            "write /etc/systemd/system/vordr.service (mode 0644)",
            "enable vordr.service: link /etc/systemd/system/multi-user.target.wants/vordr.service -> /etc/systemd/system/vordr.service",
            "save /etc/crictl.yaml as /etc/vordr/saved/crictl.yaml",
            "write /etc/crictl.yaml (crictl talks to unix:///run/vordr/vordr.sock)",
            "save /var/lib/kubelet/config.yaml as /etc/vordr/saved/kubelet-config.yaml",
            "set containerRuntimeEndpoint in /var/lib/kubelet/config.yaml: unix:///var/run/containerd/containerd.sock -> unix:///run/vordr/vordr.sock",
            "save /var/lib/kubelet/kubeadm-flags.env as /etc/vordr/saved/kubeadm-flags.env",
            "set --container-runtime-endpoint in /var/lib/kubelet/kubeadm-flags.env: unix:///var/run/containerd/containerd.sock -> unix:///run/vordr/vordr.sock",
        ]
    );
    // The host has none of netavark, runc, libseccomp; PID 1 does not see
    // this root, so nothing is restarted and the admin is told what to run.
    assert_eq!(plan.warnings.len(), 4, "{:#?}", plan.warnings);
    assert!(plan.warnings[0].starts_with("netavark is missing at /usr/lib/podman/netavark"));
    assert!(plan.warnings[1].starts_with("runc is missing at /usr/sbin/runc"));
    assert!(plan.warnings[2].starts_with("libseccomp.so.2 is missing"));
    assert!(
        plan.warnings[3].starts_with("not restarting anything (PID 1's root is not")
            && plan.warnings[3].ends_with(
                "on the node run: systemctl daemon-reload && systemctl restart vordr.service \
                 && systemctl restart kubelet.service"
            ),
        "{}",
        plan.warnings[3]
    );

    plan.apply(|_| {}).unwrap();
    assert_eq!(h.read("usr/local/bin/vordr"), "\x7fELF vordr");
    assert_eq!(
        h.read("usr/local/bin/containerd-shim-vordr-v1"),
        "\x7fELF shim"
    );
    assert_eq!(h.mode("usr/local/bin/vordr"), 0o755);
    assert_eq!(h.mode("usr/local/bin/containerd-shim-vordr-v1"), 0o755);
    assert_eq!(h.mode("usr/local/bin"), 0o755);
    assert_eq!(
        h.read("etc/vordr/config.toml"),
        vordr_config::EMBEDDED_DEFAULT
    );
    assert_eq!(h.mode("etc/vordr/config.toml"), 0o644);
    assert_eq!(h.mode("etc/vordr"), 0o755);
    let unit = unit_file(
        Path::new("/usr/local/bin/vordr"),
        Path::new("/etc/vordr/config.toml"),
    );
    assert_eq!(h.read("etc/systemd/system/vordr.service"), unit);
    assert_eq!(h.mode("etc/systemd/system/vordr.service"), 0o644);
    assert_eq!(
        std::fs::read_link(h.path(UNIT_WANTS)).unwrap(),
        Path::new("/etc/systemd/system/vordr.service")
    );
    assert_eq!(h.read("etc/crictl.yaml"), crictl_yaml(VORDR_SOCK));
    // kubelet's files: one line each changed, owner and mode kept.
    assert_eq!(
        h.read("var/lib/kubelet/config.yaml"),
        KUBELET_CONFIG.replace("\"unix:///var/run/containerd/containerd.sock\"", VORDR_SOCK)
    );
    assert_eq!(h.mode("var/lib/kubelet/config.yaml"), 0o600);
    assert_eq!(
        h.read("var/lib/kubelet/kubeadm-flags.env"),
        FLAGS.replace("unix:///var/run/containerd/containerd.sock", VORDR_SOCK)
    );
    // The originals, whole, readable by root only.
    assert_eq!(
        h.read("etc/vordr/saved/kubelet-config.yaml"),
        KUBELET_CONFIG
    );
    assert_eq!(h.read("etc/vordr/saved/kubeadm-flags.env"), FLAGS);
    assert_eq!(h.read("etc/vordr/saved/crictl.yaml"), CRICTL);
    assert_eq!(h.mode("etc/vordr/saved"), 0o700);
    for f in ["kubelet-config.yaml", "kubeadm-flags.env", "crictl.yaml"] {
        assert_eq!(h.mode(&format!("etc/vordr/saved/{f}")), 0o600, "{f}");
    }
    // Nothing else was written (no temporary files left behind).
    let after = tree(h.root.path());
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(
        added,
        [
            "etc/systemd",
            "etc/systemd/system",
            "etc/systemd/system/multi-user.target.wants",
            "etc/systemd/system/multi-user.target.wants/vordr.service",
            "etc/systemd/system/vordr.service",
            "etc/vordr",
            "etc/vordr/config.toml",
            "etc/vordr/saved",
            "etc/vordr/saved/crictl.yaml",
            "etc/vordr/saved/kubeadm-flags.env",
            "etc/vordr/saved/kubelet-config.yaml",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/containerd-shim-vordr-v1",
            "usr/local/bin/vordr",
        ]
        .map(PathBuf::from)
        .iter()
        .collect::<Vec<_>>()
    );

    // A second install finds nothing to do and warns only of packages.
    let again = h.install();
    assert_eq!(steps(&again), Vec::<&str>::new());
    assert_eq!(again.warnings.len(), 3, "{:#?}", again.warnings);
    assert_eq!(tree(h.root.path()), after);

    // Uninstall gives back exactly the tree from before.
    let plan = plan_uninstall(&h.options()).unwrap();
    assert_eq!(tree(h.root.path()), after, "planning writes nothing");
    assert_eq!(
        steps(&plan),
        [
            "restore /var/lib/kubelet/config.yaml from /etc/vordr/saved/kubelet-config.yaml",
            "remove /etc/vordr/saved/kubelet-config.yaml",
            "restore /var/lib/kubelet/kubeadm-flags.env from /etc/vordr/saved/kubeadm-flags.env",
            "remove /etc/vordr/saved/kubeadm-flags.env",
            "remove /etc/systemd/system/multi-user.target.wants/vordr.service",
            "remove /etc/systemd/system/vordr.service",
            "restore /etc/crictl.yaml from /etc/vordr/saved/crictl.yaml",
            "remove /etc/vordr/saved/crictl.yaml",
            "remove /usr/local/bin/vordr",
            "remove /usr/local/bin/containerd-shim-vordr-v1",
            "remove /etc/vordr/config.toml (this version's default)",
            "remove /etc/vordr/saved/",
            "remove /etc/vordr/",
        ]
    );
    assert!(plan.warnings[0].ends_with(
        "on the node run: systemctl restart kubelet.service && systemctl stop vordr.service \
         && systemctl daemon-reload"
    ));
    plan.apply(|_| {}).unwrap();
    let left = tree(h.root.path());
    let extra: Vec<_> = left.keys().filter(|k| !before.contains_key(*k)).collect();
    // The directories it created for the unit and binaries stay (they are
    // the host's usual directories); every file is as before.
    assert_eq!(
        extra,
        [
            "etc/systemd",
            "etc/systemd/system",
            "etc/systemd/system/multi-user.target.wants",
            "usr",
            "usr/local",
            "usr/local/bin"
        ]
        .map(PathBuf::from)
        .iter()
        .collect::<Vec<_>>()
    );
    for (k, v) in &before {
        assert_eq!(left.get(k), Some(v), "{} differs", k.display());
    }
    // And a second uninstall has nothing left to undo.
    assert_eq!(steps(&h.uninstall()), Vec::<&str>::new());
}

#[test]
fn a_changed_config_is_kept_and_the_new_default_written_beside_it() {
    let h = Host::new();
    let cfg = h.path(CONFIG);
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    let mine = "[server]\nsocket = \"/run/vordr/other.sock\"\n";
    std::fs::write(&cfg, mine).unwrap();
    let plan = h.install();
    assert!(steps(&plan).contains(
        &"write /etc/vordr/config.toml.new (this version's default configuration, mode 0644)"
    ));
    assert_eq!(
        plan.notes,
        ["kept /etc/vordr/config.toml: it differs from this version's default, which is in /etc/vordr/config.toml.new"]
    );
    assert_eq!(h.read(CONFIG), mine);
    assert_eq!(h.read(CONFIG_NEW), vordr_config::EMBEDDED_DEFAULT);
    // kubelet and crictl follow the socket the config sets.
    let other = "unix:///run/vordr/other.sock";
    assert!(h
        .read("var/lib/kubelet/config.yaml")
        .contains(&format!("containerRuntimeEndpoint: {other}\n")));
    assert_eq!(h.read("etc/crictl.yaml"), crictl_yaml(other));
    assert_eq!(steps(&h.install()), Vec::<&str>::new());
    // Uninstall keeps the admin's config and says so.
    let plan = h.uninstall();
    assert!(plan
        .notes
        .iter()
        .any(|n| n.starts_with("kept /etc/vordr/config.toml")));
    assert_eq!(h.read(CONFIG), mine);
    assert!(!h.path(CONFIG_NEW).exists());
    assert!(!h.path(SAVED_DIR).exists());
    assert_eq!(h.read("var/lib/kubelet/config.yaml"), KUBELET_CONFIG);
    assert_eq!(steps(&h.uninstall()), Vec::<&str>::new());
}

#[test]
fn an_invalid_existing_config_stops_the_install() {
    let h = Host::new();
    let before = tree(h.root.path());
    std::fs::create_dir_all(h.path(CONFIG_DIR)).unwrap();
    std::fs::write(h.path(CONFIG), "[server]\nsocket = 3\n").unwrap();
    let e = plan_install(&h.options()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("the existing /etc/vordr/config.toml is not a valid Vordr configuration"),
        "{e}"
    );
    std::fs::remove_dir_all(h.path(CONFIG_DIR)).unwrap();
    assert_eq!(tree(h.root.path()), before);
}

#[test]
fn kubelet_files_changed_after_install_get_only_their_endpoint_back() {
    let h = Host::new();
    h.install();
    // kubeadm or the admin changed the files since.
    let kc = h.path("var/lib/kubelet/config.yaml");
    let changed = format!("{}maxPods: 200\n", h.read("var/lib/kubelet/config.yaml"));
    std::fs::write(&kc, &changed).unwrap();
    let flags = h.path("var/lib/kubelet/kubeadm-flags.env");
    std::fs::write(
        &flags,
        h.read("var/lib/kubelet/kubeadm-flags.env")
            .replace("pause:3.9", "pause:3.10"),
    )
    .unwrap();
    let plan = h.uninstall();
    assert!(steps(&plan)[0].starts_with(
        "set the runtime endpoint in /var/lib/kubelet/config.yaml back to unix:///var/run/containerd/containerd.sock"
    ));
    assert_eq!(
        h.read("var/lib/kubelet/config.yaml"),
        format!(
            "{}maxPods: 200\n",
            KUBELET_CONFIG.replace(
                "\"unix:///var/run/containerd/containerd.sock\"",
                "unix:///var/run/containerd/containerd.sock"
            )
        )
    );
    assert_eq!(
        h.read("var/lib/kubelet/kubeadm-flags.env"),
        FLAGS.replace("pause:3.9", "pause:3.10")
    );

    // A file that no longer points at Vordr is left alone.
    let h = Host::new();
    h.install();
    std::fs::write(
        h.path("etc/crictl.yaml"),
        "runtime-endpoint: unix:///elsewhere\n",
    )
    .unwrap();
    let plan = h.uninstall();
    assert!(plan
        .notes
        .contains(&"left /etc/crictl.yaml as is: it no longer points at Vordr".to_string()));
    assert_eq!(
        h.read("etc/crictl.yaml"),
        "runtime-endpoint: unix:///elsewhere\n"
    );
    assert!(!h.path(SAVED_DIR).exists());
}

#[test]
fn reinstalling_over_a_rewritten_kubelet_config_saves_the_new_original() {
    let h = Host::new();
    h.install();
    // kubeadm upgrade rewrote the config, pointing at containerd again.
    let rewritten = format!("{KUBELET_CONFIG}maxPods: 110\n");
    std::fs::write(h.path("var/lib/kubelet/config.yaml"), &rewritten).unwrap();
    let plan = h.install();
    assert_eq!(
        steps(&plan),
        [
            "save /var/lib/kubelet/config.yaml as /etc/vordr/saved/kubelet-config.yaml",
            "set containerRuntimeEndpoint in /var/lib/kubelet/config.yaml: unix:///var/run/containerd/containerd.sock -> unix:///run/vordr/vordr.sock",
        ]
    );
    h.uninstall();
    assert_eq!(h.read("var/lib/kubelet/config.yaml"), rewritten);
}

#[test]
fn flags_file_alone_gets_the_flag_added_and_image_endpoints_follow() {
    let h = Host::new();
    std::fs::remove_file(h.path("var/lib/kubelet/config.yaml")).unwrap();
    let flags = "KUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.2\"\n";
    std::fs::write(h.path("var/lib/kubelet/kubeadm-flags.env"), flags).unwrap();
    h.install();
    assert_eq!(
        h.read("var/lib/kubelet/kubeadm-flags.env"),
        "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/vordr/vordr.sock --node-ip=10.0.0.2\"\n"
    );
    h.uninstall();
    assert_eq!(h.read("var/lib/kubelet/kubeadm-flags.env"), flags);

    // With a config file, a flags file without the flag is not touched,
    // and a separate image endpoint is switched too.
    let h = Host::new();
    let kc =
        format!("{KUBELET_CONFIG}imageServiceEndpoint: unix:///run/containerd/containerd.sock\n");
    std::fs::write(h.path("var/lib/kubelet/config.yaml"), &kc).unwrap();
    std::fs::write(h.path("var/lib/kubelet/kubeadm-flags.env"), flags).unwrap();
    h.install();
    assert_eq!(h.read("var/lib/kubelet/kubeadm-flags.env"), flags);
    assert!(!h.path("etc/vordr/saved/kubeadm-flags.env").exists());
    let now = h.read("var/lib/kubelet/config.yaml");
    assert!(
        now.contains("\ncontainerRuntimeEndpoint: unix:///run/vordr/vordr.sock\n"),
        "{now}"
    );
    assert!(
        now.ends_with("\nimageServiceEndpoint: unix:///run/vordr/vordr.sock\n"),
        "{now}"
    );
    h.uninstall();
    assert_eq!(h.read("var/lib/kubelet/config.yaml"), kc);
}

#[test]
fn no_kubelet_files_is_a_warning_and_json_an_error() {
    let h = Host::new();
    std::fs::remove_dir_all(h.path("var/lib/kubelet")).unwrap();
    let plan = plan_install(&h.options()).unwrap();
    assert!(plan.warnings.iter().any(|w| w.starts_with(
        "found neither /var/lib/kubelet/config.yaml nor /var/lib/kubelet/kubeadm-flags.env: \
         point kubelet at unix:///run/vordr/vordr.sock yourself"
    )));

    let h = Host::new();
    std::fs::write(
        h.path("var/lib/kubelet/config.yaml"),
        "{\"kind\": \"KubeletConfiguration\"}\n",
    )
    .unwrap();
    let e = plan_install(&h.options()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/var/lib/kubelet/config.yaml cannot be edited line by line: it is JSON, not block YAML; \
         set containerRuntimeEndpoint to unix:///run/vordr/vordr.sock yourself"
    );
}

#[test]
fn strict_refuses_a_host_without_its_packages_and_writes_nothing() {
    let h = Host::new();
    let before = tree(h.root.path());
    let mut o = h.options();
    o.strict = true;
    let e = plan_install(&o).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("missing on the host (--strict):\n  netavark is missing"),
        "{msg}"
    );
    assert!(
        msg.contains("\n  runc is missing at /usr/sbin/runc"),
        "{msg}"
    );
    assert_eq!(tree(h.root.path()), before);
    // --no-restart says so instead of looking for systemd.
    o.strict = false;
    o.restart = false;
    let plan = plan_install(&o).unwrap();
    assert!(plan
        .warnings
        .last()
        .unwrap()
        .starts_with("not restarting anything (--no-restart)"));
}

#[test]
fn a_missing_source_binary_is_named() {
    let h = Host::new();
    std::fs::remove_file(h.src.path().join(SHIM)).unwrap();
    let e = plan_install(&h.options()).unwrap_err();
    assert!(e.to_string().starts_with(&format!(
        "{} is not there",
        h.src.path().join(SHIM).display()
    )));
}
