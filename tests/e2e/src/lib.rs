//! Harness for Vordr's end-to-end tests: each test gets its own `vordr
//! serve` with its own socket, root, run dir, bridge and subnet, and every
//! pod it made is removed when the test ends, pass or fail.

pub mod cgroup;
pub mod registry;
pub mod setup;

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use vordr_client::{cri, CriClient};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The `vordr` binary under test: `$VORDR_BIN`, else the workspace's build.
pub fn vordr_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VORDR_BIN") {
        return PathBuf::from(p);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let p = target.join("debug").join("vordr");
    let built = std::fs::metadata(&p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} not found: run `cargo build -p vordr` (just test does)",
                p.display()
            )
        });
    let sources = std::fs::read_dir(ws.join("crates"))
        .unwrap()
        .flatten()
        .map(|c| newest_source(&c.path().join("src")))
        .max()
        .unwrap_or(std::time::UNIX_EPOCH);
    if sources > built {
        panic!(
            "{} is older than the sources: run `cargo build -p vordr` (just test does)",
            p.display()
        );
    }
    // The daemon starts the shim from its own directory.
    let shim = target.join("debug").join("containerd-shim-vordr-v1");
    let shim_built = std::fs::metadata(&shim).and_then(|m| m.modified());
    match shim_built {
        Ok(t) if t >= newest_source(&ws.join("shim/src")) => {}
        _ => panic!(
            "{} is missing or older than shim/src: run `cargo build -p vordr-shim` (just test does)",
            shim.display()
        ),
    }
    p
}

/// The newest modification time of any file below `dir` (the binary is
/// rebuilt when any crate's `src` changes; tests and manifests need not).
fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::UNIX_EPOCH;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else if let Ok(t) = md.modified() {
                newest = newest.max(t);
            }
        }
    }
    newest
}

