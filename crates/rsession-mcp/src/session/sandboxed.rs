//! The `direct` backend's default: every session in its own OS sandbox on
//! this machine, with its own Rserve (see [`crate::sandbox`]).
//!
//! Each session's workspace is `<workspace root>/<session id>` on the host,
//! bound at `/workspace` inside its sandbox. Its Rserve parent sources the R
//! harness before it listens, so a session's first connection only runs
//! `init`. Starting a sandboxed Rserve
//! takes about a quarter of a second (mostly R's own start), so one spare is
//! kept ready over an empty workspace `<root>/.spare-<random>`: creating a
//! session renames that folder to the session's (the sandbox's bind mount
//! follows the folder) and starts the next spare in the background. Closing a
//! session stops its sandbox and deletes the workspace.
//!
//! With a kept workspace root (`--workspace-root`, unless `--no-checkpoint`),
//! sessions outlive the server: at shutdown the session manager checkpoints
//! each one and the workspaces stay; the owner of each is recorded outside
//! any sandbox, in `<root>/.sessions/<id>.owner`; a restarted server lists
//! them again, starts their sandbox on first use and restores the checkpoint
//! (`create_session` with `resume`). At most `max_kept` are kept, newest
//! first; older ones are deleted at start.
//! If the sandbox's Rserve itself has gone (killed from outside), the next
//! call starts a new one over the same workspace.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use crate::errors::{ErrorCode, ToolError};
use crate::local_rserve::{LocalRserve, LocalRserveOptions, SandboxedAt};
use crate::sandbox::{SandboxMode, SandboxPolicy, bwrap};
use crate::session::oom::{KilledBy, OomKill};
use crate::session::registry::Registry;
use crate::session::{
    Backend, BackendSession, Created, Endpoint, PoolRequest, Progress, SessionStart,
    WorkspaceCleanup,
};

/// A session's Rserve; `None` after close.
type Slot = Arc<tokio::sync::Mutex<Option<LocalRserve>>>;

/// A started sandbox waiting for its session, over workspace `dir`.
struct Spare {
    dir: PathBuf,
    rserve: LocalRserve,
}

/// Starts sandboxed Rserves; cloned into the task that prepares the spare.
#[derive(Debug, Clone)]
struct Launcher {
    policy: SandboxPolicy,
    r_binary: String,
}

impl Launcher {
    /// A sandboxed Rserve over host workspace `workspace` (created here,
    /// handed to the sandbox's user). Errors: `backend_unavailable`.
    async fn start(&self, workspace: &std::path::Path) -> Result<LocalRserve, ToolError> {
        let unavailable = |why: String| {
            ToolError::new(
                ErrorCode::BackendUnavailable,
                format!("cannot start the session's sandboxed R: {why}"),
            )
            .with_details(json!({"sandbox": self.policy.mode.as_str()}))
        };
        if !workspace.is_dir() {
            std::fs::create_dir(workspace)
                .and_then(|()| bwrap::hand_over(workspace, 0o700))
                .map_err(|e| {
                    unavailable(format!(
                        "creating the workspace {}: {e}",
                        workspace.display()
                    ))
                })?;
        }
        let opts = LocalRserveOptions {
            r_binary: self.r_binary.clone(),
            sandbox: Some(SandboxedAt {
                policy: self.policy.clone(),
                workspace: workspace.to_path_buf(),
            }),
            // Sourced, not compiled: the 0.6 s of compiling would be on the path to the first
            // session's result (rsession_harness::Preload).
            harness: Some(rsession_harness::Preload::Source),
            ..LocalRserveOptions::default()
        };
        LocalRserve::start(&opts)
            .await
            .map_err(|e| unavailable(e.to_string()))
    }
}

/// Sessions in per-session sandboxes of one [`SandboxPolicy`].
pub struct SandboxedBackend {
    launcher: Launcher,
    root: PathBuf,
    /// The next session's sandbox, once started; locked while one starts,
    /// so a create waits for it rather than starting a second.
    spare: Arc<tokio::sync::Mutex<Option<Spare>>>,
    /// The default workspace root, removed with the backend.
    _owned_root: Option<tempfile::TempDir>,
    /// Keep sessions across restarts, at most this many (see the module docs).
    keep: Option<usize>,
    sessions: Registry<Slot>,
}

impl Drop for SandboxedBackend {
    fn drop(&mut self) {
        // The spare's sandbox ends with its LocalRserve; its empty
        // workspace would stay behind under a given --workspace-root.
        if let Ok(mut spare) = self.spare.try_lock()
            && let Some(s) = spare.take()
        {
            let _ = std::fs::remove_dir_all(&s.dir);
        }
    }
}

