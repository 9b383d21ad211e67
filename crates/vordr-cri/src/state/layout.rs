//! The on-disk layout: every path vordr-cri writes, named in one place;
//! the crates it drives name their own files below these (marked).
//!
//! Two trees: `root` (`server.root`, persistent, default `/var/lib/vordr`)
//! survives a reboot; `run` (`server.run_dir`, default `/run/vordr`, a
//! tmpfs on most nodes) holds what dies with the machine's processes.
//!
//! ```text
//! <root>/vordr.db                       state (vordr-store)
//! <root>/audit.{head,key}                the audit chain's head and node key (vordr-audit)
//! <root>/images/{content,snapshots}/     image store (vordr-image)
//! <root>/pods/<pod>/{hostname,hosts,resolv.conf}
//! <root>/containers/<ctr>/{upper,work}/  writable layers
//! <root>/cni/cache/                      CNI results (network.cni.cache_dir)
//! <run>/ns/<pod>/{net,ipc,uts,user,...}  pinned namespaces
//! <run>/ns/<pod>/init.pid                the pod's init process
//! <run>/ns/<pod>/attachment.json         what the network driver attached
//! <run>/ns-teardown/<pod>/               scratch namespace for a late detach
//! <run>/bundles/<ctr>/{config.json,judged.json,rootfs,exec-*}
//!                                        (+ options.json, init.pid, exit.json, shim.log: the shim)
//! <run>/idmap/<ctr>/                    idmapped layers and volumes while a container is created
//! <run>/image-volumes/<ctr>/            the container's image volumes, read-only mounts
//! <run>/s/                               shim and attach sockets
//! <run>/events.sock                      TTRPC endpoint shims publish to
//! <run>/runtime/<kind>/                  youki's or runc's state
//! <run>/netavark/                        netavark's config directory
//! /run/lock/vordr-netavark.lock          netavark calls serialised (vordr-net)
//! ```

use std::path::{Path, PathBuf};

use vordr_config::Config;
use vordr_fsmode::{PRIVATE_DIR, TRAVERSE_DIR};

/// The daemon's two trees and every path in them.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    run: PathBuf,
}

impl Layout {
    pub fn new(config: &Config) -> Layout {
        Layout {
            root: config.server.root.clone(),
            run: config.server.run_dir.clone(),
        }
    }

    /// The persistent tree (the database lives here).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image store: content and snapshots.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// Where every pod's files are.
    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    /// A pod's files: resolv.conf, hostname, hosts (persistent).
    pub fn pod_dir(&self, pod_id: &str) -> PathBuf {
        self.pods_dir().join(pod_id)
    }

    /// The pod's hostname, as its containers' /etc/hostname.
    pub fn hostname_file(&self, pod_id: &str) -> PathBuf {
        self.pod_dir(pod_id).join("hostname")
    }

    /// The pod's /etc/hosts.
    pub fn hosts_file(&self, pod_id: &str) -> PathBuf {
        self.pod_dir(pod_id).join("hosts")
    }

    /// The pod's /etc/resolv.conf.
    pub fn resolv_conf(&self, pod_id: &str) -> PathBuf {
        self.pod_dir(pod_id).join("resolv.conf")
    }

    /// Where every container's writable layer is.
    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// The container's writable layer (persistent): upper and work dirs.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// libcni's cache of ADD results, unless `network.cni.cache_dir` says otherwise.
    pub fn default_cni_cache_dir(&self) -> PathBuf {
        self.root.join("cni").join("cache")
    }

    /// Where every pod's pinned namespaces are.
    pub fn namespaces_dir(&self) -> PathBuf {
        self.run.join("ns")
    }

    /// A pod's pinned namespaces (volatile), its init's pid and its
    /// network attachment.
    pub fn ns_dir(&self, pod_id: &str) -> PathBuf {
        self.namespaces_dir().join(pod_id)
    }

    /// One of a pod's pinned namespaces (`net`, `ipc`, `uts`, `user`, ...).
    pub fn ns_pin(&self, pod_id: &str, kind: &str) -> PathBuf {
        self.ns_dir(pod_id).join(kind)
    }

    /// The pid of a pod's init process.
    pub fn init_pid_file(&self, pod_id: &str) -> PathBuf {
        self.ns_dir(pod_id).join("init.pid")
    }

    /// The network driver's record of what it attached, beside the pins.
    pub fn attachment_file(&self, pod_id: &str) -> PathBuf {
        self.ns_dir(pod_id).join("attachment.json")
    }

