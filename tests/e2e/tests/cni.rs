//! The CNI network driver end to end, with Debian's reference plugins
//! (`containernetworking-plugins` in /usr/lib/cni): NetworkReady follows
//! the config directory, pods get addresses from host-local and reach
//! each other over the bridge, host ports through portmap, bandwidth
//! through the bandwidth plugin, and teardown leaves no veth, rule,
//! address or cache entry, also after a kill -9 at the worst moments.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tonic::Code;
use vordr_e2e::*;

const PLUGINS: &str = "/usr/lib/cni";

struct Net {
    d: Daemon,
    c: CriClient,
    conf_dir: tempfile::TempDir,
    ipam_dir: PathBuf,
}

/// A daemon with the CNI driver and an empty config directory.
async fn daemon(tag: &str) -> Option<Net> {
    if !can_run() || !Path::new(PLUGINS).join("bridge").exists() {
        eprintln!("skipped: needs root, netavark's test setup and {PLUGINS}");
        return None;
    }
    let conf_dir = tempfile::tempdir().unwrap();
    let network = format!(
        "driver = \"cni\"\n[network.cni]\nconf_dir = {:?}\nbin_dirs = [{PLUGINS:?}]\n",
        conf_dir.path()
    );
    let d = Daemon::start_full(tag, &network, "", PRIVILEGED).await;
    let c = d.client().await;
    let ipam_dir = d.dir.path().join("ipam");
    Some(Net {
        d,
        c,
        conf_dir,
        ipam_dir,
    })
}

impl Net {
    /// bridge + host-local (the daemon's own subnet and bridge name) +
    /// portmap + bandwidth, written as the network add-on would.
    fn write_config(&self) {
        self.write_config_with(false)
    }

    /// [`Net::write_config`], marked safe for the warm pool or not.
    fn write_config_with(&self, pool_safe: bool) {
        let mut conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("e2e-{}", self.d.bridge),
            "plugins": [
                {"type": "bridge", "bridge": self.d.bridge, "isGateway": true, "ipMasq": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": self.d.subnet}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": self.ipam_dir}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "bandwidth", "capabilities": {"bandwidth": true}}
            ]
        });
        if pool_safe {
            conf["vordr.io/pool-safe"] = true.into();
        }
        std::fs::write(
            self.conf_dir.path().join("10-e2e.conflist"),
            serde_json::to_vec_pretty(&conf).unwrap(),
        )
        .unwrap();
    }

    async fn network_ready(&mut self) -> cri::RuntimeCondition {
        let st = self
            .c
            .runtime
            .status(cri::StatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        st.status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .unwrap()
    }

    fn host_local_addresses(&self) -> Vec<String> {
        std::fs::read_dir(&self.ipam_dir)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|n| std::fs::read_dir(n.path()).into_iter().flatten().flatten())
            .map(|f| f.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    fn cache_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.d.root.join("cni/cache"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Firewall rules naming one of `ids` (portmap tags its chains with the
    /// container id) or this test's subnet.
    fn rules_for(&self, ids: &[String]) -> Vec<String> {
        self.d
            .firewall_rules_all()
            .into_iter()
            .filter(|r| ids.iter().any(|id| r.contains(id.as_str())) || r.contains(&self.d.subnet))
            .collect()
    }

    async fn remove(&mut self, id: &str) {
        self.c
            .runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("stop {id}: {e}\n{}", self.d.log()));
        self.c
            .runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("remove {id}: {e}\n{}", self.d.log()));
    }

    fn assert_clean(&self, ids: &[String], context: &str) {
        let mut left = self.d.leftovers();
        left.extend(
            self.host_local_addresses()
                .into_iter()
                .map(|a| format!("host-local {a}")),
        );
        left.extend(
            self.cache_entries()
                .into_iter()
                .map(|e| format!("cache {e}")),
        );
        // The bridge stays (as with every CNI runtime); nothing may hang on it.
        left.extend(
            self.rules_for(ids)
                .into_iter()
                .filter(|r| {
                    // ipMasq rules name the pod's address and id: none may stay.
                    ids.iter().any(|id| r.contains(id.as_str()))
                })
                .map(|r| format!("rule {r}")),
        );
        assert!(
            left.is_empty(),
            "{context}: left behind {left:#?}\n{}",
            self.d.log()
        );
    }
}

fn ports(host_port: i32) -> Vec<cri::PortMapping> {
    vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }]
}

