//! The session manager: the registry of sessions (ids, owners, adoption),
//! one connection per session and serialised calls. By job: `calls.rs`
//! (running harness calls), `connect.rs` (connecting and recovery after R is
//! lost), `checkpoints.rs` (checkpoints the platform asks for before expiry,
//! and periodic ones), `limits.rs` (settings and clamping), `messages.rs` (what callers
//! read when a call fails).
//!
//! Concurrency: calls on one session are serialised by a per-session lock.
//! A second concurrent call gets `session_busy` (retryable) within
//! [`BUSY_WAIT`] instead of queueing behind a long evaluation, unless the
//! call ahead of it is being cancelled. Calls on different sessions run in
//! parallel.

mod calls;
mod checkpoints;
mod connect;
mod limits;
mod messages;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use crate::errors::ToolError;
use crate::metrics::Metrics;
use crate::session::conn::RConn;
use crate::session::{
    Backend, Endpoint, PoolRequest, Progress, SessionStart, Watch, WorkspaceCleanup,
};

pub use limits::{FileLimits, Limits, ManagerConfig};

/// A session as tools report it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SessionInfo {
    /// Session id to pass to the other tools.
    pub session_id: String,
    /// Backend kind, e.g. `direct`.
    pub backend: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last call, if any.
    pub last_activity: Option<String>,
    /// Whether a call is running now.
    pub busy: bool,
    /// Whether an R process is connected (false after it was lost, until the next call).
    pub connected: bool,
    /// Evaluations run so far.
    pub executions: u64,
    /// Workspace path as R sees it (the working directory).
    pub workspace: Option<String>,
    /// `R.version.string`.
    pub r_version: Option<String>,
    /// Backend lifecycle phase where there is one (Kubernetes: the RSession's
    /// `status.phase`); filled by `list_sessions`.
    pub phase: Option<String>,
    /// The `cdm` handle R holds when the session's database is an OMOP CDM:
    /// `handle` (`CDMConnector` or `dbplyr`), schemas, `tables`,
    /// `cdm_version`, `persons`, or `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdm: Option<serde_json::Value>,
    /// How the session started (warm or cold, pool, time to Ready); filled
    /// by `create_session` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<SessionStart>,
}

#[derive(Default)]
struct Slot {
    conn: Option<RConn>,
    /// Where the last R of this session was reached; used to reconnect when the
    /// backend cannot say now (Kubernetes API unavailable).
    endpoint: Option<Endpoint>,
    /// Why the last R went away, until a fresh one is connected and reported.
    lost: Option<String>,
    /// A fresh R was connected after a loss; the next result says so.
    pending_notice: Option<String>,
    workspace: Option<String>,
    r_version: Option<String>,
    /// When this R's state was last checkpointed (periodic checkpoints count
    /// from it; `None`: not since it was connected).
    checkpointed_at: Option<jiff::Timestamp>,
    /// The `cdm` handle of this R ([`RConn::cdm`]).
    cdm: Option<serde_json::Value>,
}

struct Session {
    id: String,
    owner: String,
    created_at: jiff::Timestamp,
    slot: Arc<Mutex<Slot>>,
    last_activity: std::sync::Mutex<Option<jiff::Timestamp>>,
    executions: AtomicU64,
    /// The cancellation of the call holding `slot`, if any: a call arriving
    /// while a cancelled one is still stopping R waits for it instead of
    /// answering `session_busy`.
    holder: std::sync::Mutex<Option<CancellationToken>>,
    /// Set while the server checkpoints the session on its own
    /// (`checkpoints.rs`): a call arriving meanwhile waits for it instead of
    /// answering `session_busy`.
    checkpointing: std::sync::atomic::AtomicBool,
}

