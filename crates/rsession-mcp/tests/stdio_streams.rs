//! The stdio transport on each kind of descriptor an MCP client hands the
//! server (`rsession_mcp::stdio`): a Unix socket pair, as Node's
//! `child_process` (libuv) connects stdio, and a pipe, as the Python SDK and
//! rmcp's `TokioChildProcess` do. Both must be put on the reactor (the server
//! logs which), and R must run through them; a regular file falls back to
//! tokio's stdio and still ends at EOF.

mod common;

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use rmcp::ServiceExt;
use rsession_testkit::mcp::{Recorder, expect_call};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// The server started with `stdin`/`stdout`, logging `rsession_mcp::stdio`
/// at debug on a piped stderr.
fn server(stdin: Stdio, stdout: Stdio) -> tokio::process::Child {
    tokio::process::Command::new(common::server_bin())
        .args(["--workspace-root", "temp"])
        .env("RSESSION_LOG", "warn,rsession_mcp::stdio=debug")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rsession-mcp")
}

/// Everything the server wrote on stderr until it exits (bounded).
async fn stderr_of(mut child: tokio::process::Child) -> String {
    let mut err = String::new();
    let mut pipe = child.stderr.take().expect("stderr piped");
    tokio::time::timeout(Duration::from_secs(60), pipe.read_to_string(&mut err))
        .await
        .expect("server exits once its stdin is closed")
        .expect("read stderr");
    err
}

#[tokio::test]
async fn a_socket_pair_is_served_on_the_reactor() {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let theirs = OwnedFd::from(theirs);
    let child = server(
        Stdio::from(theirs.try_clone().expect("dup")),
        Stdio::from(theirs),
    );
    ours.set_nonblocking(true).unwrap();
    let (read, write) = tokio::net::UnixStream::from_std(ours).unwrap().into_split();
    let client = Recorder::default()
        .serve((read, write))
        .await
        .expect("MCP over the socket pair");
    let created = expect_call(client.peer(), "create_session", json!({})).await;
    let sid = created.structured_content.expect("structured")["session_id"]
        .as_str()
        .expect("session_id")
        .to_string();
    let ran = expect_call(
        client.peer(),
        "execute_in_session",
        json!({"session_id": sid, "code": "cat('over', 'a socket\\n'); 6 * 7"}),
    )
    .await;
    let text = format!("{:?}", ran.content);
    assert!(
        text.contains("over a socket") && text.contains("[1] 42"),
        "{text}"
    );
    client.cancel().await.expect("client closes");
    let err = stderr_of(child).await;
    assert!(
        err.contains("stdin=\"socket\"") && err.contains("stdin_on_reactor=true"),
        "{err}"
    );
    assert!(err.contains("stdout_on_reactor=true"), "{err}");
}

#[tokio::test]
async fn pipes_are_served_on_the_reactor() {
    let mut child = server(Stdio::piped(), Stdio::piped());
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let client = Recorder::default()
        .serve((stdout, stdin))
        .await
        .expect("MCP over pipes");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "execute_in_session"));
    client.cancel().await.expect("client closes");
    let err = stderr_of(child).await;
    assert!(
        err.contains("stdin=\"pipe\"") && err.contains("stdin_on_reactor=true"),
        "{err}"
    );
    assert!(
        err.contains("stdout=\"pipe\"") && err.contains("stdout_on_reactor=true"),
        "{err}"
    );
}

#[tokio::test]
async fn a_regular_file_falls_back_to_tokio_stdio_and_ends_at_eof() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("requests.jsonl");
    std::fs::write(&input, "").unwrap();
    let child = server(
        Stdio::from(std::fs::File::open(&input).unwrap()),
        Stdio::from(std::fs::File::create(dir.path().join("out")).unwrap()),
    );
    let err = stderr_of(child).await;
    assert!(
        err.contains("stdin=\"other\"") && err.contains("stdin_on_reactor=false"),
        "{err}"
    );
}
