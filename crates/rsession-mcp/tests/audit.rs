//! The audit trail read back: one JSON line per tool call, written by the
//! built binary to the file named by `--audit-log`, through a real MCP
//! client (rmcp over stdio).

mod common;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn every_tool_call_is_one_event_with_caller_code_hash_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.display().to_string();
    let c = common::stdio_client(&["--audit-log", &log_arg]).await;
    let sid = c.create_session().await;
    c.exec(&sid, "x <- 1 + 1").await;
    c.exec(&sid, "stop('no')").await;
    c.call(
        "execute_in_session",
        json!({"session_id": "rs-nosuch", "code": "1"}),
    )
    .await;
    c.stop().await;

    let ev = events(&log);
    let tools: Vec<&str> = ev.iter().map(|e| e["tool"].as_str().unwrap()).collect();
    assert_eq!(
        tools,
        [
            "create_session",
            "execute_in_session",
            "execute_in_session",
            "execute_in_session"
        ]
    );
    for e in &ev {
        assert_eq!(e["target"], "audit");
        assert_eq!(e["caller"], "local");
        assert!(
            e["timestamp"].as_str().is_some_and(|t| t.starts_with("20")),
            "{e}"
        );
        assert!(e["duration_ms"].as_f64().unwrap() >= 0.0);
    }
    let code = "x <- 1 + 1";
    assert_eq!(ev[1]["session_id"], sid.as_str());
    assert_eq!(ev[1]["code"], code);
    assert_eq!(
        ev[1]["code_sha256"],
        hex::encode(Sha256::digest(code.as_bytes()))
    );
    assert_eq!(ev[1]["status"], "ok");
    assert!(ev[1]["output_bytes"].as_u64().unwrap() > 0);
    assert_eq!(ev[1]["truncated"], false);
    assert_eq!(
        ev[2]["status"], "error",
        "an R error is recorded as R's status"
    );
    assert_eq!(ev[3]["status"], "session_not_found");
}

#[tokio::test]
async fn hash_mode_keeps_the_code_out_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.display().to_string();
    let c = common::stdio_client(&["--audit-log", &log_arg, "--audit-code", "hash"]).await;
    let sid = c.create_session().await;
    let secret = "patients <- 'secret-cohort-definition'";
    c.exec(&sid, secret).await;
    c.stop().await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("secret-cohort-definition"), "{text}");
    let ev = events(&log);
    assert_eq!(ev[1]["code"], "");
    assert_eq!(
        ev[1]["code_sha256"],
        hex::encode(Sha256::digest(secret.as_bytes()))
    );
}

#[test]
fn stdout_is_refused_over_stdio() {
    let out = std::process::Command::new(common::server_bin())
        .args(["--audit-log", "stdout"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used over stdio"));
}
