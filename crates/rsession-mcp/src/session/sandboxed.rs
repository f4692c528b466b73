//! The `direct` backend's default: every session in its own OS sandbox on
//! this machine, with its own Rserve (see [`crate::sandbox`]).
//!
//! Each session's workspace is `<workspace root>/<session id>` on the host,
//! bound at `/workspace` inside its sandbox. Creating a session starts its
//! sandboxed Rserve; closing it stops the sandbox and deletes the workspace.
//! If the sandbox's Rserve itself has gone (killed from outside), the next
//! call starts a new one over the same workspace.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::json;

use crate::errors::{ErrorCode, ToolError};
use crate::local_rserve::{LocalRserve, LocalRserveOptions, SandboxedAt};
use crate::sandbox::{SandboxPolicy, bwrap};
use crate::session::oom::{KilledBy, OomKill};
use crate::session::{Backend, BackendSession, Endpoint, Progress, WorkspaceCleanup};

struct Placed {
    owner: String,
    created_at: jiff::Timestamp,
    /// `None` only while a restart is under way after a failed start.
    rserve: Arc<tokio::sync::Mutex<Option<LocalRserve>>>,
}

/// Sessions in per-session sandboxes of one [`SandboxPolicy`].
pub struct SandboxedBackend {
    policy: SandboxPolicy,
    r_binary: String,
    root: PathBuf,
    /// The default workspace root, removed with the backend.
    _owned_root: Option<tempfile::TempDir>,
    sessions: Mutex<HashMap<String, Placed>>,
}

impl std::fmt::Debug for SandboxedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxedBackend")
            .field("policy", &self.policy)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl SandboxedBackend {
    /// A backend whose sessions run under `policy` (a sandboxed mode) with R
    /// from `r_binary`, and workspaces under `root` (default: a new
    /// temporary directory removed when the backend is dropped).
    ///
    /// Errors: the root cannot be created or opened to the sandbox's user.
    pub fn new(
        policy: SandboxPolicy,
        r_binary: String,
        root: Option<PathBuf>,
    ) -> std::io::Result<Self> {
        let (root, owned) = match root {
            Some(r) => {
                std::fs::create_dir_all(&r)?;
                (r, None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("rsession-workspaces-")
                    .tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        if owned.is_some() {
            // Others (the sandbox's user, when root) may pass through to
            // their own workspace, but not list the others.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))?;
        }
        Ok(SandboxedBackend {
            policy,
            r_binary,
            root,
            _owned_root: owned,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn workspace(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    async fn start(&self, id: &str) -> Result<LocalRserve, ToolError> {
        let opts = LocalRserveOptions {
            r_binary: self.r_binary.clone(),
            sandbox: Some(SandboxedAt {
                policy: self.policy.clone(),
                workspace: self.workspace(id),
            }),
            ..LocalRserveOptions::default()
        };
        LocalRserve::start(&opts).await.map_err(|e| {
            ToolError::new(
                ErrorCode::BackendUnavailable,
                format!("cannot start the session's sandboxed R: {e}"),
            )
            .with_details(json!({"sandbox": self.policy.mode.as_str()}))
        })
    }

    fn placed(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Arc<tokio::sync::Mutex<Option<LocalRserve>>>, ToolError> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(id) {
            Some(p) if p.owner == owner => Ok(Arc::clone(&p.rserve)),
            _ => Err(ToolError::session_not_found(id)),
        }
    }

    fn endpoint_of(rserve: &LocalRserve) -> Endpoint {
        Endpoint {
            addr: rserve.addr().to_string(),
            credentials: Some(rserve.credentials().clone()),
            workspace: bwrap::WORKSPACE.to_string(),
        }
    }
}

#[async_trait]
impl Backend for SandboxedBackend {
    fn kind(&self) -> &'static str {
        "direct"
    }

    async fn create(
        &self,
        owner: &str,
        id: &str,
        progress: &Progress,
    ) -> Result<Endpoint, ToolError> {
        let ws = self.workspace(id);
        std::fs::create_dir(&ws)
            .and_then(|()| bwrap::hand_over(&ws, 0o700))
            .map_err(|e| {
                ToolError::internal(format!("creating the workspace {}: {e}", ws.display()))
            })?;
        progress
            .report(
                1.0,
                Some(2.0),
                format!("starting R in a {} sandbox", self.policy.mode.as_str()),
            )
            .await;
        let rserve = match self.start(id).await {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&ws);
                return Err(e);
            }
        };
        let endpoint = Self::endpoint_of(&rserve);
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id.to_string(),
                Placed {
                    owner: owner.to_string(),
                    created_at: jiff::Timestamp::now(),
                    rserve: Arc::new(tokio::sync::Mutex::new(Some(rserve))),
                },
            );
        Ok(endpoint)
    }

    async fn endpoint(&self, owner: &str, id: &str) -> Result<Endpoint, ToolError> {
        let slot = self.placed(owner, id)?;
        let mut rserve = slot.lock().await;
        if let Some(r) = rserve.as_mut()
            && r.is_running()
        {
            return Ok(Self::endpoint_of(r));
        }
        tracing::warn!(session_id = %id, "the session's sandboxed Rserve is gone; starting a new one over the same workspace");
        let fresh = self.start(id).await?;
        let endpoint = Self::endpoint_of(&fresh);
        *rserve = Some(fresh);
        Ok(endpoint)
    }

    async fn list(&self, owner: &str) -> Result<Vec<BackendSession>, ToolError> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        Ok(sessions
            .iter()
            .filter(|(_, p)| p.owner == owner)
            .map(|(id, p)| BackendSession {
                session_id: id.clone(),
                owner: p.owner.clone(),
                created_at: p.created_at.to_string(),
                ready: true,
                phase: None,
            })
            .collect())
    }

    async fn close(&self, owner: &str, id: &str) -> Result<(), ToolError> {
        let slot = self.placed(owner, id)?;
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(r) = slot.lock().await.take() {
            r.stop().await;
        }
        let ws = self.workspace(id);
        if let Err(e) = std::fs::remove_dir_all(&ws) {
            tracing::warn!(session_id = %id, workspace = %ws.display(), error = %e, "removing the workspace");
        }
        Ok(())
    }

    fn workspace_cleanup(&self) -> WorkspaceCleanup {
        WorkspaceCleanup::ByBackend
    }

    async fn memory_kill(&self, owner: &str, id: &str) -> Option<OomKill> {
        let slot = self.placed(owner, id).ok()?;
        let rserve = slot.lock().await;
        let k = rserve.as_ref()?.take_memory_kill()?;
        Some(OomKill {
            limit_bytes: Some(k.limit_bytes),
            killed_by: KilledBy::MemoryGuard {
                rss_bytes: k.rss_bytes,
            },
        })
    }

    async fn ready(&self) -> bool {
        true
    }
}