    /// Scratch namespaces for detaching a pod whose pin is gone.
    pub fn teardown_ns_root(&self) -> PathBuf {
        self.run.join("ns-teardown")
    }

    /// The scratch namespace directory of one pod.
    pub fn teardown_ns_dir(&self, pod_id: &str) -> PathBuf {
        self.teardown_ns_root().join(pod_id)
    }

    /// Where every container's OCI bundle is.
    pub fn bundles_dir(&self) -> PathBuf {
        self.run.join("bundles")
    }

    /// The OCI bundle of a container (volatile): config.json, rootfs, exec FIFOs.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundles_dir().join(id)
    }

    /// The container's OCI spec, 0600.
    pub fn spec_file(&self, id: &str) -> PathBuf {
        self.bundle_dir(id).join("config.json")
    }

    /// The container's root file system (the overlay's mount point).
    pub fn rootfs_dir(&self, id: &str) -> PathBuf {
        self.bundle_dir(id).join("rootfs")
    }

    /// The spec as the gatekeeper judged it (before this node's
    /// adjustments), kept to judge again on UpdateContainerResources.
    pub fn judged_spec_file(&self, id: &str) -> PathBuf {
        self.bundle_dir(id).join("judged.json")
    }

    /// Where idmapped copies of a user-namespaced container's layers and
    /// volumes are attached while it is created (released after).
    pub fn idmap_root(&self) -> PathBuf {
        self.run.join("idmap")
    }

    /// The idmap staging directory of one container.
    pub fn idmap_dir(&self, id: &str) -> PathBuf {
        self.idmap_root().join(id)
    }

    /// Where containers' image volumes are mounted (read-only) before
    /// being bound into them.
    pub fn image_volumes_root(&self) -> PathBuf {
        self.run.join("image-volumes")
    }

    /// The image volumes of one container: `<i>`, and `<i>.sub` for a sub path.
    pub fn image_volumes_dir(&self, id: &str) -> PathBuf {
        self.image_volumes_root().join(id)
    }

    /// Where shims put their TTRPC and attach sockets.
    pub fn shim_socket_dir(&self) -> PathBuf {
        self.run.join("s")
    }

    /// The socket of a container's shim.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        vordr_shim_api::socket_path(&self.shim_socket_dir(), id)
    }

    /// The shim's attach socket for container `id`.
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        vordr_shim_api::socket_path(
            &self.shim_socket_dir(),
            &vordr_shim_api::attach_socket_name(id),
        )
    }

    /// The TTRPC endpoint shims publish events to.
    pub fn events_socket(&self) -> PathBuf {
        self.run.join("events.sock")
    }

    /// Where an OCI runtime (`youki`, `runc`) keeps its state.
    pub fn runtime_root(&self, kind: &str) -> PathBuf {
        self.run.join("runtime").join(kind)
    }

    /// netavark's config directory.
    pub fn netavark_dir(&self) -> PathBuf {
        self.run.join("netavark")
    }

    /// The daemon's directories and their modes, parents first, set whatever
    /// the umask. Only the daemon (root) lists any of them. Images, writable
    /// layers, runtime state, shim sockets and netavark's config are its
    /// alone (0700; the content store and snapshots are made 0700 by
    /// vordr-image when they are opened). The root and run directories, the
    /// pod files (resolv.conf, hosts, hostname), the namespace pins and the
    /// bundles can be passed through (0711), not listed: a container of a
    /// pod with its own user namespace is set up by youki or runc from
    /// inside that namespace, as an unprivileged host user, and reaches its
    /// rootfs, its pod's files and the pins by path (containerd makes its
    /// bundle parent 0711 for the same reason). What must stay private in
    /// there is 0600 itself (config.json).
    pub fn state_dirs(&self) -> Vec<(PathBuf, u32)> {
        vec![
            (self.root.clone(), TRAVERSE_DIR),
            (self.run.clone(), TRAVERSE_DIR),
            (self.pods_dir(), TRAVERSE_DIR),
            (self.images_dir(), PRIVATE_DIR),
            (self.containers_dir(), PRIVATE_DIR),
            (self.namespaces_dir(), TRAVERSE_DIR),
            (self.bundles_dir(), TRAVERSE_DIR),
            (self.run.join("runtime"), PRIVATE_DIR),
            (self.shim_socket_dir(), PRIVATE_DIR),
            (self.netavark_dir(), PRIVATE_DIR),
        ]
    }
}
