//! The audit chain end to end: a real workload's decisions and lifecycle
//! changes land in the chain in order, `vordr audit verify` passes on it
//! (also after rotation), and names the record after each kind of
//! tampering: a direct SQL edit, a deleted row, a reordered pair, a
//! replaced head file.

use std::process::Output;

use vordr_e2e::setup::*;
use vordr_e2e::*;

fn vordr_audit(d: &Daemon, args: &[&str]) -> Output {
    std::process::Command::new(vordr_bin())
        .arg("audit")
        .args(args)
        .arg("--root")
        .arg(&d.root)
        .output()
        .unwrap()
}

/// `vordr audit --chain --json`: every record, oldest first.
fn chain(d: &Daemon) -> Vec<serde_json::Value> {
    let out = vordr_audit(d, &["--chain", "--json", "-n", "100000"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `vordr audit verify --json`: (exit code, report).
fn verify(d: &Daemon) -> (i32, serde_json::Value) {
    let out = vordr_audit(d, &["verify", "--json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), report)
}

/// A way to tamper, the record verify must name, and a word of its reason.
type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, i64, &'a str);

fn sql(d: &Daemon, q: &str) {
    let conn = rusqlite::Connection::open(d.root.join("vordr.db")).unwrap();
    conn.execute_batch(q).unwrap();
}

/// A pod and a container through their whole lifecycle, an exec, a
/// container adding CAP_SYS_ADMIN, which the baseline profile refuses.
async fn workload(s: &mut Setup) {
    let pod = s.pod("audited", "").await;
    let app = s.config("app", &["sleep", "300"]);
    let id = s.run(&pod, app).await;
    let out = s.exec(&id, &["echo", "hi"], 10).await.unwrap();
    assert_eq!(out.stdout, b"hi\n");
    let mut bad = s.config("root-of-all", &["sleep", "300"]);
    bad.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .capabilities = Some(cri::Capability {
        add_capabilities: vec!["SYS_ADMIN".into()],
        ..Default::default()
    });
    let denied = s.create(&pod, bad).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    s.stop_remove(&id).await;
    s.c.runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
    s.c.runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.0.clone(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_is_chained_and_tampering_is_named() {
    let Some(mut s) = setup("audit").await else {
        return;
    };
    workload(&mut s).await;
    let records = chain(&s.d);
    let seen: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap().to_string();
            (f("kind"), f("action"), f("verdict"))
        })
        .collect();
    let position = |kind: &str, action: &str, verdict: &str| {
        seen.iter()
            .position(|(k, a, v)| k == kind && a == action && v == verdict)
            .unwrap_or_else(|| panic!("no {kind} {action} {verdict} in {seen:#?}"))
    };
    // In the order they happened.
    let order = [
        position("lifecycle", "PullImage", "ok"),
        position("decision", "RunPodSandbox", "allowed"),
        position("lifecycle", "RunPodSandbox", "ok"),
        position("decision", "CreateContainer", "allowed"),
        position("lifecycle", "CreateContainer", "ok"),
        position("lifecycle", "StartContainer", "ok"),
        position("lifecycle", "ExecSync", "ok"),
        position("decision", "CreateContainer", "denied"),
        position("lifecycle", "StopContainer", "ok"),
        position("lifecycle", "RemoveContainer", "ok"),
        position("lifecycle", "StopPodSandbox", "ok"),
        position("lifecycle", "RemovePodSandbox", "ok"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?}: {seen:#?}"
    );
    // The denied create is recorded as a failed lifecycle call too.
    position("lifecycle", "CreateContainer", "PermissionDenied");
    let run = &records[position("lifecycle", "RunPodSandbox", "ok")];
    assert_eq!(run["pod"], "audited");
    assert_eq!(run["podId"].as_str().unwrap().len(), 64);
    for w in records.windows(2) {
        assert_eq!(w[1]["prevHash"], w[0]["hash"]);
    }

    let (code, report) = verify(&s.d);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["intact"], true);
    let last = report["lastId"].as_i64().unwrap();
    assert_eq!(last, records.last().unwrap()["id"].as_i64().unwrap());

    // Tampering, each on the chain as the daemon left it.
    s.d.terminate();
    let saved = tempfile::tempdir().unwrap();
    let files = ["vordr.db", "vordr.db-wal", "vordr.db-shm", "audit.head"];
    for f in files {
        let _ = std::fs::copy(s.d.root.join(f), saved.path().join(f));
    }
    let id_of = |i: usize| records[i]["id"].as_i64().unwrap();
    let denied_id = id_of(position("decision", "CreateContainer", "denied"));
    let start_id = id_of(position("lifecycle", "StartContainer", "ok"));
    let cases: [Case; 4] = [
        (
            "a direct SQL edit",
            Box::new(|| {
                sql(
                    &s.d,
                    &format!("UPDATE audit SET verdict = 'allowed' WHERE id = {denied_id}"),
                )
            }),
            denied_id,
            "edited",
        ),
        (
            "a deleted row",
            Box::new(|| sql(&s.d, &format!("DELETE FROM audit WHERE id = {start_id}"))),
            start_id + 1,
            "missing",
        ),
        (
            "a reordered pair",
            Box::new(|| {
                sql(
                    &s.d,
                    &format!(
                        "UPDATE audit SET id = -1 WHERE id = {a};
                         UPDATE audit SET id = {a} WHERE id = {b};
                         UPDATE audit SET id = {b} WHERE id = -1;",
                        a = start_id,
                        b = start_id + 1
                    ),
                )
            }),
            start_id,
            "",
        ),
        (
            "a replaced head file",
            Box::new(|| {
                std::fs::write(
                    s.d.root.join("audit.head"),
                    format!("{last} {}\n", "0".repeat(64)),
                )
                .unwrap()
            }),
            last,
            "head file",
        ),
    ];
    for (what, tamper, at, why) in cases {
        for f in files {
            let _ = std::fs::copy(saved.path().join(f), s.d.root.join(f));
        }
        assert_eq!(verify(&s.d).0, 0, "restored before {what}");
        tamper();
        let (code, report) = verify(&s.d);
        assert_eq!(code, 1, "{what}: {report}");
        assert_eq!(report["brokenId"].as_i64(), Some(at), "{what}: {report}");
        let msg = report["brokenWhy"].as_str().unwrap();
        assert!(msg.contains(why), "{what}: {msg}");
    }
    // The text output names the record for a person.
    let out = vordr_audit(&s.d, &["verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("BROKEN at record {last}")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_chain_verifies_from_its_signed_checkpoint() {
    let Some(mut s) = setup_with("auditrot", "audit_max_rows = 5").await else {
        return;
    };
    workload(&mut s).await;
    let records = chain(&s.d);
    assert_eq!(records.len(), 5, "{records:#?}");
    let (code, report) = verify(&s.d);
    assert_eq!(code, 0, "{report}");
    let checkpoint = report["checkpointId"].as_i64().expect("a checkpoint");
    assert_eq!(checkpoint + 1, report["firstId"].as_i64().unwrap());
    assert!(report["publicKey"].as_str().unwrap().len() == 64);
    let key = std::fs::metadata(s.d.root.join("audit.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777,
        0o600
    );
    // The checkpoint is signed: forging its hash is named.
    s.d.terminate();
    sql(
        &s.d,
        "UPDATE audit_checkpoint SET last_hash = 'f' || substr(last_hash, 2)",
    );
    let (code, report) = verify(&s.d);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["brokenId"].as_i64(), Some(checkpoint));
    assert!(report["brokenWhy"].as_str().unwrap().contains("signature"));
}
