//! Checkpoint and restore of R state, on the product's path: the sandboxed
//! direct backend with a kept workspace root, through the session manager.
//!
//! ```text
//! cargo bench -p rsession-mcp --bench checkpoint
//! ```
//!
//! For 10 MB, 100 MB and 1 GB of R objects (a data frame of doubles,
//! integers and a factor, as `object.size` counts it): the time and on-disk
//! size of `checkpoint_session`, then a server restart and the time of
//! `create_session` with `resume` (new sandbox, R start, connect, restore),
//! and the restore's own share (the same restore again, timed alone). One sample per size (the 1 GB case takes
//! tens of seconds); rerun to see the spread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rsession_mcp::harness::HarnessCall;
use rsession_mcp::metrics::Metrics;
use rsession_mcp::sandbox::{SandboxMode, SandboxPolicy};
use rsession_mcp::session::sandboxed::SandboxedBackend;
use rsession_mcp::session::{ManagerConfig, Progress, SessionManager, Watch};
use rsession_mcp::sexp_json::to_json;

const OWNER: &str = "bench";

fn manager(root: &std::path::Path) -> SessionManager {
    let backend = SandboxedBackend::new(
        SandboxPolicy::new(SandboxMode::WorkspaceWrite),
        "R".into(),
        Some(root.to_path_buf()),
        Some(20),
    )
    .expect("backend");
    let mut config = ManagerConfig::default();
    config.limits.max_duration = Duration::from_secs(600);
    SessionManager::new(Arc::new(backend), config, Arc::new(Metrics::new()))
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let root = dir.path().join("ws");
    println!(
        "| R objects (object.size) | checkpoint s | on disk MB | resume s (sandbox + R + restore) | of which restore s |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for mb in [10u64, 100, 1000] {
        let m = manager(&root);
        let sid = m
            .create(OWNER, &Progress::none())
            .await
            .expect("create")
            .session_id;
        // 16 bytes per row: a double, an integer, a factor code.
        let rows = mb * 1_000_000 / 16;
        let code = format!(
            "n <- {rows}; df <- data.frame(x = runif(n), i = seq_len(n), f = factor(sample(c('a','b','c'), n, TRUE))); \
             cat(round(as.double(object.size(df)) / 1e6))"
        );
        let built = m
            .execute(OWNER, &sid, &code, Some(Duration::from_secs(600)), None)
            .await
            .expect("build");
        let size_mb = rsession_mcp::render::render_text(&built.outcome);
        let call = HarnessCall::Checkpoint {
            max_bytes: 16 << 30,
            max_object_bytes: 16 << 30,
            budget_secs: 600.0,
        };
        let t = Instant::now();
        let reply = m
            .call(
                OWNER,
                &sid,
                call,
                Some(Duration::from_secs(900)),
                &Watch::default(),
            )
            .await
            .expect("checkpoint");
        let checkpoint_s = t.elapsed().as_secs_f64();
        let saved = to_json(&rserve::Sexp::try_from(reply).expect("reply"));
        let disk_mb = saved["bytes"].as_f64().unwrap_or(0.0) / 1e6;
        // What a server restart does: sessions disconnected, not closed.
        drop(m);

        let m = manager(&root);
        let t = Instant::now();
        let (_, notice) = m.resume(OWNER, &sid).await.expect("resume");
        let resume_s = t.elapsed().as_secs_f64();
        let notice = notice.unwrap_or_default();
        assert!(notice.contains(", df,"), "{notice}");
        let restore = m
            .execute(OWNER, &sid, "cat(nrow(df))", None, None)
            .await
            .expect("after resume");
        assert_eq!(
            rsession_mcp::render::render_text(&restore.outcome),
            rows.to_string()
        );
        // The restore's own share: the same restore once more, timed alone.
        let t = Instant::now();
        m.call(
            OWNER,
            &sid,
            HarnessCall::Restore,
            Some(Duration::from_secs(900)),
            &Watch::default(),
        )
        .await
        .expect("restore");
        let restore_s = t.elapsed().as_secs_f64();
        println!(
            "| {size_mb} MB | {checkpoint_s:.2} | {disk_mb:.1} | {resume_s:.2} | {restore_s:.2} |"
        );
        m.close(OWNER, &sid).await.expect("close");
    }
}
