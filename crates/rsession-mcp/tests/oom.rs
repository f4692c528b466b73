//! Telling an out-of-memory kill from other losses, against a real Rserve.
//!
//! No memory limit can be set on this machine's cgroup, so the kill itself is
//! the cluster e2e suite's. Here: the counter read when a connection opens
//! (compared with the same file read from Rust), the harness reading cgroup v1
//! and v2 files, an ordinary loss that still reads as before, and the whole
//! OOM path with a fake cgroup tree (`RSESSION_CGROUP_ROOT`, given to Rserve
//! by a wrapper script) whose counter the test bumps as the kernel would.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{OWNER, fixture_with};
use rsession_mcp::errors::ErrorCode;
use rsession_mcp::harness::{Event, r_string_literal};
use rsession_mcp::local_rserve::LocalRserveOptions;
use rsession_mcp::session::conn::RConn;
use rsession_mcp::session::oom::MemoryState;
use rsession_mcp::session::{Endpoint, Progress, SessionManager};

const ORDINARY_LOSS: &str = "the R process of this session ended during the call (quit(), a crash, or it was killed). Retry: the next call starts a fresh R in the same workspace (R state lost, files kept).";

/// `oom_kill N` of a cgroup events file, as the harness reads it.
fn oom_kill_line(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// This host's cgroup memory state, read from Rust the way the harness reads
/// it in R (Rserve runs on this host, in this cgroup namespace).
fn host_memory_state() -> MemoryState {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let limit = |text: Option<String>| {
        text.and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|&b| b < 1 << 62)
    };
    if Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists() {
        MemoryState {
            oom_kills: read("/sys/fs/cgroup/memory/memory.oom_control")
                .as_deref()
                .and_then(oom_kill_line),
            limit_bytes: limit(read("/sys/fs/cgroup/memory/memory.limit_in_bytes")),
        }
    } else if Path::new("/sys/fs/cgroup/memory.events").exists() {
        MemoryState {
            oom_kills: read("/sys/fs/cgroup/memory.events")
                .as_deref()
                .and_then(oom_kill_line),
            limit_bytes: limit(read("/sys/fs/cgroup/memory.max")),
        }
    } else {
        MemoryState::default()
    }
}

#[tokio::test]
async fn the_oom_kill_counter_is_read_when_a_connection_opens() {
    let f = fixture_with(&Default::default(), |_| {}).await;
    let endpoint = Endpoint {
        addr: f.rserve().addr().to_string(),
        credentials: Some(f.rserve().credentials().clone()),
        workspace: f.rserve().dir().join("ws-counter").display().to_string(),
    };
    let conn = RConn::open(&endpoint, Duration::from_secs(30))
        .await
        .expect("connects");
    // A number where this host exposes the counter (cgroup v1 or v2), NA
    // (None) where it does not; either way the same as Rust reads it.
    assert_eq!(conn.memory, host_memory_state());
    conn.close().await;
}

