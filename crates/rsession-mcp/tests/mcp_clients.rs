//! The key scenarios through a real MCP client (rmcp) talking to the built
//! `rsession-mcp` binary, over stdio and over streamable HTTP. The binary
//! starts its embedded local Rserve.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{
    Client, error_code, http_client, images, peak_rss_bytes, stdio_client, structured, text,
};
use rsession_mcp::harness::png_dimensions;
use serde_json::json;

const TOOLS: [&str; 9] = [
    "create_session",
    "execute_in_session",
    "list_sessions",
    "close_session",
    "reset_session",
    "list_session_files",
    "read_session_file",
    "write_session_file",
    "install_package",
];

async fn key_scenarios(c: &Client) {
    let tools = c.service.list_all_tools().await.expect("tools/list");
    for name in TOOLS {
        let t = tools
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("tool {name} missing"));
        assert!(
            t.description.as_deref().is_some_and(|d| !d.is_empty()),
            "{name} has a description"
        );
    }

    let sid = c.create_session().await;

    // state persists; events in order as text and as structured events
    let r = c.exec(&sid, "x <- 41").await;
    assert_eq!(r.is_error, Some(false));
    let r = c
        .exec(
            &sid,
            "cat('out\\n'); message('msg'); warning('careful'); x + 1; stop('boom')",
        )
        .await;
    assert_eq!(r.is_error, Some(false), "an R error is a normal result");
    let s = structured(&r);
    assert_eq!(s["status"], "error");
    let kinds: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["stdout", "message", "warning", "value", "error"]);
    assert_eq!(
        text(&r),
        "out\nmsg\nWarning message:\ncareful\n[1] 42\nError: boom\n"
    );

    // plot as MCP image content
    let r = c.exec(&sid, "plot(cars)").await;
    let imgs = images(&r);
    assert_eq!(imgs.len(), 1, "{r:?}");
    assert_eq!(imgs[0].0, "image/png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(&imgs[0].1)
        .expect("base64");
    assert_eq!(png_dimensions(&png), Some((800, 600)));
    assert_eq!(structured(&r)["events"][0]["type"], "plot");

    // UTF-8 and exact numbers
    let r = c
        .exec(&sid, "c('é', '中文', '😀'); c(NA, NaN, Inf, -0)")
        .await;
    assert_eq!(
        text(&r),
        "[1] \"é\"    \"中文\" \"😀\"  \n[1]  NA NaN Inf   0\n"
    );

    // deadline: interrupted, state kept, session answers
    for code in ["Sys.sleep(60)", "repeat {}"] {
        let t = Instant::now();
        let r = c.exec_limited(&sid, code, 2.0, 10_000).await;
        assert_eq!(error_code(&r), "execution_timeout", "{code}");
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "{code} took {:?}",
            t.elapsed()
        );
        let r = c.exec(&sid, "x").await;
        assert_eq!(text(&r), "[1] 41\n", "{code}: state kept");
    }

    // quit: session_lost, then a fresh R with a plain notice
    let r = c
        .exec(&sid, "writeLines('kept', 'k.txt'); quit('no')")
        .await;
    assert_eq!(error_code(&r), "session_lost");
    assert_eq!(structured(&r)["retryable"], true);
    let r = c.exec(&sid, "exists('x'); readLines('k.txt')").await;
    assert_eq!(r.is_error, Some(false));
    let t = text(&r);
    assert!(t.starts_with("NOTE: R state was reset"), "{t}");
    assert!(t.ends_with("[1] FALSE\n[1] \"kept\"\n"), "{t}");
    assert_eq!(structured(&r)["state_reset"], true);

    // files: round trip, traversal refused
    let r = c
        .call(
            "write_session_file",
            json!({"session_id": sid, "path": "d/a.csv", "content": "g,v\na,1\nb,2\n"}),
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let r = c
        .call(
            "read_session_file",
            json!({"session_id": sid, "path": "d/a.csv"}),
        )
        .await;
    assert_eq!(text(&r), "g,v\na,1\nb,2\n");
    let r = c
        .call(
            "list_session_files",
            json!({"session_id": sid, "path": "d"}),
        )
        .await;
    assert_eq!(structured(&r)["files"][0]["name"], "a.csv");
    assert_eq!(structured(&r)["files"][0]["size"], 12);
    for bad in ["../../etc/passwd", "/etc/passwd"] {
        let r = c
            .call("read_session_file", json!({"session_id": sid, "path": bad}))
            .await;
        assert_eq!(error_code(&r), "invalid_argument", "{bad}");
    }

    // garbage arguments and unknown sessions are clear tool errors
    let r = c
        .call("execute_in_session", json!({"session_id": 7, "code": []}))
        .await;
    assert_eq!(error_code(&r), "invalid_argument");
    let r = c.exec("rs-000000000000", "1").await;
    assert_eq!(error_code(&r), "session_not_found");

    let r = c.call("list_sessions", json!({})).await;
    assert_eq!(structured(&r)["sessions"][0]["session_id"], sid.as_str());
    let r = c.call("close_session", json!({"session_id": sid})).await;
    assert_eq!(r.is_error, Some(false));
    let r = c.exec(&sid, "1").await;
    assert_eq!(error_code(&r), "session_not_found");
}