fn host_port(n: &Net) -> i32 {
    let b =
        n.d.bridge
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    30000 + (b % 10000) as i32
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_on_a_cni_bridge_network() {
    let Some(mut n) = daemon("cni").await else {
        return;
    };
    // No config yet: the network is not ready and pods cannot start.
    let ready = n.network_ready().await;
    assert!(!ready.status);
    assert!(
        ready.message.contains("no valid CNI config list"),
        "{ready:?}"
    );
    let e = run_pod(&mut n.c, pod_config("cni-early"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    n.write_config();
    assert!(
        n.network_ready().await.status,
        "{:?}",
        n.network_ready().await
    );

    let mut a_cfg = pod_config("cni-a");
    let port = host_port(&n);
    a_cfg.port_mappings = ports(port);
    a_cfg
        .annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "1M".into());
    let a = run_pod(&mut n.c, a_cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", n.d.log()));
    let b = run_pod(&mut n.c, pod_config("cni-b")).await.unwrap();
    let ip_a = pod_ip(&mut n.c, &a).await;
    let ip_b = pod_ip(&mut n.c, &b).await;
    let prefix = n.d.subnet.trim_end_matches("0/24").to_string();
    assert!(
        ip_a.starts_with(&prefix) && ip_b.starts_with(&prefix),
        "{ip_a} {ip_b}"
    );
    assert_ne!(ip_a, ip_b);
    assert_eq!(n.host_local_addresses().len(), 2);
    assert_eq!(n.cache_entries().len(), 2);

    // Pod to pod over the bridge.
    let ns_a = n.d.ns_dir(&a).join("net");
    // The pod's loopback is up, though the list has no loopback plugin
    // (PortForward connects to it).
    let lo = in_netns(&ns_a, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std::net::TcpStream::connect(l.local_addr().unwrap()).is_ok()
    });
    assert!(lo, "the pod's loopback is down");
    let target = ip_b.clone();
    assert!(
        in_netns(&ns_a, move || ping(&target)),
        "{ip_a} cannot reach {ip_b}"
    );

    // The host port (portmap) reaches a server in pod a.
    let listener = in_netns(&ns_a, || {
        std::net::TcpListener::bind("0.0.0.0:8080").unwrap()
    });
    let server = std::thread::spawn(move || {
        use std::io::Write;
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"hello from the pod").unwrap();
        }
    });
    // On the node's own address and on its loopback.
    for host_ip in [host_address(), "127.0.0.1".to_string()] {
        let mut got = String::new();
        use std::io::Read;
        std::net::TcpStream::connect_timeout(
            &format!("{host_ip}:{port}").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| {
            panic!(
                "host port {host_ip}:{port}: {e}\n{:#?}",
                n.rules_for(std::slice::from_ref(&a))
            )
        })
        .read_to_string(&mut got)
        .unwrap();
        assert_eq!(got, "hello from the pod", "via {host_ip}");
    }
    server.join().unwrap();

    // The bandwidth plugin shaped pod a's traffic (tbf at 1 Mbit).
    let qdiscs = Command::new("tc").args(["qdisc", "show"]).output().unwrap();
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
    assert!(
        qdiscs.contains("tbf") && qdiscs.contains("rate 1Mbit"),
        "{qdiscs}"
    );

    // PodSandboxStatus reports the address the plugin gave.
    let st = pod_status(&mut n.c, &a).await.unwrap().status.unwrap();
    assert_eq!(st.network.unwrap().ip, ip_a);

    let ids = vec![a.clone(), b.clone()];
    n.remove(&a).await;
    n.remove(&b).await;
    n.assert_clean(&ids, "after removal");
    let qdiscs = Command::new("tc").args(["qdisc", "show"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&qdiscs.stdout).contains("rate 1Mbit"));

    // The config goes away: not ready again.
    std::fs::remove_file(n.conf_dir.path().join("10-e2e.conflist")).unwrap();
    assert!(!n.network_ready().await.status);
}

/// The node's first non-loopback IPv4 address (portmap's DNAT matches
/// traffic to local addresses; loopback needs route_localnet).
fn host_address() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .map(|a| a.split('/').next().unwrap().to_string())
        .next()
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// kill -9 after the plugins attached the pod but before its row knew, and
/// after they detached it but before its row knew: after a restart the pod
/// is removable and nothing is left.
#[tokio::test(flavor = "multi_thread")]
async fn crashes_around_add_and_del_leak_nothing() {
    let Some(mut n) = daemon("cnicrash").await else {
        return;
    };
    n.write_config();
    for (i, point) in ["cni.added", "pod.network-detached"].iter().enumerate() {
        n.d.terminate();
        n.d.env = vec![(vordr_cri::faults::ENV.to_string(), point.to_string())];
        n.d.spawn().await;
        n.c = n.d.client().await;
        let mut cfg = pod_config(&format!("cnicrash{i}"));
        cfg.port_mappings = ports(host_port(&n) + i as i32);
        let res = async {
            let id = run_pod(&mut n.c, cfg).await?;
            n.c.runtime
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                })
                .await?;
            Ok::<_, tonic::Status>(id)
        }
        .await;
        assert!(res.is_err(), "{point}: the lifecycle finished");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !n.d.exited() {
            assert!(
                std::time::Instant::now() < deadline,
                "{point}: the daemon did not crash ({res:?})\n{}",
                n.d.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        n.d.env.clear();
        n.d.spawn().await;
        n.c = n.d.client().await;
        let pods = list_pods(&mut n.c).await;
        let ids: Vec<String> = pods.iter().map(|p| p.id.clone()).collect();
        for id in &ids {
            n.remove(id).await;
        }
        n.assert_clean(&ids, point);
        let port = host_port(&n) + i as i32;
        let dnat: Vec<String> =
            n.d.firewall_rules_all()
                .into_iter()
                .filter(|r| r.contains(&format!("dport {port} ")))
                .collect();
        assert!(dnat.is_empty(), "{point}: host port rules left: {dnat:#?}");
    }
}