/// `.rsession$memory_state(root)` in the session, decoded.
async fn memory_state_at(
    m: &SessionManager,
    sid: &str,
    root: &Path,
) -> (Option<String>, MemoryState) {
    let lit = r_string_literal(&root.display().to_string()).unwrap();
    let s = m
        .eval_helper(OWNER, sid, &format!(".rsession$memory_state({lit})"), None)
        .await
        .expect("memory_state runs");
    let cgroup = s.get("cgroup").and_then(|c| c.as_str()).map(str::to_string);
    (cgroup, MemoryState::from_sexp(&s))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn the_harness_reads_cgroup_v1_and_v2_files_and_na_otherwise() {
    let f = fixture_with(&Default::default(), |_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let dir = tempfile::tempdir().unwrap();
    let state = |oom_kills, limit_bytes| MemoryState {
        oom_kills,
        limit_bytes,
    };

    let v1 = dir.path().join("v1");
    write(
        &v1.join("memory/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
    );
    write(&v1.join("memory/memory.limit_in_bytes"), "536870912\n");
    assert_eq!(
        memory_state_at(m, &sid, &v1).await,
        (Some("v1".into()), state(Some(4), Some(512 << 20)))
    );
    // unlimited (PAGE_COUNTER_MAX), and a kernel older than 4.13 without the counter
    write(
        &v1.join("memory/memory.limit_in_bytes"),
        "9223372036854771712\n",
    );
    write(
        &v1.join("memory/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\n",
    );
    assert_eq!(
        memory_state_at(m, &sid, &v1).await,
        (Some("v1".into()), state(None, None))
    );

    let v2 = dir.path().join("v2");
    write(
        &v2.join("memory.events"),
        "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n",
    );
    write(&v2.join("memory.max"), "max\n");
    assert_eq!(
        memory_state_at(m, &sid, &v2).await,
        (Some("v2".into()), state(Some(2), None))
    );
    write(&v2.join("memory.max"), "1073741824\n");
    assert_eq!(
        memory_state_at(m, &sid, &v2).await,
        (Some("v2".into()), state(Some(2), Some(1 << 30)))
    );

    assert_eq!(
        memory_state_at(m, &sid, &dir.path().join("none")).await,
        (None, MemoryState::default())
    );
}

#[tokio::test]
async fn an_ordinary_lost_connection_still_says_what_it_said() {
    let f = fixture_with(&Default::default(), |_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    let e = m
        .execute(OWNER, &sid, "tools::pskill(Sys.getpid(), 9)", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionLost, "{e:?}");
    assert_eq!(e.message, ORDINARY_LOSS);
    assert_eq!(e.details["state_kept"], false);
    assert!(
        e.details["reason"]
            .as_str()
            .is_some_and(|r| r != "oom_killed"),
        "{:?}",
        e.details
    );
    assert!(e.details.get("memory_limit_bytes").is_none());
    let r = m.execute(OWNER, &sid, "1", None, None).await.unwrap();
    let notice = r.state_reset_notice.expect("reset notice");
    assert!(
        notice.contains("the connection ended during a call") && !notice.contains("out-of-memory"),
        "{notice}"
    );
}

/// A wrapper around `R` that starts Rserve with `RSESSION_CGROUP_ROOT=root`.
fn r_with_cgroup_root(dir: &Path, root: &Path) -> String {
    let script = dir.join("R-with-cgroup-root");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nRSESSION_CGROUP_ROOT='{}' exec R \"$@\"\n",
            root.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

#[tokio::test]
async fn a_grown_oom_kill_counter_is_reported_as_the_oom_killer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cgroup");
    let events = root.join("memory.events");
    write(&events, "oom 0\noom_kill 0\n");
    write(&root.join("memory.max"), "536870912\n");
    let opts = LocalRserveOptions {
        r_binary: r_with_cgroup_root(dir.path(), &root),
        ..LocalRserveOptions::default()
    };
    let f = fixture_with(&opts, |_| {}).await;
    let m = &f.manager;
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    m.execute(OWNER, &sid, "writeLines('kept', 'file.txt')", None, None)
        .await
        .unwrap();

    // The kernel counts the kill, then the R process is gone.
    write(&events, "oom 1\noom_kill 1\n");
    let e = m
        .execute(OWNER, &sid, "tools::pskill(Sys.getpid(), 9)", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionLost, "{e:?}");
    assert!(e.code.retryable());
    assert!(
        e.message.contains("killed by the out-of-memory killer")
            && e.message.contains("exceeded its memory limit (512 MiB)"),
        "{}",
        e.message
    );
    assert_eq!(e.details["reason"], "oom_killed");
    assert_eq!(e.details["memory_limit_bytes"], 536_870_912u64);
    assert_eq!(e.details["session_id"], sid.as_str());
    assert_eq!(e.details["state_kept"], false);

    let r = m
        .execute(OWNER, &sid, "readLines('file.txt')", None, None)
        .await
        .unwrap();
    let notice = r.state_reset_notice.expect("reset notice");
    assert!(
        notice.contains("killed by the out-of-memory killer")
            && notice.contains("files in the workspace survived"),
        "{notice}"
    );
    assert_eq!(
        r.outcome.events,
        vec![Event::Value("[1] \"kept\"\n".into())]
    );

    // The fresh R read the counter (now 1) at connect: an ordinary loss
    // after it is not blamed on the OOM killer.
    let e = m
        .execute(OWNER, &sid, "tools::pskill(Sys.getpid(), 9)", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.message, ORDINARY_LOSS);

    // File and data tools lose their R the same way.
    m.execute(OWNER, &sid, "1", None, None).await.unwrap();
    write(&events, "oom 2\noom_kill 2\n");
    let e = m
        .eval_helper(OWNER, &sid, "tools::pskill(Sys.getpid(), 9)", None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionLost, "{e:?}");
    assert_eq!(e.details["reason"], "oom_killed", "{e:?}");
    assert!(e.message.contains("out-of-memory killer"), "{}", e.message);
}