#[tokio::test]
async fn stdio_key_scenarios() {
    let c = stdio_client(&["--interrupt-grace-secs", "1"]).await;
    key_scenarios(&c).await;
    c.stop().await;
}

#[tokio::test]
async fn http_key_scenarios_and_operational_endpoints() {
    let (c, base) = http_client(&["--interrupt-grace-secs", "1"]).await;
    key_scenarios(&c).await;
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            let resp = reqwest_get(&url).await;
            (resp.0, resp.1)
        }
    };
    let (status, body) = get("/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body, "ok\n");
    let (status, _) = get("/readyz").await;
    assert_eq!(status, 200);
    let (status, body) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("rsession_mcp_executions_total{status=\"error\"}"),
        "{body}"
    );
    assert!(body.contains("rsession_mcp_tool_calls_total{tool=\"execute_in_session\",outcome=\"execution_timeout\"} 2"), "{body}");
    c.stop().await;
}

/// Minimal HTTP/1.1 GET over a loopback TCP socket (status, body).
async fn reqwest_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (authority, path) = rest.split_at(rest.find('/').expect("path"));
    let mut s = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let resp = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn stdio_fifty_megabytes_of_output_keep_server_memory_bounded() {
    let c = stdio_client(&[]).await;
    let sid = c.create_session().await;
    c.exec(&sid, "1").await;
    let before = peak_rss_bytes(c.pid);
    let t = Instant::now();
    let r = c
        .exec_limited(
            &sid,
            "for (i in 1:50) cat(strrep('y', 1e6), '\\n'); cat('END\\n')",
            60.0,
            100_000,
        )
        .await;
    let took = t.elapsed();
    let after = peak_rss_bytes(c.pid);
    assert_eq!(r.is_error, Some(false), "{:?}", structured(&r));
    let s = structured(&r);
    assert_eq!(s["truncated"], true);
    assert!(s["omitted_bytes"].as_u64().unwrap() > 49_000_000);
    let t_out = text(&r);
    assert!(t_out.len() < 101_000, "text is {} bytes", t_out.len());
    // over one page (--page-chars): the tail is on the last page
    let pages = s["pager"]["pages"].as_u64().expect("paged");
    let last = c
        .call(
            "read_output",
            serde_json::json!({"handle": s["pager"]["handle"], "page": pages}),
        )
        .await;
    assert!(text(&last).contains("END\n"), "{}", text(&last));
    assert!(
        after.saturating_sub(before) < 20 << 20,
        "server peak RSS grew by {} bytes (before {before}, after {after})",
        after.saturating_sub(before)
    );
    eprintln!("50 MB output: {took:?}, server peak RSS {before} -> {after} bytes");
    c.stop().await;
}

#[tokio::test]
async fn concurrent_call_through_mcp_gets_session_busy() {
    let c = stdio_client(&[]).await;
    let sid = c.create_session().await;
    let slow = c.exec(&sid, "Sys.sleep(2); 'done'");
    let busy = async {
        // the slow call is sent first; retry briefly until it holds the session
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = c.call("list_sessions", json!({})).await;
            if structured(&r)["sessions"][0]["busy"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "never busy");
        }
        c.exec(&sid, "1").await
    };
    let (slow, busy) = tokio::join!(slow, busy);
    assert_eq!(text(&slow), "[1] \"done\"\n");
    assert_eq!(error_code(&busy), "session_busy");
    assert_eq!(structured(&busy)["retryable"], true);
    c.stop().await;
}

#[tokio::test]
async fn stdio_against_a_given_rserve_endpoint_with_credentials() {
    let rserve = rsession_mcp::local_rserve::LocalRserve::start(&Default::default())
        .await
        .expect("Rserve");
    let pwfile = rserve.dir().join("client-password");
    std::fs::write(&pwfile, format!("{}\n", rserve.credentials().password)).unwrap();
    let root = rserve.dir().join("given-root");
    let c = stdio_client(&[
        "--sandbox",
        "danger-full-access",
        "--rserve",
        rserve.addr(),
        "--rserve-user",
        &rserve.credentials().username,
        "--rserve-password-file",
        &pwfile.display().to_string(),
        "--workspace-root",
        &root.display().to_string(),
    ])
    .await;
    let sid = c.create_session().await;
    let r = c.exec(&sid, "getwd()").await;
    assert_eq!(text(&r), format!("[1] \"{}/{sid}\"\n", root.display()));
    c.stop().await;
    // a wrong password is backend_unavailable, not a crash
    std::fs::write(&pwfile, "wrong\n").unwrap();
    let c = stdio_client(&[
        "--sandbox",
        "danger-full-access",
        "--rserve",
        rserve.addr(),
        "--rserve-user",
        "rsession",
        "--rserve-password-file",
        &pwfile.display().to_string(),
    ])
    .await;
    let r = c.call("create_session", json!({})).await;
    assert_eq!(error_code(&r), "backend_unavailable");
    c.stop().await;
    rserve.stop().await;
}