/// `d` stretched by `$VORDR_E2E_TIME_SCALE` (a factor, default 1): the
/// harness's waits, for machines much slower than the developer's (the
/// cgroup v2 guest under QEMU's software emulation, scripts/guest/).
pub fn scaled(d: Duration) -> Duration {
    let f = std::env::var("VORDR_E2E_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 1.0)
        .unwrap_or(1.0);
    d.mul_f64(f)
}

/// The warm pool of a test's daemon unless the test sets its own:
/// `$VORDR_E2E_POOL_SIZE`, else 2. The cgroup v2 guest sets 0: under
/// software emulation every pooled pod's netavark setup costs seconds.
pub fn default_pool_size() -> u32 {
    std::env::var("VORDR_E2E_POOL_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// Whether these tests can run here (root, netavark).
pub fn can_run() -> bool {
    nix::unistd::geteuid().is_root() && Path::new("/usr/lib/podman/netavark").exists()
}

fn routes() -> String {
    Command::new("ip")
        .args(["-4", "route"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A /24 and a bridge name no other test on this machine uses right now.
pub fn unique_network(tag: &str) -> (String, String) {
    let routes = routes();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mut h = DefaultHasher::new();
        (std::process::id(), n, tag).hash(&mut h);
        let v = h.finish();
        let b = 128 + (v % 100) as u8;
        let c = ((v >> 8) % 256) as u8;
        let subnet = format!("10.{b}.{c}.0/24");
        let bridge = format!("vt{:06x}", (v >> 16) & 0xff_ffff);
        if !routes.contains(&format!("10.{b}.{c}.0/24")) {
            return (subnet, bridge);
        }
    }
}

/// setns(fd, CLONE_NEWNET) without allocating (for `pre_exec`).
fn libc_setns(fd: i32) -> i32 {
    nix::sched::setns(
        // SAFETY: the caller keeps `fd` open for the call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::sched::CloneFlags::CLONE_NEWNET,
    )
    .map(|_| 0)
    .unwrap_or(-1)
}

/// `[gatekeeper]` lines for tests of runtime features the baseline profile
/// refuses (host namespaces, unsafe sysctls): everything allowed, audited.
pub const PRIVILEGED: &str = "profile = \"privileged\"";

/// A running `vordr serve` for one test.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub config: PathBuf,
    pub subnet: String,
    pub bridge: String,
    pub network_name: String,
    /// Extra environment for `vordr serve` (e.g. a crash point).
    pub env: Vec<(String, String)>,
    /// The network namespace `vordr serve` runs in (the host's if `None`).
    pub netns: Option<PathBuf>,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon with extra `[network]` TOML lines.
    pub async fn start_with(tag: &str, extra_network: &str) -> Daemon {
        Daemon::start_full(tag, extra_network, "", "").await
    }

    /// Starts a daemon that reads `registries` as its registries.conf.
    pub async fn start_with_registries(tag: &str, registries: &str) -> Daemon {
        Daemon::start_full(tag, "", registries, "").await
    }

    /// Starts a daemon with `[gatekeeper]` TOML lines (the default profile
    /// is the embedded config's "baseline").
    pub async fn start_with_gatekeeper(tag: &str, gatekeeper: &str) -> Daemon {
        Daemon::start_full(tag, "", "", gatekeeper).await
    }

    pub async fn start_full(
        tag: &str,
        extra_network: &str,
        registries: &str,
        gatekeeper: &str,
    ) -> Daemon {
        Daemon::start_full_in(tag, extra_network, registries, gatekeeper, None).await
    }

    /// [`Daemon::start_full`] with the daemon running in the network
    /// namespace pinned at `netns` (a simulated node of its own).
    pub async fn start_full_in(
        tag: &str,
        extra_network: &str,
        registries: &str,
        gatekeeper: &str,
        netns: Option<&Path>,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix(&format!("vordr-e2e-{tag}-"))
            .tempdir()
            .unwrap();
        let (subnet, bridge) = unique_network(tag);
        let network_name = format!("e2e-{bridge}");
        let socket = dir.path().join("vordr.sock");
        let root = dir.path().join("root");
        let run_dir = dir.path().join("run");
        let config = dir.path().join("vordr.toml");
        let registries_conf = dir.path().join("registries.conf");
        std::fs::write(&registries_conf, registries).unwrap();
        // Tests keep their pods' volumes under this kubelet root and their
        // logs in temporary directories.
        let kubelet_root = dir.path().join("kubelet");
        let log_root = std::fs::canonicalize(std::env::temp_dir()).unwrap();
        let pool = if extra_network.contains("pool_size") {
            String::new()
        } else {
            format!("pool_size = {}\n", default_pool_size())
        };
        std::fs::write(
            &config,
            format!(
                "[server]\nsocket = {socket:?}\nroot = {root:?}\nrun_dir = {run_dir:?}\nlog_level = \"debug\"\n\
                 registries_config = {registries_conf:?}\n\
                 [network]\nbridge = {bridge:?}\nsubnet = {subnet:?}\nnetwork_name = {network_name:?}\n\
                 use_pod_cidr = false\n{pool}{extra_network}\n[gatekeeper]\n\
                 kubelet_root = {kubelet_root:?}\nlog_root = {log_root:?}\n{gatekeeper}\n\
                 [cgroup]\ndriver = {driver:?}\n",
                driver = cgroup::driver(),
            ),
        )
        .unwrap();
        let mut d = Daemon {
            dir,
            socket,
            root,
            run_dir,
            config,
            subnet,
            bridge,
            network_name,
            env: Vec::new(),
            netns: netns.map(Path::to_path_buf),
            child: None,
        };
        d.spawn().await;
        d
    }

    /// kubelet's directory for the pod with this UID (created): host paths
    /// under it are the pod's own volumes to the gatekeeper.
    pub fn pod_volume_dir(&self, pod_uid: &str) -> PathBuf {
        let d = self.dir.path().join("kubelet/pods").join(pod_uid);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub async fn start(tag: &str) -> Daemon {
        Daemon::start_with(tag, "").await
    }

    /// Starts `vordr serve` and waits until it answers.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("vordr.log"))
            .unwrap();
        let mut cmd = Command::new(vordr_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(ns) = &self.netns {
            use std::os::fd::AsRawFd;
            use std::os::unix::process::CommandExt;
            let f = File::open(ns).unwrap();
            // SAFETY: setns is async-signal-safe; the file outlives the spawn.
            unsafe {
                cmd.pre_exec(move || {
                    if libc_setns(f.as_raw_fd()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("starting vordr serve");
        self.child = Some(child);
        let deadline = Instant::now() + scaled(Duration::from_secs(20));
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("vordr serve exited early ({st}):\n{}", self.log());
            }
            if let Ok(mut c) = CriClient::connect_path(&self.socket).await {
                if c.runtime
                    .version(cri::VersionRequest::default())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "vordr serve did not answer:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vordr.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the daemon process has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => {
                self.child = None;
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// This daemon's shims (working in one of its bundles) and pod inits
    /// (naming one of its pod directories), as "pid args".
    pub fn processes(&self) -> Vec<String> {
        let bundles = self.run_dir.join("bundles");
        let ns = self.run_dir.join("ns");
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.parse::<u32>().is_err() {
                continue;
            }
            let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
            let args = std::fs::read(e.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            if cwd.starts_with(&bundles) || args.contains(&format!("--pod {}", ns.display())) {
                out.push(format!("{name} {args}"));
            }
        }
        out
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + scaled(Duration::from_secs(10));
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `vordr serve` on this daemon's config with `args` added, where
    /// it must refuse to start: waits for its exit, asserts it failed and
    /// bound no CRI socket, and returns what it wrote to stderr.
    pub async fn serve_must_fail(&self, args: &[&str]) -> String {
        let mut child = std::process::Command::new(vordr_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("vordr serve {args:?} started; it should have refused");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{stderr}");
        assert!(!self.socket.exists(), "the CRI socket was bound: {stderr}");
        stderr
    }

    /// Restarts the daemon with `lines` added to its `[server]` table
    /// (e.g. `metrics_address = "127.0.0.1:9435"`); pods keep running.
    pub async fn restart_with_server(&mut self, lines: &str) {
        self.terminate();
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        let cfg = cfg.replacen("[server]\n", &format!("[server]\n{lines}\n"), 1);
        std::fs::write(&self.config, cfg).unwrap();
        self.spawn().await;
    }

    pub async fn client(&self) -> CriClient {
        CriClient::connect_path(&self.socket).await.unwrap()
    }

    pub fn ns_dir(&self, pod: &str) -> PathBuf {
        self.run_dir.join("ns").join(pod)
    }

    pub fn gateway(&self) -> Ipv4Addr {
        let base: Ipv4Addr = self.subnet.trim_end_matches("/24").parse().unwrap();
        Ipv4Addr::from(u32::from(base) + 1)
    }

    /// Mounts under this daemon's directory (namespace pins).
    pub fn mounts(&self) -> Vec<String> {
        let prefix = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }

    /// Firewall rules that mention this daemon's subnet.
    pub fn firewall_rules(&self) -> Vec<String> {
        self.firewall_rules_all()
            .into_iter()
            .filter(|l| l.contains(&self.subnet))
            .collect()
    }

    /// Every IPv4/IPv6 firewall rule on the machine (iptables and nftables).
    pub fn firewall_rules_all(&self) -> Vec<String> {
        let mut rules = Vec::new();
        for cmd in ["iptables-save", "ip6tables-save"] {
            if let Ok(o) = Command::new(cmd).output() {
                rules.extend(String::from_utf8_lossy(&o.stdout).lines().map(String::from));
            }
        }
        if let Ok(o) = Command::new("nft").args(["list", "ruleset"]).output() {
            rules.extend(String::from_utf8_lossy(&o.stdout).lines().map(String::from));
        }
        rules
    }

    /// Interfaces enslaved to this daemon's bridge.
    pub fn bridge_ports(&self) -> Vec<String> {
        Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// IP allocations in the daemon's database, as (ip, pod id).
    pub fn ip_allocations(&self) -> Vec<(String, String)> {
        let db = rusqlite::Connection::open_with_flags(
            self.root.join("vordr.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut st = db.prepare("SELECT ip, pod_id FROM ip_allocations").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Everything a removed pod may leave behind; empty when clean.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.mounts().into_iter().map(|m| format!("mount {m}")));
        out.extend(
            self.firewall_rules()
                .into_iter()
                .map(|r| format!("rule {r}")),
        );
        out.extend(
            self.bridge_ports()
                .into_iter()
                .map(|p| format!("bridge port {p}")),
        );
        out.extend(
            self.ip_allocations()
                .into_iter()
                .map(|(ip, pod)| format!("ip {ip} for {pod}")),
        );
        if let Ok(rd) = std::fs::read_dir(self.run_dir.join("ns")) {
            out.extend(
                rd.filter_map(|e| e.ok())
                    .map(|e| format!("pin dir {:?}", e.file_name())),
            );
        }
        if let Ok(rd) = std::fs::read_dir(self.root.join("pods")) {
            out.extend(
                rd.filter_map(|e| e.ok())
                    .map(|e| format!("pod dir {:?}", e.file_name())),
            );
        }
        out.extend(self.processes().into_iter().map(|p| format!("process {p}")));
        for (what, dir) in [
            ("bundle", self.run_dir.join("bundles")),
            ("container dir", self.root.join("containers")),
            ("shim socket", self.run_dir.join("s")),
        ] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                out.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| format!("{what} {:?}", e.file_name())),
                );
            }
        }
        out
    }

    /// Warm-pool slots in the database, as (id, state).
    pub fn pool_slots(&self) -> Vec<(String, String)> {
        let db = rusqlite::Connection::open_with_flags(
            self.root.join("vordr.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut st = db
            .prepare("SELECT id, state FROM pods WHERE state IN ('pooled', 'pool-creating')")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Waits until `n` warm-pool slots are ready.
    pub async fn wait_pool(&self, n: usize) {
        let deadline = Instant::now() + scaled(Duration::from_secs(30));
        loop {
            let slots = self.pool_slots();
            if slots.len() == n && slots.iter().all(|(_, s)| s == "pooled") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pool never reached {n}: {slots:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Restarts the daemon with the warm pool turned off and waits until its
    /// slots are gone, so that `leftovers` can demand a clean machine.
    pub async fn drain_pool(&mut self) {
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        if cfg.lines().any(|l| l == "pool_size = 0") && self.child.is_some() {
            // No pool to drain: no restart.
            self.wait_pool(0).await;
            return;
        }
        self.terminate();
        let cfg: String = cfg
            .lines()
            .filter(|l| !l.starts_with("pool_size"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(
            &self.config,
            cfg.replace("[network]\n", "[network]\npool_size = 0\n"),
        )
        .unwrap();
        self.spawn().await;
        self.wait_pool(0).await;
    }

    /// Removes every pod through the daemon (restarting it if it is down).
    pub async fn remove_all_pods(&mut self) {
        if self.child.is_none() {
            self.spawn().await;
        }
        let mut c = self.client().await;
        let pods = list_pods(&mut c).await;
        for p in pods {
            c.runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("removing {}: {e}\n{}", p.id, self.log()));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Clean up even when the test failed: remove pods through a daemon
        // (it tears down netavark state), then stop it, then sweep.
        let socket_dir = self.dir.path().to_path_buf();
        let this = self;
        let done = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    tokio::time::timeout(scaled(Duration::from_secs(60)), async {
                        this.remove_all_pods().await;
                        this.drain_pool().await;
                    })
                    .await
                })
                .is_ok()
            })
            .join()
            .unwrap_or(false)
        });
        if !done {
            eprintln!(
                "e2e cleanup: could not remove pods via the daemon in {}",
                socket_dir.display()
            );
        }
        this.terminate();
        for m in this.mounts().iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &this.bridge])
            .output();
        if std::thread::panicking() {
            eprintln!("--- vordr log ---\n{}", this.log());
        }
    }
}

/// A registry holding the busybox image (`registry::push_busybox`) and a
/// daemon that trusts that registry and has pulled the image; `None` (the
/// test skips) where these tests cannot run.
pub async fn daemon_with_busybox(tag: &str) -> Option<(registry::Registry, Daemon, String)> {
    daemon_with_busybox_and(tag, "").await
}

/// [`daemon_with_busybox`] with `[gatekeeper]` TOML lines.
pub async fn daemon_with_busybox_and(
    tag: &str,
    gatekeeper: &str,
) -> Option<(registry::Registry, Daemon, String)> {
    daemon_with_busybox_full(tag, "", gatekeeper).await
}

/// [`daemon_with_busybox`] with `[network]` and `[gatekeeper]` TOML lines.
pub async fn daemon_with_busybox_full(
    tag: &str,
    extra_network: &str,
    gatekeeper: &str,
) -> Option<(registry::Registry, Daemon, String)> {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return None;
    }
    let reg = registry::Registry::start();
    let image = format!("{}/e2e/busybox:1", reg.addr);
    registry::push_busybox(&image, serde_json::json!({"Cmd": ["sh"]})).await;
    let registries = format!(
        "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
        reg.addr
    );
    let d = Daemon::start_full(tag, extra_network, &registries, gatekeeper).await;
    let mut c = d.client().await;
    c.image
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pulling {image}: {e}\n{}", d.log()));
    Some((reg, d, image))
}

/// A pod config with a unique uid.
pub fn pod_config(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "e2e".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        labels: [("app".to_string(), name.to_string())].into(),
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

pub async fn run_pod(
    c: &mut CriClient,
    cfg: cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    run_pod_with(c, cfg, "").await
}

/// [`run_pod`] with a runtime handler.
pub async fn run_pod_with(
    c: &mut CriClient,
    cfg: cri::PodSandboxConfig,
    handler: &str,
) -> Result<String, tonic::Status> {
    c.runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: handler.into(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

/// Every container, unfiltered.
pub async fn list_containers(c: &mut CriClient) -> Vec<cri::Container> {
    c.runtime
        .list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers
}

/// Every pod sandbox, unfiltered.
pub async fn list_pods(c: &mut CriClient) -> Vec<cri::PodSandbox> {
    c.runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
}

pub async fn pod_status(
    c: &mut CriClient,
    id: &str,
) -> Result<cri::PodSandboxStatusResponse, tonic::Status> {
    c.runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn pod_ip(c: &mut CriClient, id: &str) -> String {
    pod_status(c, id)
        .await
        .unwrap()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip
}

/// ContainerStatus's verbose info (`info["info"]`) as JSON.
pub async fn container_info(c: &mut CriClient, id: &str) -> serde_json::Value {
    let info = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    serde_json::from_str(&info["info"]).unwrap()
}

/// Runs `f` in the network namespace pinned at `netns`, on a fresh thread.
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(netns).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// `ping -c1` from the host.
pub fn ping(ip: &str) -> bool {
    Command::new("ping")
        .args(["-c", "1", "-W", "2", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
