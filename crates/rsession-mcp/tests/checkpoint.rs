//! Checkpoint and restore of R state (`harness_checkpoint.R`) in a real R,
//! sandboxed like the product's default: state is built, checkpointed, the
//! session's R is replaced by a fresh process (`reset_session`), and the
//! restore brings back what can live on and names what cannot.

mod common;

use common::harness_calls::HarnessCalls;
use common::{OWNER, fixture};
use rserve::Sexp;
use rsession_mcp::harness::{ExecStatus, HarnessCall};
use rsession_mcp::render::render_text;
use rsession_mcp::session::{Progress, SessionManager};
use rsession_mcp::sexp_json::to_json;
use serde_json::Value;

struct M<'a>(&'a SessionManager);

impl HarnessCalls for M<'_> {
    fn manager(&self) -> &SessionManager {
        self.0
    }
}

async fn run(m: &SessionManager, sid: &str, code: &str) -> String {
    let r = m
        .execute(OWNER, sid, code, None, None)
        .await
        .unwrap_or_else(|e| panic!("{code}: {e:?}"));
    assert_eq!(
        r.outcome.status,
        ExecStatus::Ok,
        "{code}: {}",
        render_text(&r.outcome)
    );
    render_text(&r.outcome)
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn skipped(v: &Value) -> Vec<(String, String)> {
    v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["reason"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test]
async fn state_comes_back_in_a_fresh_r_and_what_cannot_is_named() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    run(
        m,
        &sid,
        "writeLines(c('id,grp', '1,a', '2,b', '3,a'), 'small.csv')
         suppressMessages(library(dplyr))
         df <- data.frame(f = factor(c('lo', 'hi'), levels = c('lo', 'hi')), d = as.Date(c('2024-01-31', '2024-02-29')))
         fit <- lm(mpg ~ wt, mtcars)
         adder <- local({ k <- 10; function(x) x + k })
         big <- numeric(4e6)
         con <- DBI::dbConnect(RSQLite::SQLite(), ':memory:')
         # what a session with a database spec holds (libpq's variables set)
         Sys.setenv(PGHOST = 'cdm-db'); pg <- structure(list(), class = c('PqConnection', 'DBIConnection'))
         set.seed(7)
         options(digits = 4)",
    )
    .await;
    let loaded: Sexp = M(m)
        .send(
            OWNER,
            &sid,
            HarnessCall::Load {
                file_path: "small.csv".into(),
                name: "small".into(),
                backend: "tibble",
                options: None,
            },
        )
        .await
        .expect("load_data");
    assert_eq!(to_json(&loaded)["rows"], 3.0);
    let expected_draw = run(
        m,
        &sid,
        "s <- .Random.seed; x <- runif(1); .Random.seed <- s; cat(format(x, digits = 15))",
    )
    .await;

    // A 16 MiB per-object cap leaves out the 32 MB vector.
    let saved: Sexp = M(m)
        .send(
            OWNER,
            &sid,
            HarnessCall::Checkpoint {
                max_bytes: 1 << 30,
                max_object_bytes: 16 << 20,
                budget_secs: 60.0,
            },
        )
        .await
        .expect("checkpoint");
    let saved = to_json(&saved);
    let kept = names(&saved, "saved");
    for n in ["df", "fit", "adder", "small", ".Random.seed", "s"] {
        assert!(kept.contains(&n.to_string()), "{n} saved: {saved}");
    }
    let left: Vec<String> = skipped(&saved).into_iter().map(|(n, _)| n).collect();
    assert_eq!(left, ["big", "con", "pg"], "{saved}");
    let reasons = skipped(&saved);
    assert!(reasons[0].1.contains("per-object cap"), "{reasons:?}");
    assert!(reasons[1].1.contains("database connection"), "{reasons:?}");
    assert!(
        reasons[2]
            .1
            .contains("open it again with pg <- DBI::dbConnect(RPostgres::Postgres())"),
        "{reasons:?}"
    );

    // A fresh R process: nothing of the above is there.
    m.reset(OWNER, &sid).await.unwrap();
    assert_eq!(run(m, &sid, "exists('fit')").await, "[1] FALSE\n");

    let restored: Sexp = M(m)
        .send(OWNER, &sid, HarnessCall::Restore)
        .await
        .expect("restore");
    let restored = to_json(&restored);
    assert_eq!(names(&restored, "datasets"), ["small"]);
    assert!(
        restored["failed"].as_array().unwrap().is_empty(),
        "{restored}"
    );
    assert!(restored["age_secs"].as_f64().unwrap() >= 0.0);
    let out = run(
        m,
        &sid,
        "cat(levels(df$f), format(df$d), class(df$d), '\\n')
         cat(round(predict(fit, data.frame(wt = 3)), 3), adder(1), '\\n')
         cat('package:dplyr' %in% search(), exists('big'), exists('con'), getOption('digits'), '\\n')
         cat(format(runif(1), digits = 15))",
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo hi 2024-01-31 2024-02-29 Date ");
    // options(digits = 4) came back too.
    assert_eq!(lines[1], "21.25 11 ");
    assert_eq!(lines[2], "TRUE FALSE FALSE 4 ");
    assert_eq!(
        lines[3], expected_draw,
        "the random-number stream continues where it was"
    );

    // The dataset is registered again: query_data sees it.
    let q: Sexp = M(m)
        .send(
            OWNER,
            &sid,
            HarnessCall::Query {
                sql: "SELECT grp, COUNT(*) AS n FROM small GROUP BY grp ORDER BY grp".into(),
                params: None,
                max_rows: 10,
            },
        )
        .await
        .expect("query_data after restore");
    let q = to_json(&q);
    assert_eq!(q["row_count"], 2.0, "{q}");
    assert!(
        run(m, &sid, "exists('small_glimpse')")
            .await
            .contains("TRUE")
    );
}

#[tokio::test]
async fn an_interrupted_checkpoint_leaves_the_previous_one() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    run(m, &sid, "a <- 1").await;
    let checkpoint = HarnessCall::Checkpoint {
        max_bytes: 1 << 30,
        max_object_bytes: 1 << 28,
        budget_secs: 60.0,
    };
    let _: Sexp = M(m).send(OWNER, &sid, checkpoint.clone()).await.unwrap();
    // The next checkpoint is stopped at its deadline while it reads an
    // object that takes long to produce (an active binding).
    run(
        m,
        &sid,
        "b <- 2; makeActiveBinding('slow', function() { Sys.sleep(30); 1 }, globalenv())",
    )
    .await;
    let e = m
        .call(
            OWNER,
            &sid,
            checkpoint,
            Some(std::time::Duration::from_secs(2)),
            &Default::default(),
        )
        .await
        .expect_err("the deadline stops the checkpoint");
    assert_eq!(
        e.code,
        rsession_mcp::errors::ErrorCode::ExecutionTimeout,
        "{e:?}"
    );
    m.reset(OWNER, &sid).await.unwrap();
    let restored: Sexp = M(m).send(OWNER, &sid, HarnessCall::Restore).await.unwrap();
    let restored = to_json(&restored);
    assert_eq!(
        names(&restored, "restored"),
        ["a"],
        "the previous checkpoint, whole"
    );
    let files = run(
        m,
        &sid,
        "cat(list.files('.rsession', all.files = TRUE, no.. = TRUE))",
    )
    .await;
    assert_eq!(
        files, "checkpoint",
        "no half-written checkpoint left behind"
    );
}

#[tokio::test]
async fn restore_without_a_checkpoint_says_so() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let e = M(m)
        .send::<Sexp>(OWNER, &sid, HarnessCall::Restore)
        .await
        .unwrap_err();
    assert!(e.message.contains("no checkpoint at"), "{e:?}");
}

