//! Session manager + harness against a real Rserve (started by the fixture).

mod common;

use std::time::{Duration, Instant};

use common::harness_calls::HarnessCalls;
use common::{OWNER, build_local_repo, fixture, fixture_with, sandboxed_fixture};
use rsession_mcp::errors::ErrorCode;
use rsession_mcp::harness::HarnessCall;
use rsession_mcp::harness::{Event, ExecStatus, png_dimensions};
use rsession_mcp::render::render_text;
use rsession_mcp::sandbox::{SandboxMode, SandboxPolicy};
use rsession_mcp::session::{ExecReport, Progress, SessionManager, Watch};

/// Run `code` with the default limits and expect a result.
async fn run(m: &SessionManager, sid: &str, code: &str) -> ExecReport {
    m.execute(OWNER, sid, code, None, None)
        .await
        .unwrap_or_else(|e| panic!("{code}: {e:?}"))
}

#[tokio::test]
async fn state_persists_and_events_keep_their_order() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let r = run(m, &sid, "x <- 40").await;
    assert_eq!(r.outcome.status, ExecStatus::Ok);
    assert!(r.outcome.events.is_empty(), "{:?}", r.outcome.events);

    let code = "cat('out1\\n')\nmessage('msg1')\nwarning('warn1')\nx + 2\nf <- function() stop('boom')\nf()\ncat('never\\n')";
    let r = run(m, &sid, code).await;
    assert_eq!(r.outcome.status, ExecStatus::Error);
    assert_eq!(
        r.outcome.events,
        vec![
            Event::Stdout("out1\n".into()),
            Event::Message("msg1\n".into()),
            Event::Warning {
                message: "warn1".into(),
                call: None
            },
            Event::Value("[1] 42\n".into()),
            Event::Error {
                message: "boom".into(),
                call: Some("f()".into()),
                traceback: vec!["f()".into(), "stop(\"boom\")".into()]
            },
        ]
    );
    // a warning inside a function keeps its call and is not an error
    let r = run(m, &sid, "g <- function(v) as.integer(v); g('a')").await;
    assert_eq!(r.outcome.status, ExecStatus::Ok);
    assert!(
        matches!(&r.outcome.events[0], Event::Warning { message, call: Some(c) } if message.contains("NAs introduced") && c.contains("g(")),
        "{:?}",
        r.outcome.events
    );
    assert_eq!(r.outcome.events[1], Event::Value("[1] NA\n".into()));
}

#[tokio::test]
async fn parse_errors_run_nothing() {
    let f = fixture(|_| {}).await;
    let sid = f
        .manager
        .create(OWNER, &Progress::none())
        .await
        .unwrap()
        .session_id;
    let r = f
        .manager
        .execute(OWNER, &sid, "y <- 1\n1 +", None, None)
        .await
        .unwrap();
    assert_eq!(r.outcome.status, ExecStatus::ParseError);
    assert_eq!(r.outcome.events.len(), 1, "{:?}", r.outcome.events);
    assert!(
        render_text(&r.outcome).contains("unexpected end of input"),
        "{}",
        render_text(&r.outcome)
    );
    let r = f
        .manager
        .execute(OWNER, &sid, "exists('y')", None, None)
        .await
        .unwrap();
    assert_eq!(r.outcome.events, vec![Event::Value("[1] FALSE\n".into())]);
}

#[tokio::test]
async fn plots_come_back_as_png_pages() {
    let f = fixture(|_| {}).await;
    let sid = f
        .manager
        .create(OWNER, &Progress::none())
        .await
        .unwrap()
        .session_id;
    let r = f
        .manager
        .execute(
            OWNER,
            &sid,
            "plot(1:10)\nabline(h = 5)\nhist(c(1, 2, 2, 3))\ncat('after\\n')",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        r.outcome.status,
        ExecStatus::Ok,
        "{}",
        render_text(&r.outcome)
    );
    let plots: Vec<&Vec<u8>> = r
        .outcome
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Plot { png, .. } => Some(png),
            _ => None,
        })
        .collect();
    assert_eq!(plots.len(), 2, "two pages: {:?}", render_text(&r.outcome));
    for png in plots {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(png_dimensions(png), Some((800, 600)));
    }
    // ggplot objects draw when printed
    let r = f
        .manager
        .execute(
            OWNER,
            &sid,
            "library(ggplot2)\nggplot(mtcars, aes(wt, mpg)) + geom_point()",
            None,
            None,
        )
        .await
        .unwrap();
    assert!(
        r.outcome.events.iter().any(|e| matches!(
            e,
            Event::Plot {
                width: 800,
                height: 600,
                ..
            }
        )),
        "{}",
        render_text(&r.outcome)
    );
}

