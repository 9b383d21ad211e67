//! Writes the seed corpora under fuzz/corpus/<target>/: a handful of
//! valid (and a few hostile) inputs per target, named `seed-*`.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//!
//! Re-running rewrites the seeds and leaves what fuzzing added alone.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::{BufMut, BytesMut};
use k8s_cri::v1::{
    security_profile::ProfileType, Capability, ContainerConfig, ContainerMetadata,
    CreateContainerRequest, Device, IdMapping, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, SecurityProfile, UserNamespace,
};
use prost::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame as WsFrame, FrameHeader};
use tokio_util::codec::Encoder;
use vordr_spdy::{Codec, Frame, Headers, Setting};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus(target).join(format!("seed-{name}")), bytes).unwrap();
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut h = Headers::new();
    for (n, v) in pairs {
        h.add(n, v);
    }
    h
}

/// What kubelet's and kubectl's SPDY exec and port-forward sessions send.
fn spdy_frames() -> Vec<(&'static str, Vec<Frame>)> {
    let syn = |id: u32, h: Headers, flags: u8| Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        flags,
        headers: h,
    };
    vec![
        (
            "exec",
            vec![
                syn(
                    1,
                    headers(&[("streamtype", "error"), ("x-kubernetes-pty", "false")]),
                    0,
                ),
                syn(3, headers(&[("streamtype", "stdin")]), 0),
                syn(5, headers(&[("streamtype", "stdout")]), 0),
                syn(7, headers(&[("streamtype", "stderr")]), 0),
                Frame::data(3, 0, bytes::Bytes::from_static(b"ls -l\n")),
                Frame::data(3, vordr_spdy::FLAG_FIN, bytes::Bytes::new()),
                Frame::Ping { id: 1 },
            ],
        ),
        (
            "tty-resize",
            vec![
                syn(1, headers(&[("streamtype", "error")]), 0),
                syn(3, headers(&[("streamtype", "resize")]), 0),
                Frame::data(
                    3,
                    0,
                    bytes::Bytes::from_static(b"{\"Width\":80,\"Height\":24}\n"),
                ),
            ],
        ),
        (
            "portforward",
            vec![
                syn(
                    1,
                    headers(&[
                        ("streamtype", "error"),
                        ("port", "8080"),
                        ("requestid", "0"),
                    ]),
                    0,
                ),
                syn(
                    3,
                    headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
                    0,
                ),
                Frame::data(3, 0, bytes::Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n")),
                Frame::RstStream {
                    stream_id: 3,
                    status: vordr_spdy::rst::CANCEL,
                },
            ],
        ),
        (
            "control",
            vec![
                Frame::Settings {
                    flags: vordr_spdy::FLAG_SETTINGS_CLEAR,
                    entries: vec![
                        Setting {
                            flags: 0,
                            id: vordr_spdy::settings::INITIAL_WINDOW_SIZE,
                            value: 1 << 20,
                        },
                        Setting {
                            flags: 1,
                            id: vordr_spdy::settings::MAX_CONCURRENT_STREAMS,
                            value: 100,
                        },
                    ],
                },
                Frame::WindowUpdate {
                    stream_id: 0,
                    delta: 1 << 16,
                },
                Frame::SynReply {
                    stream_id: 1,
                    flags: 0,
                    headers: headers(&[("x-a", "1"), ("x-a", "2")]),
                },
                Frame::Headers {
                    stream_id: 1,
                    flags: vordr_spdy::FLAG_FIN,
                    headers: headers(&[("trailer", "yes")]),
                },
                Frame::Unknown {
                    kind: 10,
                    flags: 0,
                    payload: bytes::Bytes::from_static(b"cred"),
                },
                Frame::GoAway {
                    last_good_stream_id: 7,
                    status: vordr_spdy::goaway::OK,
                },
            ],
        ),
    ]
}

fn gen_spdy() {
    for (name, frames) in spdy_frames() {
        let mut c = Codec::new();
        let mut b = BytesMut::new();
        for f in frames {
            c.encode(f, &mut b).unwrap();
        }
        for chunk in [0u8, 6] {
            let mut input = vec![chunk];
            input.extend_from_slice(&b);
            write("spdy_frames", &format!("{name}-{chunk}"), &input);
        }
    }
    // Header blocks: the blocks of the frames above, length-prefixed.
    for (name, frames) in spdy_frames() {
        let mut c = Codec::new();
        let mut input = vec![0u8];
        for f in frames {
            let skip = match &f {
                Frame::SynStream { .. } => 18,
                Frame::SynReply { .. } | Frame::Headers { .. } => 12,
                _ => continue,
            };
            let mut b = BytesMut::new();
            c.encode(f, &mut b).unwrap();
            let block = &b[skip..];
            input.put_u16(block.len() as u16);
            input.extend_from_slice(block);
        }
        if input.len() > 1 {
            write("spdy_header_block", &format!("inflate-{name}"), &input);
        }
    }
    write(
        "spdy_header_block",
        "deflate",
        b"\x01streamtype:stdout\nport:8080\nrequestid:1\n\nx-kubernetes-pty:true\nX-A:1\nx-a:2\n",
    );
}