#[tokio::test]
async fn checkpoint_session_through_mcp_reports_saved_and_skipped() {
    let c = common::stdio_client(&[]).await;
    let sid = c.create_session().await;
    c.exec(
        &sid,
        "df <- data.frame(x = 1:3); con <- file(tempfile(), 'w')",
    )
    .await;
    let r = c
        .call("checkpoint_session", serde_json::json!({"session_id": sid}))
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let s = common::structured(&r);
    assert_eq!(names(s, "saved"), ["df"]);
    assert_eq!(skipped(s)[0].0, "con");
    assert_eq!(s["path"], ".rsession/checkpoint");
    let text = common::text(&r);
    assert!(
        text.contains("Saved: df.") && text.contains("- con: an open connection"),
        "{text}"
    );
    let r = c
        .call(
            "checkpoint_session",
            serde_json::json!({"session_id": sid, "max_mb": 0}),
        )
        .await;
    assert_eq!(common::error_code(&r), "invalid_argument");
    c.stop().await;
}

#[tokio::test]
async fn a_kept_session_is_checkpointed_at_shutdown_and_resumed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The sandbox's user (nobody, under root) passes through to its workspace.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let root = dir.path().join("ws").display().to_string();
    let args = ["--workspace-root", root.as_str()];

    let c = common::stdio_client(&args).await;
    let sid = c.create_session().await;
    c.exec(
        &sid,
        "writeLines(c('k,v', 'a,1', 'b,2'), 'kv.csv')
         suppressMessages(library(dplyr))
         fit <- lm(mpg ~ wt, mtcars); note <- 'kept'; con <- file(tempfile(), 'w')",
    )
    .await;
    let r = c
        .call(
            "load_data",
            serde_json::json!({"session_id": sid, "file_path": "kv.csv", "name": "kv"}),
        )
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    c.stop().await; // the server checkpoints the session as it shuts down

    let c = common::stdio_client(&args).await;
    let listed = c.call("list_sessions", serde_json::json!({})).await;
    assert!(
        common::text(&listed).contains(&sid),
        "the kept session is listed: {}",
        common::text(&listed)
    );
    let r = c
        .call("create_session", serde_json::json!({"resume": sid}))
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let notice = common::structured(&r)["restore_notice"]
        .as_str()
        .unwrap()
        .to_string();
    for said in [
        "restored from this session's checkpoint",
        "fit",
        "note",
        "dplyr",
        "datasets registered: kv",
        "con (an open connection",
    ] {
        assert!(notice.contains(said), "{said:?} missing from: {notice}");
    }
    let out = common::text(
        &c.exec(
            &sid,
            "cat(note, round(coef(fit)[[2]], 2), 'package:dplyr' %in% search())",
        )
        .await,
    );
    assert_eq!(out, "kept -5.34 TRUE");
    let q = c
        .call(
            "query_data",
            serde_json::json!({"session_id": sid, "sql": "SELECT SUM(v) AS s FROM kv"}),
        )
        .await;
    assert_eq!(q.is_error, Some(false), "{q:?}");
    assert!(common::text(&q).contains('3'), "{}", common::text(&q));
    // Closing it for good deletes it: the next server does not list it.
    c.call("close_session", serde_json::json!({"session_id": sid}))
        .await;
    c.stop().await;
    let c = common::stdio_client(&args).await;
    let listed = c.call("list_sessions", serde_json::json!({})).await;
    assert!(!common::text(&listed).contains(&sid));
    c.stop().await;
}

