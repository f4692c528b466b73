//! The session manager: session ids, one connection per session, serialised
//! calls, limits, and recovery after R is lost.
//!
//! Concurrency: calls on one session are serialised by a per-session lock
//! taken with `try_lock`, so a second concurrent call gets `session_busy`
//! (retryable) at once instead of queueing behind a long evaluation. Calls
//! on different sessions run in parallel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use rserve::Sexp;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::time::Instant;

use crate::errors::{ErrorCode, ToolError};
use crate::harness::{
    ExecLimits, ExecReport, ExecStatus, HarnessCall, Reply, UPLOAD_VAR, enforce_output_cap,
};
use crate::metrics::Metrics;
use crate::render::render_text;
use crate::session::conn::{Interrupted, RConn};
use crate::session::oom::OomKill;
use crate::session::{Backend, Endpoint, Progress, WorkspaceCleanup};

/// Server-wide evaluation limits. Per-call limits may lower the defaults
/// but never go above the maxima.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Deadline of `execute_in_session` when the call names none.
    pub default_duration: Duration,
    /// Largest deadline a call may ask for.
    pub max_duration: Duration,
    /// Time between SIGINT and SIGKILL.
    pub grace: Duration,
    /// Output budget (bytes) when the call names none.
    pub default_output_bytes: u64,
    /// Largest output budget a call may ask for.
    pub max_output_bytes: u64,
    /// Largest `code` accepted, in bytes (`code_too_large` above).
    pub max_code_bytes: usize,
    /// Plots returned per call.
    pub max_plots: u32,
    /// Largest PNG returned, in bytes.
    pub max_plot_bytes: u64,
    /// Deadline of `install_package` (clamped to `max_duration`).
    pub install_duration: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_duration: Duration::from_secs(60),
            max_duration: Duration::from_secs(600),
            grace: Duration::from_secs(2),
            default_output_bytes: 64 * 1024,
            max_output_bytes: 4 << 20,
            max_code_bytes: 256 * 1024,
            max_plots: 20,
            max_plot_bytes: 10 << 20,
            install_duration: Duration::from_secs(900),
        }
    }
}

/// Limits of the workspace file tools.
#[derive(Debug, Clone)]
pub struct FileLimits {
    /// Deadline of a file tool call.
    pub duration: Duration,
    /// Largest file `read_session_file` returns, in bytes.
    pub max_read_bytes: u64,
    /// Largest content `write_session_file` accepts, in bytes.
    pub max_write_bytes: usize,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            duration: Duration::from_secs(60),
            max_read_bytes: 4 << 20,
            max_write_bytes: 16 << 20,
        }
    }
}

