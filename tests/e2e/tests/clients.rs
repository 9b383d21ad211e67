//! Third-party CRI clients against a real `vordr serve`: clients that send
//! an invalid HTTP/2 :authority (the socket path, plain or percent-encoded)
//! must still be served.

use std::path::Path;
use std::process::Command;

use vordr_e2e::setup::Setup;
use vordr_e2e::*;

/// A gRPC C-core client (Python grpcio >= 1.57, installed by
/// scripts/setup.sh) sends `%2F...sock` as :authority over a unix socket.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_core_client_with_percent_encoded_authority_is_served() {
    if !can_run() {
        eprintln!("skipped: needs root and netavark");
        return;
    }
    let d = Daemon::start("grpcio").await;
    let script = r#"
import sys, grpc
ch = grpc.insecure_channel("unix:" + sys.argv[1])
version = ch.unary_unary("/runtime.v1.RuntimeService/Version")(b"", timeout=10)
pods = ch.unary_unary("/runtime.v1.RuntimeService/ListPodSandbox")(b"", timeout=10)
sys.stdout.write(version.hex() + " " + str(len(pods)))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&d.socket)
        .output()
        .expect("python3 (run scripts/setup.sh)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "grpcio client failed (scripts/setup.sh installs grpcio): {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (hex, pods) = stdout.split_once(' ').unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let v = <cri::VersionResponse as prost::Message>::decode(bytes.as_slice()).unwrap();
    assert_eq!(v.runtime_name, "vordr");
    assert_eq!(pods, "0");
}

/// crictl from cri-tools (grpc-go, socket path as :authority). cri-tools is
/// not packaged where CI runs, so this runs where `$CRICTL` or
/// /opt/cri-tools/bin/crictl exists.
#[tokio::test(flavor = "multi_thread")]
async fn crictl_drives_the_pod_lifecycle() {
    let crictl = std::env::var("CRICTL").unwrap_or_else(|_| "/opt/cri-tools/bin/crictl".into());
    if !can_run() || !Path::new(&crictl).exists() {
        eprintln!("skipped: needs root, netavark and crictl ({crictl})");
        return;
    }
    let reg = vordr_e2e::registry::Registry::start();
    let image = format!("{}/e2e/crictl:1", reg.addr);
    let image_id = vordr_e2e::registry::push(
        &image,
        &[(
            vordr_e2e::registry::tar(&[("f", Some(b"f"))]),
            oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE,
        )],
        "amd64",
    )
    .await;
    let d = Daemon::start_with_registries(
        "crictl",
        &format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            reg.addr
        ),
    )
    .await;
    let endpoint = format!("unix://{}", d.socket.display());
    let run = |args: &[&str]| {
        let out = Command::new(&crictl)
            .arg("--runtime-endpoint")
            .arg(&endpoint)
            .arg("--image-endpoint")
            .arg(&endpoint)
            // crictl's default of 2 s is tight on a busy 2-core machine;
            // kubelet allows minutes.
            .arg("--timeout")
            .arg("30s")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "crictl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(run(&["version"]).contains("RuntimeName:  vordr"));
    assert!(run(&["info"]).contains("NetworkReady"));
    let cfg = d.dir.path().join("pod.json");
    std::fs::write(
        &cfg,
        r#"{"metadata":{"name":"crictl-pod","namespace":"e2e","uid":"crictl-uid","attempt":0},
            "hostname":"crictl-pod","labels":{"tool":"crictl"},"linux":{}}"#,
    )
    .unwrap();
    let id = run(&["runp", cfg.to_str().unwrap()]);
    assert_eq!(run(&["pods", "-q", "--label", "tool=crictl"]), id);
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspectp", &id])).unwrap();
    assert_eq!(inspect["status"]["state"], "SANDBOX_READY");
    let ip = inspect["status"]["network"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ping(&ip));
    run(&["stopp", &id]);
    run(&["rmp", &id]);
    assert_eq!(run(&["pods", "-q"]), "");

    // Images.
    assert!(run(&["pull", &image]).contains(&image_id));
    assert!(run(&["images"]).contains(&format!("{}/e2e/crictl", reg.addr)));
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspecti", &image])).unwrap();
    assert_eq!(inspect["status"]["id"], image_id);
    assert_eq!(inspect["status"]["uid"]["value"], "1000");
    run(&["rmi", &image]);
    assert_eq!(run(&["images", "-q"]), "");

    // Containers: run, ps, exec, logs, inspect, stop, rm.
    let bb = format!("{}/e2e/busybox:1", reg.addr);
    vordr_e2e::registry::push_busybox(&bb, serde_json::json!({"Cmd": ["sh"]})).await;
    run(&["pull", &bb]);
    let logs = d.dir.path().join("crictl-logs");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"metadata":{{"name":"crictl-pod2","namespace":"e2e","uid":"crictl-uid2","attempt":0}},
                "log_directory":{:?},"linux":{{}}}}"#,
            logs.display().to_string()
        ),
    )
    .unwrap();
    let ccfg = d.dir.path().join("container.json");
    std::fs::write(
        &ccfg,
        format!(
            r#"{{"metadata":{{"name":"app"}},"image":{{"image":"{bb}"}},
                "command":["sh","-c","echo from-crictl; exec sleep 1000"],"log_path":"app.log","linux":{{}}}}"#
        ),
    )
    .unwrap();
    let pod = run(&["runp", cfg.to_str().unwrap()]);
    let c = run(&[
        "create",
        &pod,
        ccfg.to_str().unwrap(),
        cfg.to_str().unwrap(),
    ]);
    run(&["start", &c]);
    assert!(run(&["ps", "-q", "--pod", &pod]).contains(&c));
    assert_eq!(run(&["exec", "-s", &c, "echo", "exec-ok"]), "exec-ok");
    // Exec through the streaming server (SPDY/3.1): output, stdin, exit code.
    assert_eq!(run(&["exec", &c, "echo", "exec-spdy"]), "exec-spdy");
    let crictl_in = |args: &[&str], input: &[u8]| {
        let mut cmd = Command::new(&crictl);
        cmd.args(["--runtime-endpoint", &endpoint, "--timeout", "30s"]);
        with_input(cmd.args(args), input)
    };
    let out = crictl_in(
        &["exec", "-i", &c, "sh", "-c", "wc -c; exit 4"],
        &[b'x'; 300_000],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300000");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exit code 4"),
        "{out:?}"
    );
    // exec -it: crictl wants a terminal on its own stdin, which script(1)
    // gives it; the process gets one in the container's devpts.
    let crictl_cmd = format!("{crictl} --runtime-endpoint {endpoint} --timeout 30s");
    let in_terminal = |cmd: String, input: &[u8]| {
        with_input(
            Command::new("script").args(["-qec", &cmd, "/dev/null"]),
            input,
        )
    };
    let out = in_terminal(
        format!("{crictl_cmd} exec -it {c} sh -c 'tty; read x; echo got-$x; exit 3'"),
        b"typed\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("got-typed\r\n"), "{text:?}");
    assert!(text.contains("exit code 3"), "{text:?}");
    // attach -i to a shell that reads its stdin (stdin_once: it exits
    // when crictl's input ends).
    let acfg = d.dir.path().join("attach.json");
    std::fs::write(
        &acfg,
        format!(
            r#"{{"metadata":{{"name":"sh"}},"image":{{"image":"{bb}"}},"command":["sh"],
                "stdin":true,"stdin_once":true,"log_path":"sh.log","linux":{{}}}}"#
        ),
    )
    .unwrap();
    let sh = run(&[
        "create",
        &pod,
        acfg.to_str().unwrap(),
        cfg.to_str().unwrap(),
    ]);
    run(&["start", &sh]);
    let out = crictl_in(&["attach", "-i", &sh], b"echo attached-$((1+2)); exit 5\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "attached-3",
        "{out:?}"
    );
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspect", &sh])).unwrap();
    assert_eq!(inspect["status"]["exitCode"], 5, "{inspect}");
    run(&["rm", &sh]);
    // Port-forward (SPDY/3.1, portforward.k8s.io) to a server on the pod's loopback.
    run(&[
        "exec",
        &c,
        "sh",
        "-c",
        "mkdir -p /tmp/w && echo pf-ok > /tmp/w/i && busybox httpd -p 127.0.0.1:8080 -h /tmp/w",
    ]);
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut pf = Command::new(&crictl)
        .arg("--runtime-endpoint")
        .arg(&endpoint)
        .args(["port-forward", &pod, &format!("{local}:8080")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    for _ in 0..100 {
        use std::io::{Read, Write};
        if let Ok(mut t) = std::net::TcpStream::connect(("127.0.0.1", local)) {
            let _ = t.write_all(b"GET /i HTTP/1.0\r\n\r\n");
            answer.clear();
            let _ = t.read_to_string(&mut answer);
            if answer.contains("pf-ok") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(answer.ends_with("pf-ok\n"), "{answer:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !run(&["logs", &c]).contains("from-crictl") {
        assert!(
            std::time::Instant::now() < deadline,
            "crictl logs shows nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let inspect: serde_json::Value = serde_json::from_str(&run(&["inspect", &c])).unwrap();
    assert_eq!(inspect["status"]["state"], "CONTAINER_RUNNING");
    run(&["stop", "-t", "0", &c]);
    run(&["rm", &c]);
    run(&["stopp", &pod]);
    run(&["rmp", &pod]);
    assert_eq!(run(&["ps", "-a", "-q"]), "");
}

/// Runs `cmd` with `input` on its stdin; its output.
fn with_input(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The Kubernetes Python client's WebSocket code (Debian's
/// python3-kubernetes, installed by scripts/setup.sh, run by Debian's own
/// python3): exec with output, stdin and an exit code, and a port-forward,
/// over `v4.channel.k8s.io` against real containers.
#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_python_client_over_websocket() {
    let Some(mut s) = vordr_e2e::setup::setup("k8spy").await else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/kubernetes_ws.py");
    let python = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("/usr/bin/python3")
            .arg(&script)
            .args(args)
            .output()
            .expect("/usr/bin/python3 (scripts/setup.sh installs python3-kubernetes)");
        assert!(
            out.status.success(),
            "kubernetes client {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let pod = s.pod("k8spy-pod", "").await;
    let web = "mkdir -p /tmp/www && echo hello-k8s > /tmp/www/index.html && \
               exec busybox httpd -f -p 127.0.0.1:8080 -h /tmp/www";
    let cfg = s.config("app", &["sh", "-c", web]);
    let id = s.run(&pod, cfg).await;
    let exec_url = |s: &mut Setup, cmd: &[&str], stdin: bool| {
        let mut c = s.c.clone();
        let (id, cmd) = (id.clone(), cmd.iter().map(|c| c.to_string()).collect());
        async move {
            c.runtime
                .exec(cri::ExecRequest {
                    container_id: id,
                    cmd,
                    tty: false,
                    stdin,
                    stdout: true,
                    stderr: true,
                })
                .await
                .unwrap()
                .into_inner()
                .url
        }
    };

    let url = exec_url(
        &mut s,
        &["sh", "-c", "hostname; echo oops >&2; exit 3"],
        false,
    )
    .await;
    let got = python(&["exec", &url]);
    assert_eq!(got["stdout"], "k8spy-pod\n", "{got}");
    assert_eq!(got["stderr"], "oops\n", "{got}");
    assert_eq!(got["returncode"], 3, "{got}");
    let url = exec_url(&mut s, &["sh", "-c", "read x; echo got-$x"], true).await;
    let got = python(&["exec", &url, "from-python\n"]);
    assert_eq!(got["stdout"], "got-from-python\n", "{got}");
    assert_eq!(got["returncode"], 0, "{got}");

    // httpd may still be starting: retry a few times.
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        let mut c = s.c.clone();
        let url = c
            .runtime
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod.0.clone(),
                port: vec![8080],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        last = python(&[
            "portforward",
            &url,
            "8080",
            "GET /index.html HTTP/1.0\r\n\r\n",
        ]);
        if last["error"].is_null() && last["data"].as_str().unwrap_or("").contains("hello-k8s") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let data = last["data"].as_str().unwrap_or_default();
    assert!(data.starts_with("HTTP/1.1 200 OK"), "{last}");
    assert!(data.ends_with("hello-k8s\n"), "{last}");
}