/// Without `--workspace-root` a sandboxing server keeps its sessions in the per-user data
/// folder (`$XDG_DATA_HOME/rsession/workspaces`; `/var/lib/rsession/workspaces` as root, whose
/// sandboxed R runs as nobody and cannot enter root's home), so a restarted server resumes them.
#[tokio::test]
async fn without_a_workspace_root_sessions_are_kept_in_the_per_user_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let data = dir.path().join("data").display().to_string();
    let home = dir.path().join("home").display().to_string();
    let env = [("XDG_DATA_HOME", data.as_str()), ("HOME", home.as_str())];
    let root = if nix::unistd::geteuid().is_root() {
        std::path::PathBuf::from(rsession_mcp::config::ROOT_WORKSPACE_ROOT)
    } else {
        std::path::Path::new(&data)
            .join("rsession")
            .join("workspaces")
    };
    let start = || common::stdio_client_env(rsession_testkit::mcp::Recorder::default(), &[], &env);

    let c = start().await;
    let sid = c.create_session().await;
    let r = c
        .exec(&sid, "kept <- 'yes'; writeLines('x', 'file.txt')")
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    assert!(
        root.join(&sid).join("file.txt").is_file(),
        "the workspace is under {}",
        root.display()
    );
    c.stop().await;

    let c = start().await;
    let r = c
        .call("create_session", serde_json::json!({"resume": sid}))
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let r = c.exec(&sid, "cat(kept)").await;
    assert_eq!(common::text(&r), "yes", "{r:?}");
    let r = c
        .call("close_session", serde_json::json!({"session_id": sid}))
        .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    assert!(
        !root.join(&sid).exists(),
        "closing deletes the kept workspace"
    );
    c.stop().await;
}
