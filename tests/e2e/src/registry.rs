//! A real registry for tests: Debian's docker-registry on 127.0.0.1 with
//! temporary storage, and images built here (tar layers, OCI config) and
//! pushed with oci-client. No test image comes from the internet.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::Digest as _;

/// `sha256:<hex>` of `b`.
pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{:x}", sha2::Sha256::digest(b))
}

/// The OCI media type of a zstd layer.
pub const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A docker-registry on 127.0.0.1 with its own storage, stopped on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_inner(None)
    }

    /// A registry that demands HTTP basic auth (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_inner(Some((user, password)))
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        let auth_yaml = match auth {
            None => String::new(),
            Some((user, password)) => {
                let htpasswd = dir.path().join("htpasswd");
                let hash = bcrypt::hash(password, 5).unwrap();
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: e2e\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{auth_yaml}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/setup.sh installs it)");
        let deadline = Instant::now() + crate::scaled(Duration::from_secs(10));
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An oci-client over plain HTTP, for the test registry.
pub fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

/// A tar layer from (path, contents) entries; `None` contents make a directory.
pub fn tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                h.set_cksum();
                b.append_data(&mut h, name, *d).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_cksum();
                b.append_data(&mut h, name, &b""[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A one-entry tar whose entry is named `../pwned`, written raw (the tar
/// crate's builder refuses such names).
pub fn escaping_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../pwned\0");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    b.into_inner().unwrap()
}

/// gzip-compresses `b`.
pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, b).unwrap();
    gz.finish().unwrap()
}

/// Pushes an image of `layers` (uncompressed tars, each with its media
/// type) for `arch`; returns the config digest.
pub async fn push(reference: &str, layers: &[(Vec<u8>, &str)], arch: &str) -> String {
    push_as(reference, layers, arch, &RegistryAuth::Anonymous).await
}

/// [`push`] with credentials.
pub async fn push_as(
    reference: &str,
    layers: &[(Vec<u8>, &str)],
    arch: &str,
    auth: &RegistryAuth,
) -> String {
    let config = serde_json::json!({"Cmd": ["/bin/sh"], "User": "1000"});
    push_image(reference, layers, arch, config, auth).await
}

/// Pushes an image whose config's `config` object is `container_config`.
pub async fn push_image(
    reference: &str,
    layers: &[(Vec<u8>, &str)],
    arch: &str,
    container_config: serde_json::Value,
    auth: &RegistryAuth,
) -> String {
    let r: Reference = reference.parse().unwrap();
    let diff_ids: Vec<String> = layers.iter().map(|(t, _)| sha256(t)).collect();
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let blobs: Vec<ImageLayer> = layers
        .iter()
        .map(|(t, mt)| {
            let data = match *mt {
                IMAGE_LAYER_GZIP_MEDIA_TYPE => gzip(t),
                ZSTD_LAYER => zstd::encode_all(t.as_slice(), 3).unwrap(),
                _ => t.clone(),
            };
            ImageLayer::new(data, mt.to_string(), None)
        })
        .collect();
    let cfg = Config::new(
        config.clone().into_bytes(),
        IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    client().push(&r, &blobs, cfg, auth, None).await.unwrap();
    sha256(config.as_bytes())
}

/// Commands the busybox image links to /bin/busybox.
const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "id", "ls", "mkdir", "touch", "rm", "hostname", "head", "dd",
    "wc", "env", "grep", "true", "false", "kill", "ps", "trap", "seq", "yes", "tail", "unshare",
    "mount", "sync", "chmod", "readlink", "printf", "test", "nc", "stty",
];

/// A one-layer image of the host's static busybox with a passwd and group
/// file (root, user 1000 "app" in groups 1000 and 2000), pushed as
/// `reference` with `container_config` (e.g. `{"Cmd": [...]}`). Returns the
/// image id.
pub async fn push_busybox(reference: &str, container_config: serde_json::Value) -> String {
    let bb = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, &b""[..]).unwrap();
    };
    for d in [
        "bin", "etc", "proc", "sys", "dev", "root", "var", "home/app",
    ] {
        dir(&mut b, d, 0o755);
    }
    dir(&mut b, "tmp", 0o1777);
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    file(&mut b, "bin/busybox", 0o755, &bb);
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    );
    file(
        &mut b,
        "etc/group",
        0o644,
        b"root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    );
    for a in BUSYBOX_APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        b.append_link(&mut h, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    let layer = b.into_inner().unwrap();
    push_image(
        reference,
        &[(layer, IMAGE_LAYER_GZIP_MEDIA_TYPE)],
        "amd64",
        container_config,
        &RegistryAuth::Anonymous,
    )
    .await
}
