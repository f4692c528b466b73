//! A session whose Rserve parent preloaded the harness (as pool pods do: crate
//! `rsession-harness`, `preload_r`) is used without installing it, and behaves the same; an R
//! that preloaded another harness, or none, gets this one installed. Real R and Rserve.

use std::time::Duration;

use rsession_mcp::harness::{Event, ExecLimits, ExecStatus};
use rsession_mcp::local_rserve::{LocalRserve, LocalRserveOptions};
use rsession_mcp::session::conn::RConn;
use rsession_mcp::session::{Endpoint, Watch};
use tokio::time::Instant;

async fn rserve(preload: Option<String>) -> (LocalRserve, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rserve = LocalRserve::start(&LocalRserveOptions {
        preload,
        ..LocalRserveOptions::default()
    })
    .await
    .expect("Rserve starts");
    (rserve, dir)
}

async fn open(rserve: &LocalRserve, ws: &std::path::Path) -> RConn {
    let endpoint = Endpoint {
        addr: rserve.addr().to_string(),
        credentials: Some(rserve.credentials().clone()),
        workspace: ws.display().to_string(),
    };
    RConn::open(&endpoint, Duration::from_secs(30))
        .await
        .expect("connects")
}

async fn run(conn: &mut RConn, code: &str) -> Vec<Event> {
    let outcome = conn
        .execute(
            code,
            &ExecLimits::default(),
            Instant::now() + Duration::from_secs(30),
            Duration::from_secs(1),
            &Watch::default(),
        )
        .await
        .expect("call")
        .expect("not interrupted");
    assert_eq!(outcome.status, ExecStatus::Ok, "{:?}", outcome.events);
    outcome.events
}

#[tokio::test]
async fn a_preloaded_harness_is_used_as_is_and_keeps_state_per_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("harness.R");
    std::fs::write(&file, rsession_harness::HARNESS_R).expect("harness file");
    let (rserve, ws) = rserve(Some(rsession_harness::preload_r(
        &file.display().to_string(),
    )))
    .await;

    let mut a = open(&rserve, &ws.path().join("a")).await;
    assert!(
        a.harness_preloaded,
        "the parent's harness was not recognised"
    );
    assert!(a.workspace.ends_with("/a"), "{}", a.workspace);
    let events = run(&mut a, "x <- 41; warning('careful'); cat('out\\n'); x + 1").await;
    assert!(
        events.contains(&Event::Stdout("out\n".into())),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Warning { message, .. } if message == "careful")),
        "{events:?}"
    );
    assert!(
        events.contains(&Event::Value("[1] 42\n".into())),
        "{events:?}"
    );

    // A second connection is a fresh fork of the same parent: harness there, x not.
    let mut b = open(&rserve, &ws.path().join("b")).await;
    assert!(b.harness_preloaded);
    let events = run(&mut b, "exists('x')").await;
    assert!(
        events.contains(&Event::Value("[1] FALSE\n".into())),
        "{events:?}"
    );
    let events = run(&mut a, "x").await;
    assert!(
        events.contains(&Event::Value("[1] 41\n".into())),
        "{events:?}"
    );
    a.close().await;
    b.close().await;
    rserve.stop().await;
}

#[tokio::test]
async fn another_harness_or_none_is_replaced_by_an_install() {
    // An R that says it preloaded some other harness (another release's operator), and one that
    // preloaded none.
    for preload in [
        Some("options(rsession.harness = 'another-release')".to_string()),
        None,
    ] {
        let (rserve, ws) = rserve(preload.clone()).await;
        let mut conn = open(&rserve, ws.path()).await;
        assert!(!conn.harness_preloaded, "{preload:?}");
        let events = run(&mut conn, "1 + 1").await;
        assert!(
            events.contains(&Event::Value("[1] 2\n".into())),
            "{events:?}"
        );
        conn.close().await;
        rserve.stop().await;
    }
}
