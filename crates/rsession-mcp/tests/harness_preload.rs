//! A session whose Rserve parent preloaded the harness (as pool pods do: crate
//! `rsession-harness`, `preload_r`) is used without installing it, and behaves the same; an R
//! that preloaded another harness, or none, gets this one installed. Real R and Rserve.

use std::time::Duration;

use rsession_mcp::harness::{Event, ExecLimits, ExecOutcome, ExecStatus};
use rsession_mcp::local_rserve::{LocalRserve, LocalRserveOptions};
use rsession_mcp::session::conn::RConn;
use rsession_mcp::session::{Endpoint, Watch};
use tokio::time::Instant;

async fn rserve(preload: Option<String>) -> (LocalRserve, tempfile::TempDir) {
    rserve_with(LocalRserveOptions {
        preload,
        ..LocalRserveOptions::default()
    })
    .await
}

/// A local Rserve started with `opts`, and a temporary workspace for its connections.
async fn rserve_with(opts: LocalRserveOptions) -> (LocalRserve, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rserve = LocalRserve::start(&opts).await.expect("Rserve starts");
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

/// The outcome of evaluating `code`, whatever its status.
async fn outcome(conn: &mut RConn, code: &str) -> ExecOutcome {
    conn.execute(
        code,
        &ExecLimits::default(),
        Instant::now() + Duration::from_secs(30),
        Duration::from_secs(1),
        &Watch::default(),
    )
    .await
    .expect("call")
    .expect("not interrupted")
}

/// The events of evaluating `code`, which must succeed.
async fn run(conn: &mut RConn, code: &str) -> Vec<Event> {
    let outcome = outcome(conn, code).await;
    assert_eq!(outcome.status, ExecStatus::Ok, "{:?}", outcome.events);
    outcome.events
}

/// Evaluates `code`, which must succeed and print `printed` as its value.
async fn assert_value(conn: &mut RConn, code: &str, printed: &str) {
    let events = run(conn, code).await;
    assert!(
        events.contains(&Event::Value(printed.into())),
        "{code}: {events:?}"
    );
}

#[tokio::test]
async fn a_preloaded_harness_is_used_as_is_and_keeps_state_per_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("harness.R");
    std::fs::write(&file, rsession_harness::HARNESS_R).expect("harness file");
    let (rserve, ws) = rserve(Some(rsession_harness::preload_r(
        &file.display().to_string(),
        rsession_harness::Preload::Source,
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
    assert_value(&mut b, "exists('x')", "[1] FALSE\n").await;
    assert_value(&mut a, "x", "[1] 41\n").await;
    a.close().await;
    b.close().await;
    rserve.stop().await;
}

/// A preload that fails is reported and the next still runs: the harness preloaded after it is
/// in place, and R serves (as with Rserve's own `eval` configuration key).
#[tokio::test]
async fn a_failing_preload_does_not_stop_the_harness_preload() {
    let (rserve, ws) = rserve_with(LocalRserveOptions {
        preload: Some("stop('a broken preload')".into()),
        harness: Some(rsession_harness::Preload::Source),
        ..LocalRserveOptions::default()
    })
    .await;
    let mut conn = open(&rserve, ws.path()).await;
    assert!(
        conn.harness_preloaded,
        "the harness after it was not loaded"
    );
    assert_value(&mut conn, "1 + 1", "[1] 2\n").await;
    conn.close().await;
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
        assert_value(&mut conn, "1 + 1", "[1] 2\n").await;
        conn.close().await;
        rserve.stop().await;
    }
}

/// Installed over QAP1 with background compiling turned off (`options(rsession.compile =
/// FALSE)`, as an image's Rprofile.site would), the harness stays uncompiled and runs with the
/// JIT off; user code still gets R's default level, and its closures are compiled when called.
#[tokio::test]
async fn an_installed_harness_stays_uncompiled_when_compiling_is_turned_off() {
    let (rserve, ws) = rserve(Some("options(rsession.compile = FALSE)".to_string())).await;
    let mut conn = open(&rserve, ws.path()).await;
    assert!(!conn.harness_preloaded);
    run(
        &mut conn,
        "f <- function(n) { s <- 0; for (i in seq_len(n)) s <- s + i; s }; f(9); f(9)",
    )
    .await;
    let events = run(
        &mut conn,
        "cat(compiler::enableJIT(-1), typeof(.Internal(bodyCode(f))), \
         typeof(.Internal(bodyCode(get('.rsession', 'rsession:harness')$execute))))",
    )
    .await;
    assert_eq!(events, vec![Event::Stdout("3 bytecode language".into())]);
    conn.close().await;
    rserve.stop().await;
}

/// A harness installed over QAP1 compiles itself in a child forked from the session's R and
/// adopts the bytecode on a later call; the child leaves nothing behind (no job the user's
/// `mccollect()` sees, no process, no file, the random number stream untouched).
#[tokio::test]
async fn an_installed_harness_compiles_in_a_background_child_and_adopts_it() {
    let (rserve, ws) = rserve(None).await;
    let mut conn = open(&rserve, ws.path()).await;
    assert!(!conn.harness_preloaded);
    let probe = "cat(typeof(.Internal(bodyCode(get('.rsession', 'rsession:harness')$execute))))";
    // About 0.6 s of CPU at the lowest priority; the deadline allows for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut calls = 0;
    loop {
        calls += 1;
        if run(&mut conn, probe).await == vec![Event::Stdout("bytecode".into())] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not compiled after {calls} calls"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = run(
        &mut conn,
        "cat(length(parallel:::children()), exists('.Random.seed', globalenv()), \
         length(list.files(tempdir(), 'rsession-bytecode')))",
    )
    .await;
    assert_eq!(
        events,
        vec![Event::Stdout("0 FALSE 0".into())],
        "jobs the user sees, a random seed, bytecode files"
    );
    // The child exits right after writing its file, and R reaps it: no process (zombie or not)
    // stays a child of the session's R.
    let children = "cat(sum(vapply(Sys.glob('/proc/[0-9]*/stat'), function(f) { \
         s <- tryCatch(readLines(f, warn = FALSE), error = function(e) ''); \
         identical(strsplit(sub('.*\\\\) ', '', s), ' ')[[1]][2], as.character(Sys.getpid())) }, NA)))";
    while run(&mut conn, children).await != vec![Event::Stdout("0".into())] {
        assert!(
            Instant::now() < deadline,
            "the compiling child is still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    behaves_compiled(&mut conn).await;
    conn.close().await;
    rserve.stop().await;
}

/// A parent that preloads the harness also byte-compiles it, so in a forked R the JIT stays at
/// the user's level all the time: user closures are compiled as outside RSession, and the
/// harness's own functions (evaluation and data tools alike) are already bytecode. Warnings,
/// errors with their call and traceback, and output still come back as from the uncompiled one.
#[tokio::test]
async fn a_preloaded_harness_is_compiled_and_leaves_the_jit_at_the_users_level() {
    let (rserve, ws) = rserve_with(LocalRserveOptions {
        harness: Some(rsession_harness::Preload::Compiled),
        ..LocalRserveOptions::default()
    })
    .await;
    let mut conn = open(&rserve, ws.path()).await;
    assert!(
        conn.harness_preloaded,
        "the compiled harness was not recognised"
    );
    behaves_compiled(&mut conn).await;
    conn.close().await;
    rserve.stop().await;
}

/// A compiled harness leaves the JIT at the user's level all the time: user closures are
/// compiled as outside RSession, and the harness's own functions (evaluation and data tools
/// alike) are bytecode. Warnings, errors with their call and traceback, and output come back as
/// from the uncompiled one.
async fn behaves_compiled(conn: &mut RConn) {
    run(
        conn,
        "f <- function(n) { s <- 0; for (i in seq_len(n)) s <- s + i; s }; f(10); f(10)",
    )
    .await;
    let events = run(
        conn,
        "cat(compiler::enableJIT(-1), typeof(.Internal(bodyCode(f))), \
         typeof(.Internal(bodyCode(get('.rsession', 'rsession:harness')$execute))), \
         typeof(.Internal(bodyCode(get('.rsession_data', 'rsession:data')$describe))))",
    )
    .await;
    assert_eq!(
        events,
        vec![Event::Stdout("3 bytecode bytecode bytecode".into())],
        "JIT level, the user's closure, the harness's execute and a data tool"
    );

    let outcome = outcome(
        conn,
        "g <- function() stop('boom'); cat('before\\n'); warning('careful'); g()",
    )
    .await;
    assert_eq!(outcome.status, ExecStatus::Error, "{:?}", outcome.events);
    assert_eq!(outcome.events[0], Event::Stdout("before\n".into()));
    assert!(
        matches!(&outcome.events[1], Event::Warning { message, .. } if message == "careful"),
        "{:?}",
        outcome.events
    );
    assert!(
        matches!(&outcome.events[2], Event::Error { message, call, traceback }
            if message == "boom" && call.as_deref() == Some("g()")
               && traceback == &["g()".to_string(), "stop(\"boom\")".to_string()]),
        "{:?}",
        outcome.events
    );
}
