//! `vordr mcp` as an MCP client sees it: a real daemon, `vordr mcp -r
//! SOCKET` as a child process driven over its stdio by rmcp's client.
//! The tools are listed (only the reading ones with --read-only), a
//! container runs end to end through them, the gatekeeper's denial comes
//! back as a tool error naming the rule, and --read-only refuses vordr_run.

use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use vordr_e2e::*;

const ALL_TOOLS: [&str; 11] = [
    "vordr_audit",
    "vordr_doctor",
    "vordr_exec",
    "vordr_images",
    "vordr_inspect",
    "vordr_logs",
    "vordr_ps",
    "vordr_pull",
    "vordr_rm",
    "vordr_run",
    "vordr_stop",
];

const READ_ONLY_TOOLS: [&str; 6] = [
    "vordr_audit",
    "vordr_doctor",
    "vordr_images",
    "vordr_inspect",
    "vordr_logs",
    "vordr_ps",
];

/// An MCP session with `vordr mcp -r SOCKET ARGS...` (initialized).
async fn session(d: &Daemon, args: &[&str]) -> RunningService<RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(vordr_bin());
    cmd.arg("mcp")
        .arg("-r")
        .arg(&d.socket)
        .args(args)
        .env_remove("CONTAINER_RUNTIME_ENDPOINT");
    let transport = TokioChildProcess::new(cmd).expect("spawning vordr mcp");
    ().serve(transport)
        .await
        .unwrap_or_else(|e| panic!("initializing the MCP session: {e}"))
}

async fn tool_names(s: &RunningService<RoleClient, ()>) -> Vec<String> {
    let mut names: Vec<String> = s
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    names.sort();
    names
}

