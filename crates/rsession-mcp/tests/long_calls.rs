//! Long R work through a real MCP client (rmcp) against the built binary,
//! over stdio and streamable HTTP: a cancelled call stops R and frees the
//! session at once (MCP `notifications/cancelled`), and a running call
//! reports its time and latest printed line (MCP `notifications/progress`).

mod common;

use std::time::{Duration, Instant};

use common::{Client, http_client, stdio_client, stdio_client_with, structured, text};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
    ClientRequest, DetailedTask, GetTaskParams, TaskPayload, TaskStatus,
};
use rmcp::service::PeerRequestOptions;
use rsession_testkit::mcp::Recorder;
use serde_json::json;

/// Polls `list_sessions` (bounded) until session `sid` is busy: the call
/// sent before holds it and R is running.
async fn wait_until_busy(c: &Client, sid: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.call("list_sessions", json!({})).await;
        let busy = structured(&r)["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["session_id"] == sid && s["busy"] == true);
        if busy {
            return;
        }
        assert!(Instant::now() < deadline, "the call never started running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cancelling_stops_r_and_frees_the_session(c: &Client) {
    let sid = c.create_session().await;
    let r = c.exec(&sid, "x <- 41").await;
    assert_eq!(r.is_error, Some(false), "{r:?}");

    let args = json!({"session_id": sid, "code": "Sys.sleep(60); 'never'"});
    let params = CallToolRequestParams::new("execute_in_session")
        .with_arguments(args.as_object().cloned().expect("object"));
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = c
        .service
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await
        .expect("send the long call");
    wait_until_busy(c, &sid).await;

    let cancelled_at = Instant::now();
    handle
        .cancel(Some("the test gives up".into()))
        .await
        .expect("send notifications/cancelled");
    // The next call is served at once: no session_busy, and R state kept.
    let r = c.exec(&sid, "x + 1").await;
    let freed_after = cancelled_at.elapsed();
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    assert!(text(&r).contains("42"), "R state kept: {}", text(&r));
    assert!(
        freed_after < Duration::from_secs(2),
        "the session answered {freed_after:?} after the cancellation (R still sleeping?)"
    );
    let r = c.call("list_sessions", json!({})).await;
    assert_eq!(structured(&r)["sessions"][0]["busy"], false);
}

async fn progress_reports_time_and_printed_lines(c: &Client) {
    let sid = c.create_session().await;
    // The call before leaves its output in the spool; progress reads only this call's.
    let r = c.exec(&sid, "cat('a line of the call before\\n')").await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let before = c.service.service().progress().len();
    let r = c
        .exec(
            &sid,
            "Sys.sleep(2.5); for (i in 1:5) { cat(sprintf('step %d of 5\\n', i)); Sys.sleep(1) }; 'done'",
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{}", text(&r));
    let progress = c.service.service().progress();
    let during: Vec<_> = progress[before..]
        .iter()
        .filter(|p| {
            p.message
                .as_deref()
                .is_some_and(|m| m.starts_with("R running"))
        })
        .collect();
    assert!(
        during.len() >= 2,
        "a 6 s loop gets a report at least every 2 s: {progress:?}"
    );
    for pair in during.windows(2) {
        assert!(
            pair[1].progress > pair[0].progress,
            "progress increases: {during:?}"
        );
    }
    let lines: Vec<&str> = during
        .iter()
        .filter_map(|p| p.message.as_deref())
        .filter_map(|m| m.split("last output: ").nth(1))
        .collect();
    assert!(
        !lines.iter().any(|l| l.contains("call before")),
        "no report shows an earlier call's output: {during:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("step ")),
        "the loop's printed lines are seen while it runs: {during:?}"
    );
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "later reports show later lines: {lines:?}"
    );
}

#[tokio::test]
async fn stdio_cancellation_and_progress() {
    let c = stdio_client(&["--interrupt-grace-secs", "1"]).await;
    cancelling_stops_r_and_frees_the_session(&c).await;
    progress_reports_time_and_printed_lines(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn http_cancellation_and_progress() {
    let (c, _base) = http_client(&["--interrupt-grace-secs", "1"]).await;
    cancelling_stops_r_and_frees_the_session(&c).await;
    progress_reports_time_and_printed_lines(&c).await;
    c.stop().await;
}

/// Start `code` in session `sid` as a task and return its id.
async fn start_task(c: &Client, sid: &str, code: &str) -> String {
    let args = json!({"session_id": sid, "code": code});
    let params = CallToolRequestParams::new("execute_in_session")
        .with_arguments(args.as_object().cloned().expect("object"));
    match c.service.call_tool_once(params).await.expect("tools/call") {
        CallToolResponse::Task(created) => {
            assert_eq!(created.task.status, TaskStatus::Working);
            created.task.task_id
        }
        other => panic!("a task was expected: {other:?}"),
    }
}

/// Polls `tasks/get` (bounded) until the task is terminal, noting every
/// status message seen on the way.
async fn poll(c: &Client, id: &str, messages: &mut Vec<String>) -> DetailedTask {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = c
            .service
            .get_task(GetTaskParams::new(id.to_string()))
            .await
            .expect("tasks/get")
            .task;
        if let Some(m) = got.task.status_message.clone() {
            messages.push(m);
        }
        if got.status().is_terminal() {
            return got;
        }
        assert!(Instant::now() < deadline, "task {id} never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn long_calls_run_as_tasks_for_clients_that_declare_them() {
    let c = stdio_client_with(
        Recorder::declaring_tasks(),
        &["--interrupt-grace-secs", "1"],
    )
    .await;
    let tools = c.service.list_all_tools().await.expect("tools/list");
    let declares = |name: &str| {
        let t = tools.iter().find(|t| t.name == name).expect(name);
        t.meta
            .as_ref()
            .and_then(|m| m.get("io.modelcontextprotocol/tasks"))
            .cloned()
    };
    assert_eq!(
        declares("execute_in_session"),
        Some(json!({"taskSupport": "optional"}))
    );
    assert_eq!(declares("list_sessions"), None);

    // Short calls of tools without task support stay plain results.
    let sid = c.create_session().await;

    // Polled to completion, with the running time and output as status.
    let id = start_task(
        &c,
        &sid,
        "for (i in 1:3) { cat(sprintf('tick %d\\n', i)); Sys.sleep(1) }; x <- 42; x",
    )
    .await;
    let mut messages = Vec::new();
    let done = poll(&c, &id, &mut messages).await;
    let TaskPayload::Completed { result } = done.payload else {
        panic!("completed expected: {done:?}");
    };
    let result: CallToolResult = serde_json::from_value(result.into()).expect("a tool result");
    assert!(text(&result).contains("[1] 42"), "{}", text(&result));
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("R running") && m.contains("tick")),
        "the status showed time and output while R ran: {messages:?}"
    );
    // The result is delivered once.
    let again = c.service.get_task(GetTaskParams::new(id.clone())).await;
    assert!(again.is_err(), "a delivered result is gone: {again:?}");

    // Cancelled: R is interrupted, state kept, the session free at once.
    let id = start_task(&c, &sid, "Sys.sleep(60)").await;
    wait_until_busy(&c, &sid).await;
    c.service
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .expect("tasks/cancel");
    let mut messages = Vec::new();
    let cancelled = poll(&c, &id, &mut messages).await;
    assert_eq!(cancelled.status(), TaskStatus::Cancelled, "{cancelled:?}");
    // (this client gets every execute_in_session as a task)
    let next = start_task(&c, &sid, "x + 1").await;
    let done = poll(&c, &next, &mut messages).await;
    let TaskPayload::Completed { result } = done.payload else {
        panic!("the session took the next call: {done:?}");
    };
    let result: CallToolResult = serde_json::from_value(result.into()).expect("a tool result");
    assert!(
        text(&result).contains("[1] 43"),
        "R state kept: {}",
        text(&result)
    );
    c.stop().await;
}

#[tokio::test]
async fn a_full_task_store_refuses_with_a_retryable_error() {
    let c = stdio_client_with(Recorder::declaring_tasks(), &["--max-tasks", "1"]).await;
    let (a, b) = (c.create_session().await, c.create_session().await);
    let first = start_task(&c, &a, "Sys.sleep(30)").await;
    let args = json!({"session_id": b, "code": "1"});
    let params = CallToolRequestParams::new("execute_in_session")
        .with_arguments(args.as_object().cloned().expect("object"));
    let refused = match c.service.call_tool_once(params).await.expect("tools/call") {
        CallToolResponse::Complete(r) => r,
        other => panic!("a refusal was expected: {other:?}"),
    };
    assert_eq!(refused.is_error, Some(true));
    let body = structured(&refused);
    assert_eq!(body["code"], "too_many_tasks");
    assert_eq!(body["retryable"], true);
    c.service
        .cancel_task(CancelTaskParams::new(first))
        .await
        .expect("tasks/cancel");
    c.stop().await;
}
