//! A new session whose R stops answering right after it was Ready (a pod's container restarted
//! by its kubelet, the pod replaced): where the backend says endpoints move, `create_session`
//! asks the backend for the endpoint again and connects there instead of failing.
//!
//! A wrapper over the direct backend hands out a refusing endpoint (a closed loopback port) from
//! `create`, as a restarting pod would, and the real Rserve from `endpoint`, as the session does
//! once it is Ready again. Against a real Rserve.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use common::{OWNER, direct_backend};
use rsession_mcp::errors::{ErrorCode, ToolError};
use rsession_mcp::local_rserve::{LocalRserve, LocalRserveOptions};
use rsession_mcp::metrics::Metrics;
use rsession_mcp::session::direct::DirectBackend;
use rsession_mcp::session::{
    Backend, BackendSession, Created, Endpoint, ManagerConfig, PoolRequest, Progress,
    SessionManager, WorkspaceCleanup,
};

struct Restarting {
    inner: DirectBackend,
    moves: bool,
    lookups: AtomicUsize,
}

#[async_trait]
impl Backend for Restarting {
    fn kind(&self) -> &'static str {
        "restarting"
    }

    async fn create(
        &self,
        owner: &str,
        id: &str,
        pool: &PoolRequest,
        progress: &Progress,
    ) -> Result<Created, ToolError> {
        let mut created = self.inner.create(owner, id, pool, progress).await?;
        // A loopback port nothing listens on (free a moment ago): connects are refused.
        let port = rserve::testing::free_port().expect("free port");
        created.endpoint.addr = format!("127.0.0.1:{port}");
        Ok(created)
    }

    async fn endpoint(&self, owner: &str, id: &str) -> Result<Endpoint, ToolError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.endpoint(owner, id).await
    }

    fn endpoint_moves(&self) -> bool {
        self.moves
    }

    async fn list(&self, owner: &str) -> Result<Vec<BackendSession>, ToolError> {
        self.inner.list(owner).await
    }

    async fn close(&self, owner: &str, id: &str) -> Result<(), ToolError> {
        self.inner.close(owner, id).await
    }

    fn workspace_cleanup(&self) -> WorkspaceCleanup {
        WorkspaceCleanup::ByBackend
    }

    async fn ready(&self) -> bool {
        true
    }
}

async fn manager(rserve: &LocalRserve, moves: bool) -> (SessionManager, Arc<Restarting>) {
    let backend = Arc::new(Restarting {
        inner: direct_backend(rserve),
        moves,
        lookups: AtomicUsize::new(0),
    });
    let m = SessionManager::new(
        backend.clone(),
        ManagerConfig::default(),
        Arc::new(Metrics::new()),
    );
    (m, backend)
}

async fn rserve() -> LocalRserve {
    LocalRserve::start(&LocalRserveOptions::default())
        .await
        .expect("local Rserve starts (needs r-base-core and r-cran-rserve)")
}

#[tokio::test]
async fn a_new_session_refusing_after_ready_is_connected_where_it_is_ready_again() {
    let rserve = rserve().await;
    let (m, backend) = manager(&rserve, true).await;
    let sid = m
        .create(OWNER, &Progress::none())
        .await
        .expect("create_session connects at the endpoint the backend names again")
        .session_id;
    assert!(backend.lookups.load(Ordering::SeqCst) >= 1);
    let r = m
        .execute(OWNER, &sid, "cat(6 * 7)", None, None)
        .await
        .unwrap();
    assert_eq!(
        r.outcome.events,
        vec![rsession_mcp::harness::Event::Stdout("42".into())]
    );
}

#[tokio::test]
async fn where_endpoints_do_not_move_a_refusing_new_session_is_backend_unavailable() {
    let rserve = rserve().await;
    let (m, backend) = manager(&rserve, false).await;
    let e = m.create(OWNER, &Progress::none()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
    assert_eq!(backend.lookups.load(Ordering::SeqCst), 0);
}