/// Calls `tool`; the result (a tool error included).
async fn call(s: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    s.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// Calls `tool`, which must succeed; its structured result.
async fn ok(s: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> Value {
    let r = call(s, tool, args).await;
    assert_eq!(r.is_error, Some(false), "{tool}: {r:?}");
    match r.structured_content {
        Some(v) => v,
        None => panic!("{tool}: no structured content: {:?}", r.content),
    }
}

/// The text of a tool error.
fn error_text(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "{r:?}");
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Removes the log directories this test's pods left in the temporary directory.
fn remove_logs(ns: &str) {
    let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap();
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(ns) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_end_to_end_through_the_tools() {
    let Some((_reg, d, image)) = daemon_with_busybox("mcp").await else {
        return;
    };
    let ns = format!("mcp-{}", std::process::id());
    let s = session(&d, &[]).await;
    let info = s.peer_info().expect("the server's initialize result");
    let server = info.server_info.as_ref().map(|i| i.name.as_str());
    assert_eq!(server, Some("vordr"), "{info:?}");
    assert_eq!(tool_names(&s).await, ALL_TOOLS);

    // The image through vordr_pull, then listed by vordr_images.
    let pulled = ok(&s, "vordr_pull", json!({ "image": image })).await;
    assert_eq!(pulled["image"], image.as_str());
    let image_ref = pulled["image_ref"].as_str().unwrap().to_string();
    assert!(image_ref.starts_with("sha256:"), "{pulled}");
    let images = ok(&s, "vordr_images", json!({})).await;
    assert!(
        images["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == image_ref.as_str()),
        "{images}"
    );

    // Run detached; ps shows it running.
    let run = ok(
        &s,
        "vordr_run",
        json!({
            "image": image,
            "name": "web",
            "namespace": ns,
            "cmd": ["sh", "-c", "echo started; echo oops >&2; exec sleep 300"],
            "labels": {"app": "web"},
        }),
    )
    .await;
    let id = run["container_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64, "{run}");
    assert_eq!(run["name"], "web");
    assert_eq!(run["namespace"], ns.as_str());
    assert_eq!(run["pulled"], false, "{run}");
    let ps = ok(&s, "vordr_ps", json!({})).await;
    let rows = ps["containers"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{ps}");
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["name"], "web");
    assert_eq!(rows[0]["state"], "Running");
    assert_eq!(rows[0]["labels"]["app"], "web");
    let none = ok(&s, "vordr_ps", json!({ "labels": {"app": "db"} })).await;
    assert_eq!(none["containers"], json!([]));

    // exec without a terminal: stdout, stderr and the exit code.
    let r = ok(
        &s,
        "vordr_exec",
        json!({ "id": "web", "cmd": ["echo", "hi"], "timeout": 10 }),
    )
    .await;
    assert_eq!(r["stdout"], "hi\n", "{r}");
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["container_id"], id.as_str());
    let r = ok(
        &s,
        "vordr_exec",
        json!({ "id": &id[..12], "cmd": ["sh", "-c", "echo bad >&2; exit 3"] }),
    )
    .await;
    assert_eq!(
        (r["exit_code"].clone(), r["stderr"].clone()),
        (json!(3), json!("bad\n")),
        "{r}"
    );

    // logs: the last lines, both streams, without following.
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let logs = ok(&s, "vordr_logs", json!({ "id": "web" })).await;
        if logs["lines"].as_array().unwrap().len() >= 2 {
            break logs;
        }
        assert!(Instant::now() < deadline, "never logged: {logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lines = logs["lines"].as_array().unwrap();
    let mut texts: Vec<&str> = lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
    texts.sort();
    assert_eq!(texts, ["oops", "started"], "{logs}");
    let last = ok(&s, "vordr_logs", json!({ "id": "web", "tail": 1 })).await;
    assert_eq!(last["lines"], json!([lines[1]]), "{last}");

    // inspect: the container's CRI status and verbose info.
    let inspected = ok(&s, "vordr_inspect", json!({ "id": id })).await;
    assert_eq!(inspected["kind"], "container");
    assert_eq!(inspected["id"], id.as_str());
    assert_eq!(
        inspected["status"]["metadata"]["name"], "web",
        "{inspected}"
    );
    assert!(inspected["info"].as_object().is_some_and(|i| !i.is_empty()));

    // An unknown id is a tool error with the verb's sentence.
    let r = call(&s, "vordr_inspect", json!({ "id": "nothing-here" })).await;
    assert_eq!(error_text(&r), "no container or pod matches 'nothing-here'");
    // rm of a running container without force is refused.
    let r = call(&s, "vordr_rm", json!({ "id": "web" })).await;
    assert!(error_text(&r).contains("stop it first"), "{r:?}");

    // stop, then rm (the pod vordr_run made goes with it).
    let stopped = ok(&s, "vordr_stop", json!({ "id": "web", "timeout": 1 })).await;
    assert_eq!(stopped["kind"], "container");
    assert_eq!(stopped["id"], id.as_str());
    let all = ok(&s, "vordr_ps", json!({ "all": true })).await;
    assert_eq!(all["containers"][0]["state"], "Exited", "{all}");
    let removed = ok(&s, "vordr_rm", json!({ "id": "web" })).await;
    assert_eq!(removed["id"], id.as_str());
    assert_eq!(removed["pod_id"], run["pod_id"], "{removed}");
    let all = ok(&s, "vordr_ps", json!({ "all": true })).await;
    assert_eq!(all["containers"], json!([]));
    assert!(list_pods(&mut d.client().await).await.is_empty());

    // The audit table has the gatekeeper's decisions on that pod.
    let audit = ok(&s, "vordr_audit", json!({ "namespace": ns, "limit": 10 })).await;
    let records = audit["records"].as_array().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["pod"] == "web" && r["verdict"] == "allowed"),
        "{audit}"
    );
    // The doctor's report: one check per line of `vordr doctor`.
    let doctor = ok(&s, "vordr_doctor", json!({})).await;
    let checks = doctor["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"] == "overlayfs"), "{doctor}");
    assert!(doctor["missing"].is_boolean());

    s.cancel().await.unwrap();
    remove_logs(&ns);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gatekeeper_denial_is_a_tool_error_naming_the_rule() {
    let Some((_reg, d, image)) = daemon_with_busybox("mcpdeny").await else {
        return;
    };
    let ns = format!("mcpdeny-{}", std::process::id());
    let s = session(&d, &[]).await;
    // The baseline profile (the harness's default) refuses a privileged pod.
    let r = call(
        &s,
        "vordr_run",
        json!({ "image": image, "namespace": ns, "privileged": true, "cmd": ["true"] }),
    )
    .await;
    let text = error_text(&r);
    assert!(
        text.contains(
            "denied by the gatekeeper: rule 1 (privileged containers need a namespace allowed to run them)"
        ),
        "{text}"
    );
    assert!(text.contains("profile \"baseline\""), "{text}");
    let mut c = d.client().await;
    assert!(list_pods(&mut c).await.is_empty());
    assert!(list_containers(&mut c).await.is_empty());
    // The denial is in the audit table.
    let audit = ok(
        &s,
        "vordr_audit",
        json!({ "denied": true, "namespace": ns }),
    )
    .await;
    let records = audit["records"].as_array().unwrap();
    assert!(!records.is_empty(), "{audit}");
    assert!(
        records
            .iter()
            .any(|r| r["verdict"] == "denied" && r["rule"] == 1),
        "{audit}"
    );
    s.cancel().await.unwrap();
    remove_logs(&ns);
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_lists_and_runs_only_the_reading_tools() {
    let Some((_reg, d, image)) = daemon_with_busybox("mcpro").await else {
        return;
    };
    let s = session(&d, &["--read-only"]).await;
    assert_eq!(tool_names(&s).await, READ_ONLY_TOOLS);
    // vordr_run is refused: not a tool of this server.
    let err = s
        .call_tool(
            CallToolRequestParams::new("vordr_run")
                .with_arguments(json!({ "image": image }).as_object().unwrap().clone()),
        )
        .await;
    match err {
        Err(e) => assert!(e.to_string().contains("tool not found"), "{e}"),
        Ok(r) => panic!("vordr_run answered read-only: {r:?}"),
    }
    assert!(list_pods(&mut d.client().await).await.is_empty());
    // The reading tools work.
    let ps = ok(&s, "vordr_ps", json!({ "all": true })).await;
    assert_eq!(ps["containers"], json!([]));
    let images = ok(&s, "vordr_images", json!({})).await;
    assert_eq!(images["images"].as_array().unwrap().len(), 1, "{images}");
    s.cancel().await.unwrap();
}