impl std::fmt::Debug for SandboxedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxedBackend")
            .field("policy", &self.launcher.policy)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl SandboxedBackend {
    /// A backend whose sessions run under `policy` (a sandboxed mode) with R
    /// from `r_binary`, and workspaces under `root` (default: a new
    /// temporary directory removed when the backend is dropped).
    ///
    /// With `keep = Some(n)` (and a given `root`), sessions outlive the
    /// server: the at most `n` newest kept under `root` are listed again.
    ///
    /// Errors: the root cannot be created or opened to the sandbox's user.
    pub fn new(
        policy: SandboxPolicy,
        r_binary: String,
        root: Option<PathBuf>,
        keep: Option<usize>,
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
        // A read-only workspace cannot hold a checkpoint, so nothing is kept.
        let keep = keep.filter(|_| owned.is_none() && policy.mode != SandboxMode::ReadOnly);
        let backend = SandboxedBackend {
            launcher: Launcher { policy, r_binary },
            root,
            spare: Arc::new(tokio::sync::Mutex::new(None)),
            _owned_root: owned,
            keep,
            sessions: Registry::default(),
        };
        backend.clear_spares();
        if let Some(max) = keep {
            backend.adopt_kept(max)?;
        }
        backend.prepare_spare();
        Ok(backend)
    }

    fn owner_file(&self, id: &str) -> PathBuf {
        self.root.join(".sessions").join(format!("{id}.owner"))
    }

    /// Spares left by a server that did not stop cleanly.
    fn clear_spares(&self) {
        for e in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(".spare-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// List again the sessions an earlier server kept: the `max` newest
    /// (by workspace modification time); older ones are deleted.
    fn adopt_kept(&self, max: usize) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(".sessions"))?;
        let mut kept: Vec<(std::time::SystemTime, String, String)> = Vec::new();
        for e in std::fs::read_dir(self.root.join(".sessions"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".owner") else {
                continue;
            };
            let ws = self.workspace(id);
            match (
                std::fs::read_to_string(e.path()),
                std::fs::metadata(&ws).and_then(|m| m.modified()),
            ) {
                (Ok(owner), Ok(modified)) => {
                    kept.push((modified, id.to_string(), owner.trim().to_string()))
                }
                _ => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        kept.sort_by_key(|k| std::cmp::Reverse(k.0));
        for (i, (_, id, owner)) in kept.into_iter().enumerate() {
            if i < max {
                self.sessions
                    .insert(&owner, &id, Arc::new(tokio::sync::Mutex::new(None)));
                tracing::info!(session_id = %id, owner, "kept session listed again (resume it with create_session)");
            } else {
                tracing::info!(session_id = %id, max, "deleting a kept session over --max-kept-sessions");
                let _ = std::fs::remove_dir_all(self.workspace(&id));
                let _ = std::fs::remove_file(self.owner_file(&id));
            }
        }
        Ok(())
    }

    /// Start the next spare in the background (when in a Tokio runtime and
    /// none is there). A failure is only logged: the next create then starts
    /// its sandbox itself and reports the error.
    fn prepare_spare(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (spare, launcher) = (Arc::clone(&self.spare), self.launcher.clone());
        let dir = self
            .root
            .join(format!(".spare-{:016x}", rand::random::<u64>()));
        tokio::spawn(async move {
            let mut slot = spare.lock().await;
            if slot.is_some() {
                return;
            }
            match launcher.start(&dir).await {
                Ok(rserve) => *slot = Some(Spare { dir, rserve }),
                Err(e) => {
                    tracing::warn!(error = %e.message, "preparing a spare sandbox");
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        });
    }

    /// The spare, renamed to session `id`'s workspace, if one is ready.
    async fn take_spare(&self, id: &str) -> Option<LocalRserve> {
        let Spare { dir, mut rserve } = self.spare.lock().await.take()?;
        if rserve.is_running() && std::fs::rename(&dir, self.workspace(id)).is_ok() {
            return Some(rserve);
        }
        rserve.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
        None
    }

    fn workspace(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    async fn start(&self, id: &str) -> Result<LocalRserve, ToolError> {
        self.launcher.start(&self.workspace(id)).await
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
        _pool: &PoolRequest,
        progress: &Progress,
    ) -> Result<Created, ToolError> {
        let started = tokio::time::Instant::now();
        let spare = self.take_spare(id).await;
        let warm = spare.is_some();
        let rserve = match spare {
            Some(r) => r,
            None => {
                progress
                    .report(
                        1.0,
                        Some(2.0),
                        format!(
                            "starting R in a {} sandbox",
                            self.launcher.policy.mode.as_str()
                        ),
                    )
                    .await;
                match self.start(id).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(self.workspace(id));
                        return Err(e);
                    }
                }
            }
        };
        self.prepare_spare();
        if self.keep.is_some()
            && let Err(e) = std::fs::create_dir_all(self.root.join(".sessions"))
                .and_then(|()| std::fs::write(self.owner_file(id), owner))
        {
            tracing::warn!(session_id = %id, error = %e, "recording the owner of a kept session");
        }
        let endpoint = Self::endpoint_of(&rserve);
        self.sessions
            .insert(owner, id, Arc::new(tokio::sync::Mutex::new(Some(rserve))));
        let note = if warm {
            "the spare sandbox started in advance"
        } else {
            "a new sandbox and R"
        };
        let start = SessionStart::without_pool(warm, started.elapsed(), note);
        Ok(Created { endpoint, start })
    }

    async fn endpoint(&self, owner: &str, id: &str) -> Result<Endpoint, ToolError> {
        let slot = self.sessions.get(owner, id)?;
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
        Ok(self.sessions.list(owner))
    }

    async fn close(&self, owner: &str, id: &str) -> Result<(), ToolError> {
        let slot = self.sessions.remove(owner, id)?;
        if let Some(r) = slot.lock().await.take() {
            r.stop().await;
        }
        let _ = std::fs::remove_file(self.owner_file(id));
        let ws = self.workspace(id);
        if let Err(e) = std::fs::remove_dir_all(&ws) {
            tracing::warn!(session_id = %id, workspace = %ws.display(), error = %e, "removing the workspace");
        }
        Ok(())
    }

    fn workspace_cleanup(&self) -> WorkspaceCleanup {
        WorkspaceCleanup::ByBackend
    }

    fn outlives_server(&self) -> bool {
        self.keep.is_some()
    }

    fn checkpoints(&self) -> bool {
        self.keep.is_some()
    }

    async fn memory_kill(&self, owner: &str, id: &str) -> Option<OomKill> {
        let slot = self.sessions.get(owner, id).ok()?;
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