/// Two named network namespaces standing for two nodes on one link,
/// deleted (with everything in them) when dropped.
struct Nodes {
    names: [String; 2],
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two nodes, each with its own Vordr and CNI bridge, their pod CIDRs
/// routed to each other as a host-gw network add-on routes them: a pod on
/// one node reaches a pod on the other.
#[tokio::test(flavor = "multi_thread")]
async fn pods_on_two_nodes_reach_each_other_over_routed_pod_cidrs() {
    if !can_run() || !Path::new(PLUGINS).join("bridge").exists() {
        eprintln!("skipped: needs root and {PLUGINS}");
        return;
    }
    let id = std::process::id() % 100_000;
    let nodes = Nodes {
        names: [format!("vordr-e2e-na{id}"), format!("vordr-e2e-nb{id}")],
    };
    let (link_a, link_b) = (format!("vna{id}"), format!("vnb{id}"));
    for n in &nodes.names {
        sh(&["ip", "netns", "add", n]);
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        sh(&[
            "ip",
            "netns",
            "exec",
            n,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
    }
    sh(&[
        "ip", "link", "add", &link_a, "type", "veth", "peer", "name", &link_b,
    ]);
    sh(&["ip", "link", "set", &link_a, "netns", &nodes.names[0]]);
    sh(&["ip", "link", "set", &link_b, "netns", &nodes.names[1]]);
    let node_ips = ["192.168.251.1", "192.168.251.2"];
    for (i, (n, l)) in nodes.names.iter().zip([&link_a, &link_b]).enumerate() {
        sh(&[
            "ip",
            "-n",
            n,
            "addr",
            "add",
            &format!("{}/30", node_ips[i]),
            "dev",
            l,
        ]);
        sh(&["ip", "-n", n, "link", "set", l, "up"]);
    }
    // Each node's pod CIDR: half of a test-unique /24.
    let (subnet, _) = unique_network("twonode");
    let base = subnet.trim_end_matches("0/24").to_string();
    let cidrs = [format!("{base}0/25"), format!("{base}128/25")];
    // host-gw: each node routes the other's pod CIDR via the other node.
    sh(&[
        "ip",
        "-n",
        &nodes.names[0],
        "route",
        "add",
        &cidrs[1],
        "via",
        node_ips[1],
    ]);
    sh(&[
        "ip",
        "-n",
        &nodes.names[1],
        "route",
        "add",
        &cidrs[0],
        "via",
        node_ips[0],
    ]);

    let mut daemons = Vec::new();
    for (i, n) in nodes.names.iter().enumerate() {
        let conf_dir = tempfile::tempdir().unwrap();
        let ipam = conf_dir.path().join("ipam");
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "host-gw",
            "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
                         "ipam": {"type": "host-local", "ranges": [[{"subnet": cidrs[i]}]],
                                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam}}]
        });
        std::fs::write(conf_dir.path().join("10-hostgw.conflist"), conf.to_string()).unwrap();
        let network = format!(
            "driver = \"cni\"\n[network.cni]\nconf_dir = {:?}\nbin_dirs = [{PLUGINS:?}]\n",
            conf_dir.path()
        );
        let ns = PathBuf::from("/run/netns").join(n);
        let d =
            Daemon::start_full_in(&format!("node{i}"), &network, "", PRIVILEGED, Some(&ns)).await;
        daemons.push((d, conf_dir));
    }
    let mut ips = Vec::new();
    let mut pods = Vec::new();
    for (i, (d, _)) in daemons.iter().enumerate() {
        let mut c = d.client().await;
        let pod = run_pod(&mut c, pod_config(&format!("node{i}-pod")))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
        let ip = pod_ip(&mut c, &pod).await;
        assert!(ip.starts_with(&base), "{ip} not in {}", cidrs[i]);
        ips.push(ip);
        pods.push(pod);
    }
    let from = daemons[0].0.ns_dir(&pods[0]).join("net");
    let target = ips[1].clone();
    assert!(
        in_netns(&from, move || ping(&target)),
        "{} on node 0 cannot reach {} on node 1",
        ips[0],
        ips[1]
    );
    let back = daemons[1].0.ns_dir(&pods[1]).join("net");
    let target = ips[0].clone();
    assert!(in_netns(&back, move || ping(&target)));
    for (d, _) in daemons.iter_mut() {
        d.remove_all_pods().await;
        assert!(d.leftovers().is_empty(), "{:#?}", d.leftovers());
    }
}