impl FileLimits {
    /// Clamp a read to `max_read_bytes`; refuse a write above
    /// `max_write_bytes` (`invalid_argument`). Other calls pass unchanged.
    fn apply(&self, call: &mut HarnessCall) -> Result<(), ToolError> {
        match call {
            HarnessCall::ReadFile { max_bytes, .. } => {
                *max_bytes = (*max_bytes).min(self.max_read_bytes);
            }
            HarnessCall::WriteFile { content, .. } if content.len() > self.max_write_bytes => {
                return Err(ToolError::invalid(format!(
                    "content is {} bytes; at most {} bytes per write",
                    content.len(),
                    self.max_write_bytes
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Manager settings.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Evaluation limits.
    pub limits: Limits,
    /// File tool limits.
    pub files: FileLimits,
    /// Bound on connecting to Rserve, logging in and installing the harness.
    pub connect_timeout: Duration,
    /// Most sessions open at once, per server.
    pub max_sessions: usize,
    /// Repository URL for `install_package` (CRAN mirror or `file://` repo).
    pub package_repository: String,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            limits: Limits::default(),
            files: FileLimits::default(),
            connect_timeout: Duration::from_secs(30),
            max_sessions: 64,
            package_repository: "https://cloud.r-project.org".into(),
        }
    }
}

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
}

/// How long, after a lost connection, a fresh connection may take to read the
/// OOM-kill counter again before the loss is reported without that check.
const OOM_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

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
}

struct Session {
    id: String,
    owner: String,
    created_at: jiff::Timestamp,
    slot: Arc<Mutex<Slot>>,
    last_activity: std::sync::Mutex<Option<jiff::Timestamp>>,
    executions: AtomicU64,
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

fn reset_notice(reason: &str) -> String {
    format!(
        "R state was reset: the previous R process of this session ended ({reason}). \
         This call ran in a fresh R; objects, loaded packages and options are gone, \
         but files in the workspace survived. Re-run setup code (library(), data loading) if needed."
    )
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
                lost: Some(
                    "this MCP server held no connection to it, e.g. after a restart of the server"
                        .into(),
                ),
                pending_notice: None,
                workspace: None,
                r_version: None,
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

    fn lock(&self, session: &Arc<Session>) -> Result<OwnedMutexGuard<Slot>, ToolError> {
        session.slot.clone().try_lock_owned().map_err(|_| {
            ToolError::new(
                ErrorCode::SessionBusy,
                "another call is running in this session; calls on one session run one at a time. Retry when it has finished (or timed out).",
            )
            .with_details(json!({"session_id": session.id}))
        })
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<RConn, ToolError> {
        let conn = RConn::open(endpoint, self.config.connect_timeout).await?;
        tracing::info!(pid = conn.pid(), addr = %endpoint.addr, workspace = %conn.workspace, "R connected");
        Ok(conn)
    }

    /// Make sure the slot has a live R; after a loss, connect a fresh one and
    /// remember to tell the next result.
    async fn ensure_conn<'a>(
        &self,
        session: &Session,
        slot: &'a mut Slot,
    ) -> Result<&'a mut RConn, ToolError> {
        if slot.conn.is_none() {
            let looked_up = self.backend.endpoint(&session.owner, &session.id).await;
            let (endpoint, conn) = match (looked_up, slot.endpoint.clone()) {
                (Ok(endpoint), _) => {
                    let conn = self.connect(&endpoint).await?;
                    (endpoint, conn)
                }
                // The backend cannot say where the session is right now (the
                // Kubernetes API is down), but it was reachable before: its
                // Rserve usually still runs there (only the forked R ended),
                // and the per-session login refuses any other Rserve.
                (Err(e), Some(last)) if e.code == ErrorCode::BackendUnavailable => {
                    tracing::warn!(session_id = %session.id, error = %e, addr = %last.addr, "endpoint lookup failed; reconnecting to the last known endpoint");
                    match self.connect(&last).await {
                        Ok(conn) => (last, conn),
                        Err(connect_error) => {
                            tracing::warn!(session_id = %session.id, error = %connect_error, "the last known endpoint does not answer either");
                            return Err(e);
                        }
                    }
                }
                (Err(e), _) => return Err(e),
            };
            slot.workspace = Some(conn.workspace.clone());
            slot.r_version = Some(conn.r_version.clone());
            if let Some(reason) = slot.lost.take() {
                slot.pending_notice = Some(reset_notice(&reason));
            }
            slot.endpoint = Some(endpoint);
            slot.conn = Some(conn);
        }
        slot.conn
            .as_mut()
            .ok_or_else(|| ToolError::internal("no R connection after connecting"))
    }

    /// After the slot's connection was lost: whether the OOM killer ended
    /// its R (see [`RConn::lost_to_oom`]).
    async fn lost_to_oom(&self, id: &str, slot: &mut Slot) -> Option<OomKill> {
        let conn = slot.conn.as_mut()?;
        let kill = conn
            .lost_to_oom(OOM_PROBE_TIMEOUT.min(self.config.connect_timeout))
            .await?;
        tracing::warn!(session_id = %id, pid = conn.pid(), memory_limit_bytes = ?kill.limit_bytes, "R was killed by the out-of-memory killer");
        Some(kill)
    }

    fn mark_lost(&self, slot: &mut Slot, reason: &str) {
        slot.conn = None;
        slot.lost = Some(reason.to_string());
        self.metrics.session_lost();
    }

    /// Create a session: place it on the backend (which reports its steps
    /// to `progress`), connect, install the harness, create and enter its
    /// workspace; the connect is reported as the last step.
    ///
    /// Errors: `backend_unavailable`, `forbidden` (session limit reached).
    pub async fn create(&self, owner: &str, progress: &Progress) -> Result<SessionInfo, ToolError> {
        if self.map().len() >= self.config.max_sessions {
            return Err(ToolError::new(
                ErrorCode::Forbidden,
                format!(
                    "this server already holds its maximum of {} sessions; close one first",
                    self.config.max_sessions
                ),
            ));
        }
        let id = new_session_id();
        let endpoint = self.backend.create(owner, &id, progress).await?;
        let conn = match self.connect(&endpoint).await {
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
                conn: Some(conn),
                endpoint: Some(endpoint),
                lost: None,
                pending_notice: None,
            },
        ));
        self.map().insert(id.clone(), session.clone());
        self.metrics.set_sessions(self.map().len());
        tracing::info!(session_id = %id, owner, "session created");
        Ok(self.info(&session).await)
    }

