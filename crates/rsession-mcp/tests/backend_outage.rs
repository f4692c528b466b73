//! Sessions while the backend cannot answer (the Kubernetes API is down), and
//! after a server restart, against a real Rserve.
//!
//! A wrapper backend over the direct backend fails every lookup with
//! `backend_unavailable` while `down` is set, as the Kubernetes backend does
//! when the apiserver is unreachable, and counts activity stamps.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::harness_calls::HarnessCalls;
use common::{OWNER, direct_backend};
use rsession_mcp::errors::{ErrorCode, ToolError};
use rsession_mcp::harness::Event;
use rsession_mcp::local_rserve::{LocalRserve, LocalRserveOptions};
use rsession_mcp::metrics::Metrics;
use rsession_mcp::session::direct::DirectBackend;
use rsession_mcp::session::{
    Backend, BackendSession, Created, Endpoint, ManagerConfig, PoolRequest, Progress,
    SessionManager, WorkspaceCleanup,
};

struct Flaky {
    inner: DirectBackend,
    down: AtomicBool,
    stamps: AtomicUsize,
}

impl Flaky {
    fn check(&self) -> Result<(), ToolError> {
        if self.down.load(Ordering::SeqCst) {
            Err(ToolError::new(
                ErrorCode::BackendUnavailable,
                "the Kubernetes API is unavailable (simulated)",
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Backend for Flaky {
    fn kind(&self) -> &'static str {
        "flaky"
    }

    async fn create(
        &self,
        owner: &str,
        id: &str,
        pool: &PoolRequest,
        progress: &Progress,
    ) -> Result<Created, ToolError> {
        self.check()?;
        self.inner.create(owner, id, pool, progress).await
    }

    fn record_activity(&self, owner: &str, id: &str) {
        // A stamp sent while the API is down fails in the background; the
        // Kubernetes backend logs and retries it. Here it is only counted.
        let _ = (owner, id);
        self.stamps.fetch_add(1, Ordering::SeqCst);
    }

    async fn endpoint(&self, owner: &str, id: &str) -> Result<Endpoint, ToolError> {
        self.check()?;
        self.inner.endpoint(owner, id).await
    }

    async fn list(&self, owner: &str) -> Result<Vec<BackendSession>, ToolError> {
        self.check()?;
        self.inner.list(owner).await
    }

    async fn close(&self, owner: &str, id: &str) -> Result<(), ToolError> {
        self.check()?;
        self.inner.close(owner, id).await
    }

    fn workspace_cleanup(&self) -> WorkspaceCleanup {
        WorkspaceCleanup::ByBackend
    }

    fn outlives_server(&self) -> bool {
        true
    }

    async fn ready(&self) -> bool {
        !self.down.load(Ordering::SeqCst)
    }
}

struct Setup {
    backend: Arc<Flaky>,
    /// Kept for its lifetime: dropping it stops Rserve.
    _rserve: LocalRserve,
}

async fn setup() -> Setup {
    let rserve = LocalRserve::start(&LocalRserveOptions::default())
        .await
        .expect("local Rserve starts (needs r-base-core and r-cran-rserve)");
    let backend = Arc::new(Flaky {
        inner: direct_backend(&rserve),
        down: AtomicBool::new(false),
        stamps: AtomicUsize::new(0),
    });
    Setup {
        backend,
        _rserve: rserve,
    }
}

/// A server process's session manager over the shared backend.
fn server(s: &Setup) -> SessionManager {
    let mut config = ManagerConfig::default();
    config.limits.grace = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(10);
    SessionManager::new(s.backend.clone(), config, Arc::new(Metrics::new()))
}

fn value(text: &str) -> Event {
    Event::Value(text.into())
}

#[tokio::test]
async fn evaluations_on_a_connected_session_do_not_need_the_backend() {
    let s = setup().await;
    let m = server(&s);
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    m.execute(OWNER, &sid, "x <- 41", None, None).await.unwrap();

    s.backend.down.store(true, Ordering::SeqCst);
    let stamps = s.backend.stamps.load(Ordering::SeqCst);
    let r = m
        .execute(OWNER, &sid, "x + 1", None, None)
        .await
        .expect("an evaluation on a connected session needs no backend lookup");
    assert_eq!(r.outcome.events, vec![value("[1] 42\n")]);
    assert!(
        s.backend.stamps.load(Ordering::SeqCst) > stamps,
        "the activity stamp was still asked for"
    );
    m.write_file(OWNER, &sid, "notes.txt", b"outage", true)
        .await
        .expect("file tools need no backend lookup either");

    // New sessions do need the backend: a retryable refusal.
    let e = m.create(OWNER, &Progress::none()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable);
    assert_eq!(e.body()["retryable"], true);
}

#[tokio::test]
async fn a_lost_r_reconnects_to_its_last_endpoint_while_the_backend_is_down() {
    let s = setup().await;
    let m = server(&s);
    let sid = m.create(OWNER, &Progress::none()).await.unwrap().session_id;
    m.execute(OWNER, &sid, "writeLines('kept', 'file.txt')", None, None)
        .await
        .unwrap();

    s.backend.down.store(true, Ordering::SeqCst);
    let e = m
        .execute(OWNER, &sid, "tools::pskill(Sys.getpid(), 9)", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SessionLost, "{e:?}");
    let r = m
        .execute(OWNER, &sid, "readLines('file.txt')", None, None)
        .await
        .expect("the last known endpoint serves the fresh R");
    assert!(r.state_reset_notice.is_some());
    assert_eq!(r.outcome.events, vec![value("[1] \"kept\"\n")]);
}

#[tokio::test]
async fn a_restarted_server_adopts_sessions_and_says_r_state_was_reset() {
    let s = setup().await;
    let before = server(&s);
    let sid = before
        .create(OWNER, &Progress::none())
        .await
        .unwrap()
        .session_id;
    before
        .execute(
            OWNER,
            &sid,
            "x <- 1; writeLines('kept', 'file.txt')",
            None,
            None,
        )
        .await
        .unwrap();
    // The old process goes away: its connections close and their R ends.
    before.close_all().await;
    drop(before);

    let after = server(&s);
    // Adopting needs the backend to vouch for the session and say where it is.
    s.backend.down.store(true, Ordering::SeqCst);
    let e = after
        .execute(OWNER, &sid, "exists('x')", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
    assert!(e.code.retryable());
    s.backend.down.store(false, Ordering::SeqCst);

    let r = after
        .execute(
            OWNER,
            &sid,
            "exists('x'); readLines('file.txt')",
            None,
            None,
        )
        .await
        .unwrap();
    let notice = r.state_reset_notice.clone().expect("reset notice");
    assert!(
        notice.starts_with("R state was reset")
            && notice.contains("restart of the server")
            && notice.contains("files in the workspace survived"),
        "{notice}"
    );
    assert_eq!(
        r.outcome.events,
        vec![value("[1] FALSE\n"), value("[1] \"kept\"\n")]
    );
    let r = after.execute(OWNER, &sid, "1", None, None).await.unwrap();
    assert!(r.state_reset_notice.is_none(), "the notice is given once");
}
