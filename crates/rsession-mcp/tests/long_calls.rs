//! Long R work through a real MCP client (rmcp) against the built binary,
//! over stdio and streamable HTTP: a cancelled call stops R and frees the
//! session at once (MCP `notifications/cancelled`), and a running call
//! reports its time and latest printed line (MCP `notifications/progress`).

mod common;

use std::time::{Duration, Instant};

use common::{Client, http_client, stdio_client, structured, text};
use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest};
use rmcp::service::PeerRequestOptions;
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
    let before = c.service.service().progress().len();
    let r = c
        .exec(
            &sid,
            "for (i in 1:6) { cat(sprintf('step %d of 6\\n', i)); Sys.sleep(1) }; 'done'",
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