/// A config list marked safe for the warm pool: slots are attached through
/// the plugins ahead of time, pods take them, and nothing is left after.
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_safe_config_list_gets_a_warm_pool() {
    let Some(mut n) = daemon("cnipool").await else {
        return;
    };
    n.write_config_with(true);
    // The daemon reads the list on the next Status; the pool follows.
    assert!(n.network_ready().await.status);
    n.d.terminate();
    n.d.spawn().await;
    n.c = n.d.client().await;
    n.d.wait_pool(2).await;
    assert_eq!(n.host_local_addresses().len(), 2);
    let slots: Vec<String> = n.d.pool_slots().into_iter().map(|(id, _)| id).collect();
    let pod = run_pod(&mut n.c, pod_config("cnipool-a")).await.unwrap();
    assert!(slots.contains(&pod), "the pod took a slot");
    let ip = pod_ip(&mut n.c, &pod).await;
    assert!(ip.starts_with(n.d.subnet.trim_end_matches("0/24")), "{ip}");
    n.d.wait_pool(2).await;
    n.remove(&pod).await;
    n.d.drain_pool().await;
    n.c = n.d.client().await;
    n.assert_clean(&slots, "pool drained");
}

/// A ptp config list (a veth per pod, routed by the node, no bridge): the
/// pod gets an address, the node reaches it, and nothing is left after.
#[tokio::test(flavor = "multi_thread")]
async fn a_ptp_network() {
    let Some(mut n) = daemon("cniptp").await else {
        return;
    };
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": format!("e2e-ptp-{}", n.d.bridge),
        "plugins": [{"type": "ptp", "ipMasq": false,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": n.d.subnet}]],
                              "dataDir": n.ipam_dir}}]
    });
    std::fs::write(n.conf_dir.path().join("20-ptp.conflist"), conf.to_string()).unwrap();
    let pod = run_pod(&mut n.c, pod_config("ptp-a"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", n.d.log()));
    let ip = pod_ip(&mut n.c, &pod).await;
    assert!(ip.starts_with(n.d.subnet.trim_end_matches("0/24")), "{ip}");
    assert!(ping(&ip), "the node cannot reach {ip}");
    assert_eq!(n.host_local_addresses().len(), 1);
    n.remove(&pod).await;
    n.assert_clean(&[pod], "ptp");
}

/// A spec 1.1 config list: NetworkReady follows the plugins' STATUS.
#[tokio::test(flavor = "multi_thread")]
async fn network_ready_follows_status_of_a_1_1_list() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut n) = daemon("cnistatus").await else {
        return;
    };
    // A plugin of our own (first in bin_dirs) that is not ready while a
    // marker file exists, as an add-on whose agent is down.
    let bin = n.d.dir.path().join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let marker = n.d.dir.path().join("agent-down");
    let plugin = bin.join("gate");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = STATUS ] && [ -e {} ]; then\n  echo '{{\"code\":50,\"msg\":\"the agent is down\"}}'\n  exit 1\nfi\nexit 0\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = std::fs::read_to_string(&n.d.config).unwrap().replace(
        &format!("bin_dirs = [{PLUGINS:?}]"),
        &format!("bin_dirs = [{:?}, {PLUGINS:?}]", bin),
    );
    std::fs::write(&n.d.config, cfg).unwrap();
    n.d.terminate();
    n.d.spawn().await;
    n.c = n.d.client().await;
    std::fs::write(
        n.conf_dir.path().join("10-gate.conflist"),
        r#"{"cniVersion":"1.1.0","name":"gated","plugins":[{"type":"gate"}]}"#,
    )
    .unwrap();
    assert!(
        n.network_ready().await.status,
        "{:?}",
        n.network_ready().await
    );
    std::fs::write(&marker, "").unwrap();
    let c = n.network_ready().await;
    assert!(!c.status);
    assert!(c.message.contains("the agent is down"), "{c:?}");
    std::fs::remove_file(&marker).unwrap();
    assert!(n.network_ready().await.status);
}
