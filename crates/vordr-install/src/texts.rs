//! The files the installer writes whole: the systemd unit and crictl.yaml.

use std::path::Path;

/// `vordr.service`: `vordr serve` with the installed configuration.
///
/// Type=notify: `vordr serve` sends READY=1 once its CRI socket listens,
/// so `systemctl restart vordr` returns when kubelet can connect.
/// KillMode=process: stopping or restarting the daemon stops only the
/// daemon, never the shims and containers it started (they sit in the
/// service's cgroup until moved to their pods'), and Delegate=yes lets it
/// manage the cgroups below its own. The open-file limit covers a node's
/// pods, shims and streams; OOMScoreAdjust keeps the kernel's OOM killer
/// off the runtime before any container.
pub fn unit_file(vordr: &Path, config: &Path) -> String {
    format!(
        "# Written by `vordr install`; `vordr uninstall` removes it. Put local\n\
         # changes in a drop-in (systemctl edit vordr), which both leave alone.\n\
         [Unit]\n\
         Description=Vordr container runtime (Kubernetes CRI)\n\
         After=network-online.target local-fs.target\n\
         Wants=network-online.target\n\
         Before=kubelet.service\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         Type=notify\n\
         ExecStart={vordr} serve --config {config}\n\
         Delegate=yes\n\
         KillMode=process\n\
         Restart=always\n\
         RestartSec=2\n\
         LimitNOFILE=1048576\n\
         LimitNPROC=infinity\n\
         LimitCORE=infinity\n\
         TasksMax=infinity\n\
         OOMScoreAdjust=-999\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        vordr = vordr.display(),
        config = config.display(),
    )
}

/// `/etc/crictl.yaml` pointing crictl at Vordr's socket.
pub fn crictl_yaml(endpoint: &str) -> String {
    format!(
        "# Written by `vordr install`: crictl talks to Vordr.\n\
         runtime-endpoint: {endpoint}\n\
         image-endpoint: {endpoint}\n\
         timeout: 10\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_the_installed_binary_with_the_installed_config() {
        let u = unit_file(
            Path::new("/usr/local/bin/vordr"),
            Path::new("/etc/vordr/config.toml"),
        );
        for line in [
            "Type=notify",
            "ExecStart=/usr/local/bin/vordr serve --config /etc/vordr/config.toml",
            "Delegate=yes",
            "KillMode=process",
            "Restart=always",
            "LimitNOFILE=1048576",
            "OOMScoreAdjust=-999",
            "WantedBy=multi-user.target",
        ] {
            assert!(u.lines().any(|l| l == line), "{line} missing from\n{u}");
        }
    }
}