/// A WebSocket frame; masked as a client sends it when `mask`.
fn ws(op: OpCode, fin: bool, payload: &[u8], mask: bool) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        opcode: op,
        mask: mask.then_some([0x37, 0xfa, 0x21, 0x3d]),
        ..Default::default()
    };
    let f = WsFrame::from_payload(header, bytes::Bytes::copy_from_slice(payload));
    let mut out = Vec::new();
    f.format(&mut out).unwrap();
    out
}

fn gen_websocket() {
    let bin = OpCode::Data(Data::Binary);
    let text = OpCode::Data(Data::Text);
    let cont = OpCode::Data(Data::Continue);
    for (mode, mask) in [(0u8, true), (1, false)] {
        let exec = [
            ws(bin, true, b"\x00ls -l\n", mask),
            ws(bin, true, b"\x04{\"Width\":80,\"Height\":24}\n", mask),
            ws(bin, true, b"\xff\x00", mask),
            ws(OpCode::Control(Control::Ping), true, b"p", mask),
            ws(bin, false, b"\x00frag", mask),
            ws(cont, true, b"mented\n", mask),
            ws(OpCode::Control(Control::Close), true, b"\x03\xe8", mask),
        ]
        .concat();
        write(
            "websocket_frames",
            &format!("exec-binary-{mode}"),
            &[&[mode][..], &exec].concat(),
        );
        let b64 = [
            ws(text, true, b"0bHMgLWwK", mask),
            ws(text, true, b"4eyJXaWR0aCI6ODAsIkhlaWdodCI6MjR9Cg==", mask),
            ws(bin, true, b"2ZXJy", mask),
        ]
        .concat();
        write(
            "websocket_frames",
            &format!("exec-base64-{}", mode | 2),
            &[&[mode | 2][..], &b64].concat(),
        );
        let pf = [
            ws(bin, true, b"\x00\x90\x1f", mask),
            ws(bin, true, b"\x00GET / HTTP/1.1\r\n\r\n", mask),
            ws(bin, true, b"\x02\x50\x00", mask),
        ]
        .concat();
        write(
            "websocket_frames",
            &format!("portforward-{mode}"),
            &[&[mode][..], &pf].concat(),
        );
    }
}