    async fn info(&self, s: &Session) -> SessionInfo {
        let (busy, connected, workspace, r_version) = match s.slot.try_lock() {
            Ok(slot) => (
                false,
                slot.conn.is_some(),
                slot.workspace.clone(),
                slot.r_version.clone(),
            ),
            Err(_) => (true, true, None, None),
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
        let mut slot = self.lock(&session)?;
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

    /// Replace the session's R with a fresh one (workspace files kept).
    /// Returns the notice to show.
    pub async fn reset(&self, owner: &str, id: &str) -> Result<String, ToolError> {
        let session = self.find(owner, id).await?;
        let mut slot = self.lock(&session)?;
        if let Some(conn) = slot.conn.take() {
            conn.close().await;
        }
        slot.lost = None;
        self.ensure_conn(&session, &mut slot).await?;
        slot.pending_notice = None;
        session.touch();
        Ok("R state was reset: a fresh R process now serves this session; objects, loaded packages and options are gone, files in the workspace survived.".into())
    }

    /// Close every session (server shutdown). Busy sessions are dropped,
    /// which closes their sockets and ends their R. Sessions of a backend
    /// whose sessions outlive this process ([`Backend::outlives_server`]) are
    /// only disconnected, so a restarted server can use them again.
    pub async fn close_all(&self) {
        let all: Vec<Arc<Session>> = self.map().drain().map(|(_, s)| s).collect();
        for s in all {
            if let Ok(mut slot) = s.slot.try_lock()
                && let Some(conn) = slot.conn.take()
            {
                conn.close().await;
            }
            if !self.backend.outlives_server() {
                let _ = self.backend.close(&s.owner, &s.id).await;
            }
        }
        self.metrics.set_sessions(0);
    }

    /// The limits inside R of an evaluation asking for `max_output_bytes`
    /// (default the server's default, clamped to its maximum).
    pub fn exec_limits(&self, max_output_bytes: Option<u64>) -> ExecLimits {
        let lim = &self.config.limits;
        ExecLimits {
            max_output_bytes: max_output_bytes
                .unwrap_or(lim.default_output_bytes)
                .min(lim.max_output_bytes),
            max_plots: lim.max_plots,
            max_plot_bytes: lim.max_plot_bytes,
        }
    }

    /// Run one harness call in the session `id` of `owner` under a deadline
    /// of `max_duration` (default the evaluation default, clamped to the
    /// maximum; file calls use the file-tool deadline, installs the install
    /// deadline). [`HarnessCall::Execute`] and
    /// [`HarnessCall::InstallPackages`] answer [`Reply::Report`] (an R error
    /// in the code is a normal result with status `error`); every other call
    /// answers [`Reply::Value`], the entry point's R value.
    ///
    /// Errors: `invalid_argument` (arguments refused by
    /// [`HarnessCall::render`], file limits; an R error whose message holds
    /// `rsession: `), `session_not_found`, `session_busy`, `code_too_large`,
    /// `execution_timeout` (R interrupted, state kept; partial output in
    /// details), `session_lost` (R killed or gone; retry runs on a fresh R),
    /// `backend_unavailable`, `internal`.
    pub async fn call(
        &self,
        owner: &str,
        id: &str,
        mut call: HarnessCall,
        max_duration: Option<Duration>,
    ) -> Result<Reply, ToolError> {
        self.config.files.apply(&mut call)?;
        let lim = &self.config.limits;
        let clamped = |d: Option<Duration>| d.unwrap_or(lim.default_duration).min(lim.max_duration);
        match call {
            HarnessCall::Execute { code, limits } => self
                .evaluate(owner, id, &code, limits, clamped(max_duration))
                .await
                .map(Reply::Report),
            HarnessCall::InstallPackages { .. } => {
                let code = call.render()?;
                let limits = self.exec_limits(None);
                self.evaluate(
                    owner,
                    id,
                    &code,
                    limits,
                    clamped(Some(lim.install_duration)),
                )
                .await
                .map(Reply::Report)
            }
            HarnessCall::ListFiles { .. }
            | HarnessCall::ReadFile { .. }
            | HarnessCall::WriteFile { .. } => {
                let expr = call.render()?;
                let duration = self.config.files.duration;
                self.helper(owner, id, &expr, call.upload(), duration)
                    .await
                    .map(Reply::Value)
            }
            _ => {
                let expr = call.render()?;
                self.helper(owner, id, &expr, None, clamped(max_duration))
                    .await
                    .map(Reply::Value)
            }
        }
    }

    /// Run `code` in the session: [`SessionManager::call`] with
    /// [`HarnessCall::Execute`] under [`SessionManager::exec_limits`].
    pub async fn execute(
        &self,
        owner: &str,
        id: &str,
        code: &str,
        max_duration: Option<Duration>,
        max_output_bytes: Option<u64>,
    ) -> Result<ExecReport, ToolError> {
        let call = HarnessCall::Execute {
            code: code.to_string(),
            limits: self.exec_limits(max_output_bytes),
        };
        self.call(owner, id, call, max_duration)
            .await?
            .into_report()
    }

    async fn evaluate(
        &self,
        owner: &str,
        id: &str,
        code: &str,
        limits: ExecLimits,
        duration: Duration,
    ) -> Result<ExecReport, ToolError> {
        let lim = &self.config.limits;
        if code.len() > lim.max_code_bytes {
            return Err(ToolError::new(
                ErrorCode::CodeTooLarge,
                format!("code is {} bytes; this server accepts at most {} bytes per call. Write large inputs to a workspace file (write_session_file) and source() it.", code.len(), lim.max_code_bytes),
            )
            .with_details(json!({"code_bytes": code.len(), "max_code_bytes": lim.max_code_bytes})));
        }
        let output = limits.max_output_bytes;
        let session = self.find(owner, id).await?;
        let mut slot = self.lock(&session)?;
        session.touch();
        let conn = self.ensure_conn(&session, &mut slot).await?;
        let started = Instant::now();
        let result = conn
            .execute(code, &limits, started + duration, lim.grace)
            .await;
        let elapsed = started.elapsed();
        session.executions.fetch_add(1, Ordering::Relaxed);
        session.touch();
        self.backend.record_activity(owner, id);
        let details = |extra: serde_json::Value| {
            let mut d = json!({
                "session_id": id,
                "max_duration_secs": duration.as_secs_f64(),
                "elapsed_secs": elapsed.as_secs_f64(),
            });
            if let (Some(d), Some(e)) = (d.as_object_mut(), extra.as_object()) {
                d.extend(e.clone());
            }
            d
        };
        match result? {
            Ok(mut outcome) => {
                enforce_output_cap(&mut outcome, usize::try_from(output).unwrap_or(usize::MAX));
                self.metrics
                    .execution(status_label(outcome.status), elapsed);
                Ok(ExecReport {
                    session_id: id.to_string(),
                    outcome,
                    state_reset_notice: slot.pending_notice.take(),
                    elapsed,
                    max_duration: duration,
                    max_output_bytes: output,
                })
            }
            Err(Interrupted::Interrupted(partial)) => {
                self.metrics.execution("timeout", elapsed);
                let partial_text = partial
                    .map(|mut o| {
                        enforce_output_cap(&mut o, usize::try_from(output).unwrap_or(usize::MAX));
                        render_text(&o)
                    })
                    .unwrap_or_default();
                Err(ToolError::new(
                    ErrorCode::ExecutionTimeout,
                    format!("the code ran longer than {:.1} s and was interrupted; R state is kept and the session still answers", duration.as_secs_f64()),
                )
                .with_details(details(json!({"state_kept": true, "partial_output": partial_text}))))
            }
            Err(Interrupted::Killed) => {
                self.metrics.execution("killed", elapsed);
                self.mark_lost(
                    &mut slot,
                    "killed after it ignored an interrupt at the deadline",
                );
                Err(ToolError::new(
                    ErrorCode::SessionLost,
                    format!("the code ran longer than {:.1} s and did not stop on interrupt, so its R process was killed. Retry: the next call starts a fresh R in the same workspace (R state lost, files kept).", duration.as_secs_f64()),
                )
                .with_details(details(json!({"state_kept": false, "timed_out": true}))))
            }
            Err(Interrupted::Lost(reason)) => {
                self.metrics.execution("lost", elapsed);
                if let Some(kill) = self.lost_to_oom(id, &mut slot).await {
                    self.mark_lost(&mut slot, &kill.reason());
                    return Err(ToolError::new(ErrorCode::SessionLost, kill.message())
                        .with_details(details(kill.details(&reason))));
                }
                self.mark_lost(
                    &mut slot,
                    &format!("the connection ended during a call: {reason}"),
                );
                Err(ToolError::new(
                    ErrorCode::SessionLost,
                    "the R process of this session ended during the call (quit(), a crash, or it was killed). Retry: the next call starts a fresh R in the same workspace (R state lost, files kept).",
                )
                .with_details(details(json!({"state_kept": false, "reason": reason}))))
            }
        }
    }

    /// Evaluate R source `expr` as it is and return its value, under
    /// `max_duration` (default the evaluation default, clamped to the
    /// maximum). For tests and diagnostics: tools go through
    /// [`SessionManager::call`], which renders `expr` from escaped literals.
    ///
    /// Errors: as [`SessionManager::call`].
    pub async fn eval_helper(
        &self,
        owner: &str,
        id: &str,
        expr: &str,
        max_duration: Option<Duration>,
    ) -> Result<Sexp, ToolError> {
        let lim = &self.config.limits;
        let duration = max_duration
            .unwrap_or(lim.default_duration)
            .min(lim.max_duration);
        self.helper(owner, id, expr, None, duration).await
    }

    /// Evaluate `expr` and return its value, after assigning `upload` (if
    /// any) to [`UPLOAD_VAR`] in R.
    async fn helper(
        &self,
        owner: &str,
        id: &str,
        expr: &str,
        upload: Option<&[u8]>,
        duration: Duration,
    ) -> Result<Sexp, ToolError> {
        let session = self.find(owner, id).await?;
        let mut slot = self.lock(&session)?;
        session.touch();
        let grace = self.config.limits.grace;
        let deadline = Instant::now() + duration;
        let conn = self.ensure_conn(&session, &mut slot).await?;
        let result = match upload {
            Some(bytes) => match conn.upload(UPLOAD_VAR, bytes).await {
                Ok(()) => conn.call(expr, deadline, grace).await,
                Err(e) => Err(e),
            },
            None => conn.call(expr, deadline, grace).await,
        };
        self.backend.record_activity(owner, id);
        if let Err(e) = &result
            && e.code == ErrorCode::SessionLost
        {
            if let Some(kill) = self.lost_to_oom(id, &mut slot).await {
                self.mark_lost(&mut slot, &kill.reason());
                let mut details = kill.details(&e.message);
                details["session_id"] = json!(id);
                return Err(
                    ToolError::new(ErrorCode::SessionLost, kill.message()).with_details(details)
                );
            }
            self.mark_lost(&mut slot, &e.message);
        }
        result
    }

    /// [`HarnessCall::ListFiles`]: files under `path` (relative to the workspace).
    pub async fn list_files(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<Sexp, ToolError> {
        let path = path.to_string();
        let call = HarnessCall::ListFiles { path, recursive };
        self.call(owner, id, call, None).await?.into_value()
    }

    /// [`HarnessCall::ReadFile`]: up to `max_bytes` of a workspace file,
    /// `list(bytes, size, truncated)`.
    pub async fn read_file(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        max_bytes: Option<u64>,
    ) -> Result<Sexp, ToolError> {
        let path = path.to_string();
        let max_bytes = max_bytes.unwrap_or(u64::MAX);
        let call = HarnessCall::ReadFile { path, max_bytes };
        self.call(owner, id, call, None).await?.into_value()
    }

    /// [`HarnessCall::WriteFile`]: write `content` to a workspace file.
    pub async fn write_file(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        content: &[u8],
        overwrite: bool,
    ) -> Result<Sexp, ToolError> {
        let (path, content) = (path.to_string(), content.to_vec());
        let call = HarnessCall::WriteFile {
            path,
            content,
            overwrite,
        };
        self.call(owner, id, call, None).await?.into_value()
    }

    /// [`HarnessCall::InstallPackages`] from the configured repository.
    pub async fn install_packages(
        &self,
        owner: &str,
        id: &str,
        packages: &[String],
    ) -> Result<ExecReport, ToolError> {
        let call = HarnessCall::InstallPackages {
            packages: packages.to_vec(),
            repository: self.config.package_repository.clone(),
        };
        self.call(owner, id, call, None).await?.into_report()
    }
}

fn status_label(s: ExecStatus) -> &'static str {
    match s {
        ExecStatus::Ok => "ok",
        ExecStatus::Error => "error",
        ExecStatus::ParseError => "parse_error",
        ExecStatus::Interrupted => "interrupted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_distinct_and_shaped() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert!(a.starts_with("rs-") && a.len() == 15, "{a}");
    }
}