#[tokio::test]
async fn sleep_past_the_deadline_is_interrupted_and_the_session_answers() {
    let f = fixture(|_| {}).await;
    let sid = f
        .manager
        .create(OWNER, &Progress::none())
        .await
        .unwrap()
        .session_id;
    run(&f.manager, &sid, "kept <- 'yes'").await;
    for code in ["cat('before\\n'); Sys.sleep(60)", "repeat {}"] {
        let t = Instant::now();
        let e = f
            .manager
            .execute(OWNER, &sid, code, Some(Duration::from_secs(2)), None)
            .await
            .unwrap_err();
        let took = t.elapsed();
        assert_eq!(e.code, ErrorCode::ExecutionTimeout, "{code}: {e:?}");
        assert!(took < Duration::from_secs(4), "{code}: took {took:?}");
        assert!(took >= Duration::from_secs(2), "{code}: took {took:?}");
        let r = f
            .manager
            .execute(OWNER, &sid, "kept", None, None)
            .await
            .unwrap();
        assert_eq!(
            r.outcome.events,
            vec![Event::Value("[1] \"yes\"\n".into())],
            "{code}: state kept"
        );
        assert!(r.state_reset_notice.is_none());
    }
    let e = f
        .manager
        .execute(
            OWNER,
            &sid,
            "cat('before\\n'); Sys.sleep(60)",
            Some(Duration::from_secs(1)),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.details["partial_output"], "before\n",
        "partial output kept: {e:?}"
    );
}

