//! The `direct` backend: sessions on Rserve endpoints that already run (given
//! with `--rserve host:port`, or the embedded local Rserve).
//!
//! Not a sandbox: R runs with the rights of the Rserve user on that host, and
//! the workspace is only a directory under `workspace_root` there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::errors::ToolError;
use crate::session::registry::Registry;
use crate::session::{
    Backend, BackendSession, Created, Credentials, Endpoint, PoolRequest, Progress, SessionStart,
    WorkspaceCleanup,
};

/// One Rserve to place sessions on.
#[derive(Debug, Clone)]
pub struct RserveTarget {
    /// `host:port`.
    pub addr: String,
    /// Login, if the server has `auth required`.
    pub credentials: Option<Credentials>,
}

/// Places sessions round-robin on fixed Rserve endpoints; each session's
/// workspace is `<workspace_root>/<session id>` on that endpoint's host.
#[derive(Debug)]
pub struct DirectBackend {
    targets: Vec<RserveTarget>,
    workspace_root: String,
    next: AtomicUsize,
    /// The target index of each session.
    sessions: Registry<usize>,
}

impl DirectBackend {
    /// A backend over `targets` (at least one) with workspaces under
    /// `workspace_root` (an absolute path as the Rserve hosts see it).
    pub fn new(
        targets: Vec<RserveTarget>,
        workspace_root: impl Into<String>,
    ) -> Result<Self, ToolError> {
        if targets.is_empty() {
            return Err(ToolError::invalid(
                "the direct backend needs at least one Rserve endpoint",
            ));
        }
        Ok(DirectBackend {
            targets,
            workspace_root: workspace_root.into().trim_end_matches('/').to_string(),
            next: AtomicUsize::new(0),
            sessions: Registry::default(),
        })
    }

    fn endpoint_for(&self, id: &str, target: usize) -> Endpoint {
        let t = &self.targets[target];
        Endpoint {
            addr: t.addr.clone(),
            credentials: t.credentials.clone(),
            workspace: format!("{}/{}", self.workspace_root, id),
        }
    }
}

#[async_trait]
impl Backend for DirectBackend {
    fn kind(&self) -> &'static str {
        "direct"
    }

    async fn create(
        &self,
        owner: &str,
        id: &str,
        _pool: &PoolRequest,
        _progress: &Progress,
    ) -> Result<Created, ToolError> {
        let started = tokio::time::Instant::now();
        let target = self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len();
        self.sessions.insert(owner, id, target);
        Ok(Created {
            endpoint: self.endpoint_for(id, target),
            // Rserve forks the session's R when the manager connects.
            start: SessionStart::without_pool(
                false,
                started.elapsed(),
                "a new R process forked by Rserve",
            ),
        })
    }

    async fn endpoint(&self, owner: &str, id: &str) -> Result<Endpoint, ToolError> {
        Ok(self.endpoint_for(id, self.sessions.get(owner, id)?))
    }

    async fn list(&self, owner: &str) -> Result<Vec<BackendSession>, ToolError> {
        Ok(self.sessions.list(owner))
    }

    async fn close(&self, owner: &str, id: &str) -> Result<(), ToolError> {
        self.sessions.remove(owner, id).map(|_| ())
    }

    fn workspace_cleanup(&self) -> WorkspaceCleanup {
        WorkspaceCleanup::ViaR
    }

    async fn ready(&self) -> bool {
        for t in &self.targets {
            let probe = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(&t.addr),
            );
            if matches!(probe.await, Ok(Ok(_))) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorCode;

    fn backend() -> DirectBackend {
        DirectBackend::new(
            vec![
                RserveTarget {
                    addr: "127.0.0.1:1".into(),
                    credentials: None,
                },
                RserveTarget {
                    addr: "127.0.0.1:2".into(),
                    credentials: None,
                },
            ],
            "/ws/",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn places_round_robin_with_workspace_per_session() {
        let b = backend();
        let create = |id: &'static str| {
            let b = &b;
            async move {
                b.create("alice", id, &PoolRequest::Default, &Progress::none())
                    .await
                    .unwrap()
                    .endpoint
            }
        };
        let e1 = create("s1").await;
        let e2 = create("s2").await;
        assert_eq!(e1.addr, "127.0.0.1:1");
        assert_eq!(e2.addr, "127.0.0.1:2");
        assert_eq!(e1.workspace, "/ws/s1");
        assert_eq!(b.endpoint("alice", "s2").await.unwrap(), e2);
    }

    #[tokio::test]
    async fn owners_do_not_see_each_other() {
        let b = backend();
        b.create("alice", "s1", &PoolRequest::Default, &Progress::none())
            .await
            .unwrap();
        assert_eq!(
            b.endpoint("bob", "s1").await.unwrap_err().code,
            ErrorCode::SessionNotFound
        );
        assert_eq!(
            b.close("bob", "s1").await.unwrap_err().code,
            ErrorCode::SessionNotFound
        );
        assert!(b.list("bob").await.unwrap().is_empty());
        assert_eq!(b.list("alice").await.unwrap().len(), 1);
        b.close("alice", "s1").await.unwrap();
        assert!(b.list("alice").await.unwrap().is_empty());
    }

    #[test]
    fn needs_an_endpoint() {
        assert!(DirectBackend::new(vec![], "/ws").is_err());
    }
}