/// A tar built entry by entry, names and link names written raw.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_600_000_000);
        h
    }
    fn raw(mut self, mut h: tar::Header, name: &str, link: Option<&str>, data: &[u8]) -> Tar {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname = [0; 100];
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(self, name: &str, data: &[u8]) -> Tar {
        self.raw(
            Self::header(tar::EntryType::Regular, 0o644),
            name,
            None,
            data,
        )
    }
    fn dir(self, name: &str) -> Tar {
        self.raw(
            Self::header(tar::EntryType::Directory, 0o755),
            name,
            None,
            b"",
        )
    }
    fn link(self, kind: tar::EntryType, name: &str, target: &str) -> Tar {
        self.raw(Self::header(kind, 0o777), name, Some(target), b"")
    }
    fn node(self, kind: tar::EntryType, name: &str, major: u32, minor: u32) -> Tar {
        let mut h = Self::header(kind, 0o600);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(h, name, None, b"")
    }
    fn pax_xattr(mut self, name: &str, key: &str, value: &[u8]) -> Tar {
        self.0
            .append_pax_extensions([(format!("SCHILY.xattr.{key}").as_str(), value)])
            .unwrap();
        self.file(name, b"with an xattr")
    }
    fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gen_tar() {
    use tar::EntryType::*;
    let base = Tar::new()
        .dir("./")
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .link(Symlink, "bin/sh", "/bin/busybox")
        .link(Link, "etc/passwd-", "etc/passwd")
        .raw(Tar::header(Regular, 0o4755), "usr/bin/su", None, b"#!")
        .done();
    write("tar_unpack", "basic.tar", &base);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&base).unwrap();
    write("tar_unpack", "basic.tar.gz", &gz.finish().unwrap());
    write(
        "tar_unpack",
        "basic.tar.zst",
        &zstd::encode_all(base.as_slice(), 3).unwrap(),
    );
    write(
        "tar_unpack",
        "whiteouts.tar",
        &Tar::new()
            .file("etc/.wh.motd", b"")
            .dir("var/cache/")
            .file("var/cache/.wh..wh..opq", b"")
            .file("var/cache/new", b"n")
            .done(),
    );
    write(
        "tar_unpack",
        "nodes-xattrs.tar",
        &Tar::new()
            .node(Char, "dev/null", 1, 3)
            .node(Block, "dev/loop9", 7, 9)
            .node(Fifo, "run/fifo", 0, 0)
            .pax_xattr(
                "bin/ping",
                "security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            )
            .pax_xattr("opt/x", "user.note", b"hi")
            .done(),
    );
    // Replacements: a file where a directory was, a dir over a file.
    write(
        "tar_unpack",
        "replace.tar",
        &Tar::new()
            .file("a", b"file")
            .file("a/b", b"now a dir")
            .dir("c/")
            .file("c", b"now a file")
            .link(Symlink, "d", "a")
            .file("d", b"over a symlink")
            .done(),
    );
    // Hostile: each must be refused without touching the sandbox around
    // the layer (/tmp/vordr-fuzz-unpack, see the target).
    write(
        "tar_unpack",
        "escape-dotdot.tar",
        &Tar::new().file("../../../../outside/pwned", b"x").done(),
    );
    write(
        "tar_unpack",
        "escape-symlink-abs.tar",
        &Tar::new()
            .link(Symlink, "evil", "/tmp/vordr-fuzz-unpack/outside")
            .file("evil/pwned", b"x")
            .done(),
    );
    write(
        "tar_unpack",
        "escape-symlink-rel.tar",
        &Tar::new()
            .link(Symlink, "evil", "../../../../outside")
            .dir("evil/dir/")
            .file("evil/canary", b"x")
            .done(),
    );
    write(
        "tar_unpack",
        "escape-hardlink.tar",
        &Tar::new()
            .link(Symlink, "evil", "/tmp/vordr-fuzz-unpack/outside")
            .link(Link, "stolen", "evil/canary")
            .link(Link, "stolen2", "/tmp/vordr-fuzz-unpack/outside/canary")
            .done(),
    );
    write(
        "tar_unpack",
        "escape-whiteout.tar",
        &Tar::new()
            .link(Symlink, "evil", "../../../../outside")
            .file("evil/.wh.canary", b"")
            .file("a/.wh...", b"")
            .done(),
    );
    let long = format!("{}/file", "d".repeat(120));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(4);
    b.append_data(&mut h, &long, &b"long"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    b.append_link(&mut h, "l", format!("/{}", "t".repeat(150)))
        .unwrap();
    write("tar_unpack", "gnu-long.tar", &b.into_inner().unwrap());
    let content = vec![b'x'; 700];
    let full = Tar::new().file("f", &content).done();
    write("tar_unpack", "no-final-padding.tar", &full[..512 + 700]);
}

fn gen_registries() {
    let t = "registries_conf";
    write(
        t,
        "full.conf",
        br#"unqualified-search-registries = ["docker.io", "quay.io"]
short-name-mode = "enforcing"

[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:5000"
insecure = true

[[registry]]
prefix = "registry.k8s.io"
location = "127.0.0.1:5000/k8s"
insecure = true

[[registry]]
prefix = "docker.io/library/busybox"
location = "127.0.0.1:5001/bb"
[[registry.mirror]]
location = "mirror.example:5000/bb"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "mirror2.example/bb"
pull-from-mirror = "tag-only"

[[registry]]
location = "evil.example"
blocked = true

[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "corp-mirror.example"
"#,
    );
    write(t, "empty.conf", b"");
    write(t, "no-search.conf", b"unqualified-search-registries = []\n");
    write(
        t,
        "location-only.conf",
        b"[[registry]]\nlocation = \"localhost:5000\"\ninsecure = true\n",
    );
    write(
        t,
        "inline.conf",
        b"registry = [{ prefix = \"quay.io/app\", location = \"localhost/app\", mirror = [{ location = \"m.example/app\" }] }]\n",
    );
}

fn gen_auth() {
    let t = "auth_file";
    write(
        t,
        "docker.json",
        br#"{"auths": {
    "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcjN0"},
    "127.0.0.1:5000": {"username": "bob", "password": "pw"},
    "ghcr.io": {"registrytoken": "tok"}
}}"#,
    );
    write(
        t,
        "podman.json",
        br#"{"auths": {"quay.io/team": {"auth": "dTpw"}, "http://localhost:5000/v2/": {"auth": " dTpwOnE= "}}, "credHelpers": {"gcr.io": "gcloud"}}"#,
    );
    write(t, "empty.json", b"{}");
    write(
        t,
        "bad-base64.json",
        br#"{"auths": {"a.io": {"auth": "!!"}}}"#,
    );
}

fn cri_request(
    name: &str,
    config: ContainerConfig,
    sandbox: PodSandboxConfig,
) -> (String, Vec<u8>) {
    let req = CreateContainerRequest {
        pod_sandbox_id: "4f1c0ffee".into(),
        config: Some(config),
        sandbox_config: Some(sandbox),
    };
    (name.to_string(), req.encode_to_vec())
}

fn gen_cri() {
    let ns = |network, pid, ipc| NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: ipc as i32,
        ..Default::default()
    };
    let pod = |privileged: bool, ns: NamespaceOption| PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web-0".into(),
            uid: "7b1e1c9a-2b1f-4a86-9f43-0a8a4a2f0d11".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        log_directory: "/var/log/pods/default_web-0".into(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/besteffort/pod7b1e1c9a".into(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(ns),
                privileged,
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            sysctls: HashMap::from([("net.ipv4.ip_unprivileged_port_start".into(), "0".into())]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = |sc: LinuxContainerSecurityContext| ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "nginx".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            user_specified_image: "nginx:1.25".into(),
            ..Default::default()
        }),
        command: vec!["nginx".into()],
        args: vec!["-g".into(), "daemon off;".into()],
        working_dir: "/usr/share/nginx".into(),
        envs: vec![KeyValue {
            key: "KUBERNETES_SERVICE_HOST".into(),
            value: "10.96.0.1".into(),
        }],
        mounts: vec![
            Mount {
                container_path: "/etc/config".into(),
                host_path: "/etc".into(),
                readonly: true,
                ..Default::default()
            },
            Mount {
                container_path: "/dev/termination-log".into(),
                host_path: "/tmp".into(),
                ..Default::default()
            },
        ],
        labels: HashMap::from([("io.kubernetes.container.name".into(), "nginx".into())]),
        annotations: HashMap::from([("io.kubernetes.container.hash".into(), "abc".into())]),
        log_path: "nginx/0.log".into(),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 128 << 20,
                oom_score_adj: 1000,
                unified: HashMap::from([("memory.high".into(), "100000000".into())]),
                ..Default::default()
            }),
            security_context: Some(sc),
        }),
        ..Default::default()
    };
    let restricted = LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        }),
        namespace_options: Some(ns(
            NamespaceMode::Pod,
            NamespaceMode::Container,
            NamespaceMode::Pod,
        )),
        run_as_user: Some(Int64Value { value: 1000 }),
        run_as_group: Some(Int64Value { value: 1000 }),
        supplemental_groups: vec![2000],
        readonly_rootfs: true,
        no_new_privs: true,
        masked_paths: vidx(&vordr_spec::DEFAULT_MASKED_PATHS),
        readonly_paths: vidx(&vordr_spec::DEFAULT_READONLY_PATHS),
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    };
    let pod_ns = ns(
        NamespaceMode::Pod,
        NamespaceMode::Container,
        NamespaceMode::Pod,
    );
    let mut requests = vec![cri_request(
        "restricted.pb",
        container(restricted.clone()),
        pod(false, pod_ns.clone()),
    )];

    let privileged = LinuxContainerSecurityContext {
        privileged: true,
        namespace_options: Some(ns(
            NamespaceMode::Node,
            NamespaceMode::Node,
            NamespaceMode::Node,
        )),
        run_as_username: "app".into(),
        ..Default::default()
    };
    let mut c = container(privileged);
    c.devices = vec![Device {
        container_path: "/dev/fuse".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    c.tty = true;
    c.stdin = true;
    requests.push(cri_request(
        "privileged-host.pb",
        c,
        pod(
            true,
            ns(
                NamespaceMode::Node,
                NamespaceMode::Node,
                NamespaceMode::Node,
            ),
        ),
    ));

    let localhost = LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: "profile.json".into(),
        }),
        apparmor: Some(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        }),
        namespace_options: Some(ns(
            NamespaceMode::Pod,
            NamespaceMode::Pod,
            NamespaceMode::Pod,
        )),
        ..Default::default()
    };
    let mut c = container(localhost);
    c.command.clear();
    requests.push(cri_request(
        "localhost-seccomp-shared-pid.pb",
        c,
        pod(
            false,
            ns(NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod),
        ),
    ));

    let mut userns_ns = pod_ns.clone();
    userns_ns.userns_options = Some(UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: vec![IdMapping {
            host_id: 65536,
            container_id: 0,
            length: 65536,
        }],
        gids: vec![IdMapping {
            host_id: 65536,
            container_id: 0,
            length: 65536,
        }],
    });
    let mut sc = restricted;
    sc.masked_paths.clear();
    sc.readonly_paths.clear();
    sc.namespace_options = Some(userns_ns.clone());
    requests.push(cri_request(
        "userns.pb",
        container(sc),
        pod(false, userns_ns),
    ));

    for (name, bytes) in requests {
        write("cri_to_oci_spec", &name, &bytes);
    }
}

fn vidx(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

fn main() {
    gen_spdy();
    gen_websocket();
    gen_tar();
    gen_registries();
    gen_auth();
    gen_cri();
    println!("seeds written under {}/corpus", env!("CARGO_MANIFEST_DIR"));
}