impl Session {
    /// A session created now with `slot`, no calls yet.
    fn new(id: &str, owner: &str, slot: Slot) -> Session {
        Session {
            id: id.to_string(),
            owner: owner.to_string(),
            created_at: jiff::Timestamp::now(),
            slot: Arc::new(Mutex::new(slot)),
            last_activity: std::sync::Mutex::new(None),
            executions: AtomicU64::new(0),
            holder: std::sync::Mutex::new(None),
            checkpointing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(jiff::Timestamp::now());
    }
}

/// Owns every session of this server process.
pub struct SessionManager {
    backend: Arc<dyn Backend>,
    config: ManagerConfig,
    metrics: Arc<Metrics>,
    sessions: std::sync::Mutex<HashMap<String, Arc<Session>>>,
}

fn new_session_id() -> String {
    let bytes: [u8; 6] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("rs-{hex}")
}

impl SessionManager {
    /// A manager over `backend`.
    pub fn new(backend: Arc<dyn Backend>, config: ManagerConfig, metrics: Arc<Metrics>) -> Self {
        SessionManager {
            backend,
            config,
            metrics,
            sessions: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session `id` of `owner`. A session this process does not hold (it
    /// was created before a restart of this server, or by another replica or
    /// `kubectl`) is adopted when the backend knows it for `owner`: its R is
    /// connected on first use, and that first result says R state was reset.
    async fn find(&self, owner: &str, id: &str) -> Result<Arc<Session>, ToolError> {
        let held = self.map().get(id).cloned();
        match held {
            Some(s) if s.owner == owner => return Ok(s),
            Some(_) => return Err(ToolError::session_not_found(id)),
            None => {}
        }
        // Errors: session_not_found (unknown, or another owner's), session_not_ready.
        self.backend.endpoint(owner, id).await?;
        let adopted = Arc::new(Session::new(
            id,
            owner,
            Slot {
                conn: None,
                endpoint: None,
                lost: Some(messages::ADOPTED_REASON.into()),
                ..Slot::default()
            },
        ));
        let session = self.map().entry(id.to_string()).or_insert(adopted).clone();
        if session.owner != owner {
            return Err(ToolError::session_not_found(id));
        }
        self.metrics.set_sessions(self.map().len());
        tracing::info!(session_id = %id, owner, "session adopted from the backend");
        Ok(session)
    }

    /// Take the session for one call made under `watch`. A busy session
    /// answers `session_busy` after at most [`BUSY_WAIT`], unless the call
    /// holding it is cancelled meanwhile: then R is being interrupted and
    /// the session is free within the grace period, so this waits for it
    /// (at most twice the grace). A session the server is checkpointing is
    /// waited for too.
    async fn lock(
        &self,
        session: &Arc<Session>,
        watch: &Watch,
    ) -> Result<OwnedMutexGuard<Slot>, ToolError> {
        let slot = match session.slot.clone().try_lock_owned() {
            Ok(slot) => slot,
            Err(_) if session.checkpointing.load(Ordering::Acquire) => {
                tokio::time::timeout(checkpoints::LONGEST, session.slot.clone().lock_owned())
                    .await
                    .map_err(|_| messages::session_busy(&session.id))?
            }
            Err(_) => {
                let holder = session
                    .holder
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_default();
                let free = session.slot.clone().lock_owned();
                tokio::pin!(free);
                // A client that abandons a call by closing its HTTP request
                // (how streamable HTTP cancels at 2026-07-28) may send its
                // next call before the server has seen the close: the
                // holder's cancellation can trail this call by milliseconds.
                tokio::select! {
                    slot = &mut free => slot,
                    () = holder.cancelled() => {
                        tokio::time::timeout(self.config.limits.grace * 2, free)
                            .await
                            .map_err(|_| messages::session_busy(&session.id))?
                    }
                    () = tokio::time::sleep(BUSY_WAIT) => {
                        return Err(messages::session_busy(&session.id));
                    }
                }
            }
        };
        *session.holder.lock().unwrap_or_else(|p| p.into_inner()) = Some(watch.cancel.clone());
        Ok(slot)
    }

    /// Create a session with the server's default pool, if any: see
    /// [`Self::create_with_pool`].
    pub async fn create(&self, owner: &str, progress: &Progress) -> Result<SessionInfo, ToolError> {
        self.create_with_pool(owner, &PoolRequest::Default, progress)
            .await
    }

    /// Create a session: place it on the backend (which reports its steps
    /// to `progress`), from `pool` where the backend has pools, connect,
    /// install the harness, create and enter its workspace; the connect is
    /// reported as the last step. The info says how it started
    /// ([`SessionInfo::start`]).
    ///
    /// Errors: `invalid_argument` (a named pool on a backend without pools,
    /// or one the session cannot use), `pool_not_found`,
    /// `backend_unavailable`, `forbidden` (session limit reached).
    pub async fn create_with_pool(
        &self,
        owner: &str,
        pool: &PoolRequest,
        progress: &Progress,
    ) -> Result<SessionInfo, ToolError> {
        if let PoolRequest::Named(name) = pool
            && !self.backend.pools()
        {
            return Err(messages::no_pools(name, self.backend.kind()));
        }
        if self.map().len() >= self.config.max_sessions {
            return Err(messages::too_many_sessions(self.config.max_sessions));
        }
        let id = new_session_id();
        let created = self.backend.create(owner, &id, pool, progress).await?;
        let start = created.start;
        let (endpoint, conn) = match self.connect_new(owner, &id, created.endpoint).await {
            Ok(c) => {
                progress
                    .finish(format!("Connected: R is ready in session {id}"))
                    .await;
                c
            }
            Err(e) => {
                let _ = self.backend.close(owner, &id).await;
                return Err(e);
            }
        };
        let session = Arc::new(Session::new(
            &id,
            owner,
            Slot {
                workspace: Some(conn.workspace.clone()),
                r_version: Some(conn.r_version.clone()),
                cdm: conn.cdm.clone(),
                conn: Some(conn),
                endpoint: Some(endpoint),
                ..Slot::default()
            },
        ));
        self.map().insert(id.clone(), session.clone());
        self.metrics.set_sessions(self.map().len());
        tracing::info!(session_id = %id, owner, warm = start.warm, pool = start.pool.as_deref(), ready_ms = start.ready_ms, "session created");
        Ok(SessionInfo {
            start: Some(start),
            ..self.info(&session).await
        })
    }

    async fn info(&self, s: &Session) -> SessionInfo {
        let (busy, connected, workspace, r_version, cdm) = match s.slot.try_lock() {
            Ok(slot) => (
                false,
                slot.conn.is_some(),
                slot.workspace.clone(),
                slot.r_version.clone(),
                slot.cdm.clone(),
            ),
            Err(_) => (true, true, None, None, None),
        };
        SessionInfo {
            session_id: s.id.clone(),
            backend: self.backend.kind().to_string(),
            created_at: s.created_at.to_string(),
            last_activity: s
                .last_activity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map(|t| t.to_string()),
            busy,
            connected,
            executions: s.executions.load(Ordering::Relaxed),
            workspace,
            r_version,
            phase: None,
            cdm,
            start: None,
        }
    }

    /// Sessions of `owner`, oldest first.
    pub async fn list(&self, owner: &str) -> Result<Vec<SessionInfo>, ToolError> {
        let mut known = self.backend.list(owner).await?;
        known.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then(a.session_id.cmp(&b.session_id))
        });
        let mut out = Vec::with_capacity(known.len());
        for k in known {
            let local = self.map().get(&k.session_id).cloned();
            match local {
                Some(s) if s.owner == owner => {
                    let mut info = self.info(&s).await;
                    info.phase = k.phase;
                    out.push(info);
                }
                _ => out.push(SessionInfo {
                    session_id: k.session_id,
                    backend: self.backend.kind().to_string(),
                    created_at: k.created_at,
                    last_activity: None,
                    busy: false,
                    connected: false,
                    executions: 0,
                    workspace: None,
                    r_version: None,
                    phase: k.phase,
                    cdm: None,
                    start: None,
                }),
            }
        }
        Ok(out)
    }

    /// Close a session: end its R, remove it from the backend (and its
    /// workspace, see [`WorkspaceCleanup`]).
    ///
    /// Errors: `session_not_found`, `session_busy`.
    pub async fn close(&self, owner: &str, id: &str) -> Result<(), ToolError> {
        let held = self.map().get(id).cloned();
        let session = match held {
            Some(s) if s.owner == owner => s,
            Some(_) => return Err(ToolError::session_not_found(id)),
            None => {
                // Not held here (not ready, or created before a restart):
                // the backend checks the owner and removes it.
                self.backend.close(owner, id).await?;
                tracing::info!(session_id = %id, "session closed");
                return Ok(());
            }
        };
        let mut slot = self.lock(&session, &Watch::default()).await?;
        self.map().remove(id);
        self.metrics.set_sessions(self.map().len());
        if let Some(conn) = slot.conn.take() {
            match self.backend.workspace_cleanup() {
                WorkspaceCleanup::ViaR => conn.destroy_workspace().await,
                WorkspaceCleanup::ByBackend => conn.close().await,
            }
        }
        self.backend.close(owner, id).await?;
        tracing::info!(session_id = %id, "session closed");
        Ok(())
    }

    /// Save `id`'s R state so a restarted server can restore it (a
    /// [`Backend::checkpoints`] backend), within [`SHUTDOWN_CHECKPOINT`].
    /// A failure is logged; shutdown goes on.
    async fn checkpoint_before_shutdown(&self, id: &str, conn: &mut RConn) {
        let call = crate::harness::HarnessCall::Checkpoint {
            max_bytes: 1 << 30,
            max_object_bytes: 256 << 20,
            budget_secs: SHUTDOWN_CHECKPOINT.as_secs_f64() / 2.0,
        };
        let Ok(expr) = call.render() else { return };
        let deadline = tokio::time::Instant::now() + SHUTDOWN_CHECKPOINT;
        match conn
            .call(&expr, deadline, self.config.limits.grace, &Watch::default())
            .await
        {
            Ok(_) => tracing::info!(session_id = %id, "checkpointed at shutdown"),
            Err(e) => {
                tracing::warn!(session_id = %id, error = %e.message, "checkpoint at shutdown failed; the previous checkpoint, if any, is kept")
            }
        }
    }

    /// Resume `owner`'s session `id` that outlived a previous server (see
    /// [`Backend::checkpoints`]): connect a fresh R, restore its checkpoint
    /// and return its info with the notice saying what came back.
    ///
    /// Errors: `session_not_found`, `session_busy`, connection errors.
    pub async fn resume(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<(SessionInfo, Option<String>), ToolError> {
        let session = self.find(owner, id).await?;
        let notice = {
            let mut slot = self.lock(&session, &Watch::default()).await?;
            self.ensure_conn(&session, &mut slot).await?;
            slot.pending_notice.take()
        };
        Ok((self.info(&session).await, notice))
    }

    /// Replace the session's R with a fresh one (workspace files kept).
    /// Returns the notice to show.
    pub async fn reset(&self, owner: &str, id: &str) -> Result<String, ToolError> {
        let session = self.find(owner, id).await?;
        let mut slot = self.lock(&session, &Watch::default()).await?;
        if let Some(conn) = slot.conn.take() {
            conn.close().await;
        }
        slot.lost = None;
        self.ensure_conn(&session, &mut slot).await?;
        slot.pending_notice = None;
        session.touch();
        Ok(messages::RESET_DONE.into())
    }

    /// Close every session (server shutdown). Busy sessions are dropped,
    /// which closes their sockets and ends their R. Sessions of a backend
    /// whose sessions outlive this process ([`Backend::outlives_server`]) are
    /// only disconnected, so a restarted server can use them again.
    pub async fn close_all(&self) {
        let all: Vec<Arc<Session>> = self.map().drain().map(|(_, s)| s).collect();
        for s in all {
            if let Ok(mut slot) = s.slot.try_lock()
                && let Some(mut conn) = slot.conn.take()
            {
                if self.backend.checkpoints() {
                    self.checkpoint_before_shutdown(&s.id, &mut conn).await;
                }
                conn.close().await;
            }
            if !self.backend.outlives_server() {
                let _ = self.backend.close(&s.owner, &s.id).await;
            }
        }
        self.metrics.set_sessions(0);
    }
}

/// How long a call on a busy session waits for the session to free, or for
/// the call holding it to be cancelled, before answering `session_busy`.
/// Long enough for a cancellation that travels as a closed HTTP request to
/// reach the server (milliseconds), short against any evaluation worth
/// waiting for.
pub const BUSY_WAIT: Duration = Duration::from_millis(500);

/// Bound on checkpointing one session at server shutdown.
const SHUTDOWN_CHECKPOINT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_named_pool_on_a_backend_without_pools_is_an_invalid_argument() {
        let backend = crate::session::direct::DirectBackend::new(
            vec![crate::session::direct::RserveTarget {
                addr: "127.0.0.1:1".into(),
                credentials: None,
            }],
            "/ws",
        )
        .unwrap();
        let m = SessionManager::new(
            Arc::new(backend),
            ManagerConfig::default(),
            Arc::new(Metrics::new()),
        );
        let e = m
            .create_with_pool(
                "alice",
                &PoolRequest::Named("warm".into()),
                &Progress::none(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, crate::errors::ErrorCode::InvalidArgument);
        assert!(e.message.contains("kubernetes backend"), "{}", e.message);
        assert_eq!(e.details["pool"], "warm");
        assert_eq!(e.details["backend"], "direct");
        assert!(m.map().is_empty());
    }

    #[test]
    fn session_ids_are_distinct_and_shaped() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert!(a.starts_with("rs-") && a.len() == 15, "{a}");
    }
}