#[tokio::test]
async fn quit_and_kill_lose_the_session_and_the_next_call_starts_fresh() {
    // Unsandboxed: the test kills R by the pid R reports, which in a sandbox
    // is its PID namespace's (tests/sandbox.rs covers the sandboxed kills).
    let f = fixture_with(&Default::default(), |_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    run(m, &sid, "x <- 1; writeLines('kept', 'file.txt')").await;

    let e = m
        .execute(OWNER, &sid, "quit('no')", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionLost, "{e:?}");
    assert!(e.code.retryable());
    let r = run(m, &sid, "exists('x'); readLines('file.txt')").await;
    let notice = r.state_reset_notice.clone().expect("reset notice");
    assert!(
        notice.contains("R state was reset") && notice.contains("files in the workspace survived"),
        "{notice}"
    );
    assert_eq!(
        r.outcome.events,
        vec![
            Event::Value("[1] FALSE\n".into()),
            Event::Value("[1] \"kept\"\n".into())
        ]
    );

    // a killed R process (SIGKILL from outside)
    let r = run(m, &sid, "cat(Sys.getpid())").await;
    let pid = match &r.outcome.events[0] {
        Event::Stdout(p) => p.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    let e = m.execute(OWNER, &sid, "1", None, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionLost, "{e:?}");
    let r = run(m, &sid, "1 + 1").await;
    assert!(r.state_reset_notice.is_some());
    assert_eq!(r.outcome.events, vec![Event::Value("[1] 2\n".into())]);
    // the notice is given once
    let r = run(m, &sid, "2").await;
    assert!(r.state_reset_notice.is_none());
}

#[tokio::test]
async fn fifty_megabytes_of_output_come_back_capped_head_and_tail() {
    let f = fixture(|_| {}).await;
    let sid = f
        .manager
        .create(OWNER, &Progress::none())
        .await
        .unwrap()
        .session_id;
    let t = Instant::now();
    let r = f
        .manager
        .execute(
            OWNER,
            &sid,
            "cat('START\\n'); for (i in 1:50) cat(strrep('x', 1e6), '\\n'); cat('END\\n')",
            Some(Duration::from_secs(60)),
            Some(10_000),
        )
        .await
        .unwrap();
    let o = &r.outcome;
    assert!(o.truncated);
    assert!(o.omitted_bytes > 49_000_000, "{}", o.omitted_bytes);
    let kept: usize = o.events.iter().map(Event::text_len).sum();
    assert!(kept <= 10_000, "kept {kept} bytes");
    let text = render_text(o);
    assert!(text.starts_with("START\n"), "head kept");
    assert!(text.ends_with("END\n"), "tail kept");
    assert!(text.contains("bytes of output omitted"));
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn text_and_numbers_print_exactly() {
    let f = fixture(|_| {}).await;
    let sid = f
        .manager
        .create(OWNER, &Progress::none())
        .await
        .unwrap()
        .session_id;
    let r = f
        .manager
        .execute(
            OWNER,
            &sid,
            "s <- c('é', '中文', '😀'); s; cat(s, '\\n'); nchar(s)",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        render_text(&r.outcome),
        "[1] \"é\"    \"中文\" \"😀\"  \né 中文 😀 \n[1] 1 2 1\n"
    );
    let r = f
        .manager
        .execute(
            OWNER,
            &sid,
            "c(NA, NaN, Inf, -Inf, -0, 1.5); NA_integer_; NA_character_; 1/-0; identical(-0, 0)",
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        render_text(&r.outcome),
        "[1]   NA  NaN  Inf -Inf  0.0  1.5\n[1] NA\n[1] NA\n[1] -Inf\n[1] TRUE\n"
    );
}

#[tokio::test]
async fn concurrent_calls_on_one_session_get_session_busy() {
    let f = fixture(|_| {}).await;
    let m = f.manager.clone();
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let (m2, sid2) = (m.clone(), sid.clone());
    let slow = tokio::spawn(async move {
        m2.execute(OWNER, &sid2, "Sys.sleep(1.5); 'slow done'", None, None)
            .await
    });
    // wait until the slow call holds the session (observable through list)
    wait_busy(&m, &sid).await;
    let e = m.execute(OWNER, &sid, "1", None, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionBusy);
    assert!(e.code.retryable());
    let r = slow.await.unwrap().unwrap();
    assert_eq!(
        r.outcome.events,
        vec![Event::Value("[1] \"slow done\"\n".into())]
    );
    // other sessions are not blocked
    let other = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    assert!(m.execute(OWNER, &other, "1", None, None).await.is_ok());
}

/// A client that cancels by closing its HTTP request (streamable HTTP at
/// 2026-07-28) can send its next call before the server sees the close: the
/// next call waits briefly for the cancellation instead of answering
/// `session_busy`, and R state is kept.
#[tokio::test]
async fn a_call_behind_one_cancelled_moments_later_is_served() {
    let f = fixture(|_| {}).await;
    let m = f.manager.clone();
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    m.execute(OWNER, &sid, "x <- 41", None, None).await.unwrap();
    let watch = Watch::default();
    let (m2, sid2, w2) = (m.clone(), sid.clone(), watch.clone());
    let slow = tokio::spawn(async move {
        let call = HarnessCall::Execute {
            code: "Sys.sleep(60)".into(),
            limits: m2.exec_limits(None),
        };
        m2.call(OWNER, &sid2, call, None, &w2).await
    });
    wait_busy(&m, &sid).await;
    let cancel = watch.cancel.clone();
    let late_cancel = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let t = Instant::now();
    let r = m.execute(OWNER, &sid, "x + 1", None, None).await.unwrap();
    assert_eq!(r.outcome.events, vec![Event::Value("[1] 42\n".into())]);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let e = slow.await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Cancelled);
    late_cancel.await.unwrap();

    // A holder that is not cancelled still means session_busy, after the brief wait.
    let (m3, sid3) = (m.clone(), sid.clone());
    let slow =
        tokio::spawn(async move { m3.execute(OWNER, &sid3, "Sys.sleep(3)", None, None).await });
    wait_busy(&m, &sid).await;
    let t = Instant::now();
    let e = m.execute(OWNER, &sid, "1", None, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionBusy);
    assert!(
        t.elapsed() >= rsession_mcp::session::BUSY_WAIT,
        "{:?}",
        t.elapsed()
    );
    slow.await.unwrap().unwrap();
}

/// Polls `list` (bounded) until session `sid` is busy.
async fn wait_busy(m: &SessionManager, sid: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !m
        .list(OWNER)
        .await
        .unwrap()
        .iter()
        .any(|s| s.session_id == sid && s.busy)
    {
        assert!(Instant::now() < deadline, "session never became busy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn limits_and_bad_input_are_refused_clearly() {
    let f = fixture(|c| c.limits.max_code_bytes = 100).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let e = m
        .execute(OWNER, &sid, &"1;".repeat(100), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::CodeTooLarge);
    let e = m
        .execute(OWNER, "rs-nope", "1", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionNotFound);
    let e = m
        .execute("someone-else", &sid, "1", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionNotFound, "owners are isolated");
    let e = m
        .execute(OWNER, &sid, "'a\0b'", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn workspace_files_stay_inside() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    m.write_file(OWNER, &sid, "data/a.csv", b"x,y\n1,2\n", true)
        .await
        .unwrap();
    let r = m.read_file(OWNER, &sid, "data/a.csv", None).await.unwrap();
    assert_eq!(
        r.get("bytes").and_then(|b| b.as_raw()),
        Some(&b"x,y\n1,2\n"[..])
    );
    let binary: Vec<u8> = (0..=255).collect();
    m.write_file(OWNER, &sid, "bin.dat", &binary, true)
        .await
        .unwrap();
    let r = m.read_file(OWNER, &sid, "bin.dat", None).await.unwrap();
    assert_eq!(r.get("bytes").and_then(|b| b.as_raw()), Some(&binary[..]));
    let e = m
        .write_file(OWNER, &sid, "bin.dat", b"x", false)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "no overwrite: {e:?}");
    let listing = m.list_files(OWNER, &sid, ".", false).await.unwrap();
    let names: Vec<String> = listing
        .get("name")
        .unwrap()
        .as_strings()
        .unwrap()
        .iter()
        .flatten()
        .cloned()
        .collect();
    assert!(
        names.contains(&"data".to_string()) && names.contains(&"bin.dat".to_string()),
        "{names:?}"
    );
    // code sees the same files, in its working directory
    let r = run(m, &sid, "read.csv('data/a.csv')$y").await;
    assert_eq!(r.outcome.events, vec![Event::Value("[1] 2\n".into())]);

    for bad in ["../escape.txt", "/etc/passwd", "a/../../x", "~/x"] {
        assert_eq!(
            m.read_file(OWNER, &sid, bad, None).await.unwrap_err().code,
            ErrorCode::InvalidArgument,
            "{bad}"
        );
        assert_eq!(
            m.write_file(OWNER, &sid, bad, b"x", true)
                .await
                .unwrap_err()
                .code,
            ErrorCode::InvalidArgument,
            "{bad}"
        );
    }
    // symlinks made by code that point out of the workspace are refused by the R-side check
    run(
        m,
        &sid,
        "file.symlink('/etc', 'etc_link'); file.symlink('/tmp', 'tmp_link')",
    )
    .await;
    let e = m
        .read_file(OWNER, &sid, "etc_link/hostname", None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}");
    assert!(e.message.contains("leaves the workspace"), "{}", e.message);
    let e = m
        .write_file(OWNER, &sid, "tmp_link/planted.txt", b"x", true)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}");
    assert!(!std::path::Path::new("/tmp/planted.txt").exists());
    run(m, &sid, "file.symlink('/nonexistent/target', 'dangling')").await;
    let e = m
        .write_file(OWNER, &sid, "dangling", b"x", true)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}");
    let e = m
        .list_files(OWNER, &sid, "etc_link", false)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    let e = m
        .read_file(OWNER, &sid, "missing.txt", None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn close_removes_the_workspace_and_reset_keeps_files() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let info = m.create(OWNER, &Progress::none()).await.unwrap();
    let sid = info.session_id.clone();
    let r_ws = info.workspace.clone().unwrap();
    let ws = f.host_workspace(&sid, &r_ws);
    assert!(ws.is_dir());
    run(m, &sid, "x <- 1; writeLines('a', 'keep.txt')").await;
    let notice = m.reset(OWNER, &sid).await.unwrap();
    assert!(notice.contains("reset"));
    let r = run(m, &sid, "exists('x'); file.exists('keep.txt'); getwd()").await;
    assert_eq!(
        render_text(&r.outcome),
        format!("[1] FALSE\n[1] TRUE\n[1] \"{r_ws}\"\n")
    );
    assert!(
        r.state_reset_notice.is_none(),
        "explicit reset already reported"
    );
    m.close(OWNER, &sid).await.unwrap();
    assert!(!ws.exists(), "workspace removed on close");
    assert_eq!(
        m.execute(OWNER, &sid, "1", None, None)
            .await
            .unwrap_err()
            .code,
        ErrorCode::SessionNotFound
    );
    assert!(m.list(OWNER).await.unwrap().is_empty());
}

#[tokio::test]
async fn help_is_text() {
    let f = fixture(|_| {}).await;
    let sid = f
        .manager
        .create(OWNER, &Progress::none())
        .await
        .unwrap()
        .session_id;
    let r = f
        .manager
        .execute(OWNER, &sid, "?mean", None, Some(100_000))
        .await
        .unwrap();
    let text = render_text(&r.outcome);
    assert!(
        text.contains("Arithmetic Mean") && text.contains("Usage:"),
        "{text}"
    );
    assert!(!text.contains('\u{8}'), "no backspace overstrikes");
}

#[tokio::test]
async fn install_package_from_a_local_repository_into_the_session_library() {
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = build_local_repo(repo_dir.path());
    // The repository is a host folder the sandbox may read (--sandbox-read).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(repo_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut policy = SandboxPolicy::new(SandboxMode::WorkspaceWrite);
    policy.read_only_paths.push(repo_dir.path().to_path_buf());
    let f = sandboxed_fixture(policy, |c| c.package_repository = repo.clone()).await;
    let m = &f.manager;
    let info = m.create(OWNER, &Progress::none()).await.unwrap();
    let (sid, r_ws) = (info.session_id, info.workspace.unwrap());
    let r = m
        .install_packages(OWNER, &sid, &["rsessiontest".to_string()])
        .await
        .unwrap();
    assert_eq!(
        r.outcome.status,
        ExecStatus::Ok,
        "{}",
        render_text(&r.outcome)
    );
    assert!(
        render_text(&r.outcome).contains("installed rsessiontest 0.1.0"),
        "{}",
        render_text(&r.outcome)
    );
    let r = run(
        m,
        &sid,
        "library(rsessiontest); hello(); find.package('rsessiontest')",
    )
    .await;
    let text = render_text(&r.outcome);
    assert!(text.contains("hello from rsessiontest"), "{text}");
    assert!(
        text.contains(&format!("{r_ws}/.R/library/rsessiontest")),
        "installed in the session library: {text}"
    );
    let r = m
        .install_packages(OWNER, &sid, &["nosuchpkgxyz".to_string()])
        .await
        .unwrap();
    assert_eq!(
        r.outcome.status,
        ExecStatus::Error,
        "{}",
        render_text(&r.outcome)
    );
    assert_eq!(
        m.install_packages(OWNER, &sid, &["bad name".to_string()])
            .await
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn child_process_output_comes_back_in_order_with_rs_own() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let code = "cat('before\\n'); system('echo hi; echo oops >&2'); \
                system2('echo', 'two', stdout = ''); cat('after\\n'); invisible()";
    let r = run(m, &sid, code).await;
    assert_eq!(r.outcome.status, ExecStatus::Ok);
    assert_eq!(
        render_text(&r.outcome),
        "before\nhi\noops\ntwo\nafter\n",
        "{:?}",
        r.outcome.events
    );
    // the next call holds only its own output, and the cap holds for children too
    let r = m
        .execute(
            OWNER,
            &sid,
            "system('head -c 200000 /dev/zero | tr \"\\\\0\" x')",
            None,
            Some(1000),
        )
        .await
        .expect("capped");
    let text = render_text(&r.outcome);
    assert!(r.outcome.truncated, "{text}");
    assert!(!text.contains("before"), "{text}");
    assert!(text.len() < 4000, "{} bytes came back", text.len());
}

/// User code runs with R's default JIT level: a closure the user defines is compiled when
/// called, as outside RSession. A sandboxed session's harness is the one its Rserve parent
/// sourced (`Preload::Source`: its R option names this harness's digest); the session compiles
/// it in a background child and adopts the bytecode on a later call.
#[tokio::test]
async fn user_code_keeps_rs_jit_and_the_sandboxed_harness_compiles_in_the_background() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    run(
        m,
        &sid,
        "f <- function(n) { s <- 0; for (i in seq_len(n)) s <- s + i; s }; f(10); f(10)",
    )
    .await;
    let probe = "cat(compiler::enableJIT(-1), typeof(.Internal(bodyCode(f))), typeof(.Internal(bodyCode(get('.rsession', 'rsession:harness')$execute))), getOption('rsession.harness'))";
    let compiled = vec![Event::Stdout(format!(
        "3 bytecode bytecode {}",
        rsession_harness::digest()
    ))];
    // About 0.6 s of CPU at the lowest priority; the deadline allows for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let events = run(m, &sid, probe).await.outcome.events;
        if events == compiled {
            break;
        }
        assert_eq!(
            events,
            vec![Event::Stdout(format!(
                "3 bytecode language {}",
                rsession_harness::digest()
            ))],
            "before the bytecode is adopted: JIT level 3, a compiled user closure, the preloaded harness uncompiled"
        );
        assert!(Instant::now() < deadline, "the harness was not compiled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Visible values are printed with base R's `print`, so a `print` the user defines does not
/// replace it, while S3 methods the user defines are found, as at the console.
#[tokio::test]
async fn visible_values_print_with_base_print_and_the_users_s3_methods() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let r = run(
        m,
        &sid,
        "print <- function(x, ...) cat('masked\\n')\nprint.temp <- function(x, ...) cat(unclass(x), 'degrees\\n')\nstructure(21, class = 'temp')\n1 + 1",
    )
    .await;
    assert_eq!(
        r.outcome.events,
        vec![
            Event::Value("21 degrees\n".into()),
            Event::Value("[1] 2\n".into())
        ]
    );
    assert_eq!(r.outcome.status, ExecStatus::Ok);
}

/// R's temp directory removed by user code (the spool and the plot directory live in it) is
/// made again before the next evaluation, which the harness no longer checks for on every call:
/// output, `tempfile()` and plots work as before.
#[tokio::test]
async fn a_removed_temp_directory_is_made_again_for_the_next_call() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let r = run(
        m,
        &sid,
        "unlink(tempdir(), recursive = TRUE); dir.exists(tempdir())",
    )
    .await;
    assert_eq!(
        render_text(&r.outcome),
        "[1] FALSE\n",
        "the same call still reads its output"
    );
    let r = run(
        m,
        &sid,
        "cat(dir.exists(tempdir()), file.create(tempfile()), '\\n'); plot(1:3); 'done'",
    )
    .await;
    assert_eq!(
        r.outcome.status,
        ExecStatus::Ok,
        "{}",
        render_text(&r.outcome)
    );
    let text = render_text(&r.outcome);
    assert!(text.starts_with("TRUE TRUE \n[1] \"done\"\n"), "{text}");
    assert_eq!(
        r.outcome
            .events
            .iter()
            .filter(|e| matches!(e, Event::Plot { .. }))
            .count(),
        1,
        "the plot directory was made again for the device"
    );
}

/// The output spool is only appended to between calls (no truncation, reopening or size check
/// per call, the bulk of the harness's own time for a short call), and emptied after a call
/// that leaves more than 64 KiB in it, or before one when something wrote to it between calls
/// (here: Rserve printing a failed file call's error); one removed from outside is opened again.
#[tokio::test]
async fn the_spool_is_emptied_after_long_output_and_reopened_when_removed() {
    let f = fixture(|_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let spool_size = "cat(file.size(get('.rsession', 'rsession:harness')$state$spool$path))";
    run(m, &sid, "cat('short\\n')").await;
    assert_eq!(
        render_text(&run(m, &sid, spool_size).await.outcome),
        "6",
        "a short output stays in the spool"
    );
    let r = run(m, &sid, "cat(strrep('x', 100000), '\\n', sep = '')").await;
    assert!(r.outcome.truncated, "over the 64 KiB default cap");
    assert_eq!(
        render_text(&run(m, &sid, spool_size).await.outcome),
        "0",
        "emptied after 100 KB"
    );
    let refused = m
        .eval_helper(OWNER, &sid, "stop('rsession: refused between calls')", None)
        .await
        .expect_err("an R error");
    assert_eq!(refused.code, ErrorCode::InvalidArgument, "{refused:?}");
    let r = run(m, &sid, "cat('only mine\\n')").await;
    assert_eq!(render_text(&r.outcome), "only mine\n");
    let r = run(
        m,
        &sid,
        "unlink(get('.rsession', 'rsession:harness')$state$spool$path); cat('still here\\n'); 1",
    )
    .await;
    assert_eq!(render_text(&r.outcome), "still here\n[1] 1\n");
    let r = run(m, &sid, "cat('and after\\n'); system('echo child'); 2").await;
    assert_eq!(render_text(&r.outcome), "and after\nchild\n[1] 2\n");
    assert_eq!(
        render_text(&run(m, &sid, spool_size).await.outcome),
        "22",
        "a new spool, holding only what was written since"
    );
}
