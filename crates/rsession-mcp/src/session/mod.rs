//! Sessions: where an R session lives ([`Backend`]) and how calls on it are
//! run ([`SessionManager`]).
//!
//! A session is one long-lived QAP1 connection (Rserve forks one R per
//! connection, so R state lives exactly as long as it) plus a workspace
//! directory. Backends only place sessions and hand out endpoints and
//! credentials; the manager owns connections, serialisation and limits, so a
//! Kubernetes backend (RSession objects) slots in behind the same trait.

pub mod conn;
pub mod direct;
pub mod kubernetes;
pub mod manager;
pub mod oom;
pub mod registry;
pub mod sandboxed;

use std::sync::Arc;

use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::errors::ToolError;

pub use crate::harness::{ExecReport, Reply};
pub use manager::{BUSY_WAIT, FileLimits, Limits, ManagerConfig, SessionInfo, SessionManager};

/// QAP1 login credentials (`CMD_login`, plaintext).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where a session's R is and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` of the Rserve (QAP1) listener, or `unix:<path>` for its
    /// Unix socket ([`rserve::UNIX_PREFIX`]).
    pub addr: String,
    /// Login, when the server requires it (`auth required`).
    pub credentials: Option<Credentials>,
    /// Workspace directory as R sees it (absolute; created if missing).
    pub workspace: String,
}

/// What happens to a session's workspace when it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceCleanup {
    /// The manager deletes it through R before disconnecting (direct backend:
    /// the directory would otherwise stay on the Rserve host).
    ViaR,
    /// The backend deletes it with the session (a pod's emptyDir, a PVC).
    ByBackend,
}

/// A session as the backend knows it (a Kubernetes backend reads these from
/// RSession objects, so they may predate this server process).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BackendSession {
    /// Session id.
    pub session_id: String,
    /// Who created it.
    pub owner: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Whether its R can take calls now.
    pub ready: bool,
    /// Lifecycle phase where the backend has one (Kubernetes: the RSession's
    /// `status.phase`, e.g. `Pending`, `Ready`, `Expired`).
    pub phase: Option<String>,
}

/// What `create_session` asked for about warm pools (its `pool` argument).
/// Only the kubernetes backend has pools ([`Backend::pools`]): there a pool
/// is an RSessionPool in the sessions namespace whose Ready pods a new
/// session takes over instead of starting one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PoolRequest {
    /// No `pool` argument: the server's default pool (`--default-pool`), if
    /// any and if it can serve this session; else a cold start.
    #[default]
    Default,
    /// `pool: ""`: no pool, a cold start.
    Cold,
    /// `pool: "<name>"`: that pool; an error when it cannot be used.
    Named(String),
}

impl PoolRequest {
    /// The request a `pool` argument makes: absent → [`PoolRequest::Default`],
    /// `""` → [`PoolRequest::Cold`], else [`PoolRequest::Named`].
    pub fn from_argument(pool: Option<&str>) -> Self {
        match pool {
            None => PoolRequest::Default,
            Some("") => PoolRequest::Cold,
            Some(name) => PoolRequest::Named(name.to_string()),
        }
    }
}

/// How a new session got its R, as `create_session` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SessionStart {
    /// True: the session took over an R that was already running
    /// (kubernetes: a Ready pod of `pool`; sandboxed direct backend: the
    /// spare sandbox started in advance). False: a cold start, R was started
    /// for this session.
    pub warm: bool,
    /// The RSessionPool the session was created with (`spec.poolRef`); with
    /// `warm: false` the pool had no Ready pod to give.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The session pod (warm: the pool pod taken over), kubernetes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Milliseconds from the start of the create (before its first API call)
    /// to the moment this server saw the session Ready (kubernetes: the watch
    /// event with the `Ready` condition True), as this server measured them.
    pub ready_ms: u64,
    /// Why the start was what it was, in a few words, e.g. `"pool warm had
    /// no Ready pod"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl SessionStart {
    /// A start without a pool, ready `elapsed` after the create began.
    pub fn without_pool(warm: bool, elapsed: Duration, note: impl Into<String>) -> Self {
        SessionStart {
            warm,
            pool: None,
            pod_name: None,
            ready_ms: millis(elapsed),
            note: Some(note.into()),
        }
    }
}

/// `d` in whole milliseconds (saturating).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A session a backend created: where it is and how it started.
#[derive(Debug, Clone)]
pub struct Created {
    /// Where its R is.
    pub endpoint: Endpoint,
    /// How it started.
    pub start: SessionStart,
}

/// What may watch or stop one harness call while R runs: the caller's
/// cancellation (MCP `notifications/cancelled`, spec 2025-06-18
/// "Utilities" → "Cancellation") and its progress sink.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Fires when the caller gives up on the call; R is then interrupted.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Where running-time reports go.
    pub progress: Progress,
}

/// One progress step of a long operation, as MCP `notifications/progress`
/// carries it (MCP spec 2025-06-18, "Utilities" → "Progress").
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressUpdate {
    /// Progress so far; increases with every step.
    pub progress: f64,
    /// Total steps, when known.
    pub total: Option<f64>,
    /// Readable text, e.g. `"Starting: the session pod is scheduled"`.
    pub message: String,
}

type ProgressFn = dyn Fn(ProgressUpdate) -> BoxFuture<'static, ()> + Send + Sync;

/// Where a backend reports progress while it creates a session. Reports are
/// awaited in order, so they reach the client in order; a sink that cannot
/// deliver drops the update (progress is advisory). The total of the last
/// report is kept, so whoever finishes the operation ([`Progress::finish`])
/// need not know how many steps the backend counts.
#[derive(Clone, Default)]
pub struct Progress {
    sink: Option<Arc<ProgressFn>>,
    total: Arc<std::sync::Mutex<Option<f64>>>,
}

impl Progress {
    /// A sink that discards updates (no progress token in the request).
    pub fn none() -> Self {
        Progress::default()
    }

    /// A sink that hands each update to `f`.
    pub fn new(
        f: impl Fn(ProgressUpdate) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        Progress {
            sink: Some(Arc::new(f)),
            total: Arc::default(),
        }
    }

    /// Whether reports reach anyone (the request carried a progress token).
    pub fn is_active(&self) -> bool {
        self.sink.is_some()
    }

    /// Report step `progress` of `total` with `message`.
    pub async fn report(&self, progress: f64, total: Option<f64>, message: impl Into<String>) {
        if total.is_some() {
            *self.total.lock().unwrap_or_else(|p| p.into_inner()) = total;
        }
        if let Some(f) = &self.sink {
            f(ProgressUpdate {
                progress,
                total,
                message: message.into(),
            })
            .await;
        }
    }

    /// Report the last step: progress at the total the backend reported
    /// (1 of 1 when it reported none).
    pub async fn finish(&self, message: impl Into<String>) {
        let total = self
            .total
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(1.0);
        self.report(total, Some(total), message).await;
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.sink.is_some() {
            "Progress(sink)"
        } else {
            "Progress(none)"
        })
    }
}

/// Places sessions and tells where they are. Implementations: [`direct::DirectBackend`]
/// (Rserve endpoints given on the command line or an embedded local Rserve) and
/// [`kubernetes::KubernetesBackend`] (one RSession object per session).
///
/// `owner` is the caller's identity (`"local"` over stdio); a backend must not
/// return or touch sessions of another owner (answer `session_not_found`).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name shown in results and metrics, e.g. `"direct"`.
    fn kind(&self) -> &'static str;

    /// Create a session `id` for `owner` and return its endpoint, and how it
    /// started, once it is ready to accept a QAP1 connection, reporting
    /// readable steps (with the backend's own total) to `progress` while the
    /// session starts. The session manager reports the final step (R
    /// connected) at that total. `pool` is [`PoolRequest::Named`] only on a
    /// backend with [`Backend::pools`] (the manager refuses it elsewhere);
    /// other backends ignore it.
    async fn create(
        &self,
        owner: &str,
        id: &str,
        pool: &PoolRequest,
        progress: &Progress,
    ) -> Result<Created, ToolError>;

    /// Whether `create_session` may name a warm pool (kubernetes:
    /// RSessionPools). Default: no.
    fn pools(&self) -> bool {
        false
    }

    /// Note that the session just evaluated code (for idle expiry). Must not
    /// block: a backend that records it remotely does so in the background.
    fn record_activity(&self, owner: &str, id: &str) {
        let _ = (owner, id);
    }

    /// The current endpoint of an existing session (it may move, e.g. a
    /// replaced pod). Errors: `session_not_found`, `session_not_ready`.
    async fn endpoint(&self, owner: &str, id: &str) -> Result<Endpoint, ToolError>;

    /// Whether a session's R may restart or move after it was Ready, on its own (Kubernetes:
    /// its container restarted by the kubelet, its pod replaced). A new session whose first
    /// connect is refused is then waited for to be Ready again through [`Backend::endpoint`]
    /// before `create_session` gives up.
    fn endpoint_moves(&self) -> bool {
        false
    }

    /// Sessions of `owner`.
    async fn list(&self, owner: &str) -> Result<Vec<BackendSession>, ToolError>;

    /// Forget (delete) a session. Errors: `session_not_found`.
    async fn close(&self, owner: &str, id: &str) -> Result<(), ToolError>;

    /// Who removes the workspace on close.
    fn workspace_cleanup(&self) -> WorkspaceCleanup;

    /// Whether sessions outlive this server process (Kubernetes: RSession
    /// objects), so shutdown only disconnects them instead of closing them.
    fn outlives_server(&self) -> bool {
        false
    }

    /// After `id`'s connection was lost: whether the backend itself killed
    /// its R for going over a memory limit (the sandbox's memory guard).
    /// Each kill is reported once. Default: the backend never kills.
    async fn memory_kill(&self, owner: &str, id: &str) -> Option<oom::OomKill> {
        let _ = (owner, id);
        None
    }

    /// Whether sessions are checkpointed when this server shuts down and
    /// restored when a restarted server adopts them (the direct backend
    /// with a kept workspace root). Default: no.
    fn checkpoints(&self) -> bool {
        false
    }

    /// Requests from the platform to checkpoint a session now (Kubernetes:
    /// an RSession in phase `Checkpointing`, before its pod ends for idleness
    /// or maximum lifetime). The session manager takes the receiver once, at
    /// start, and answers each request it can with
    /// [`Backend::answer_checkpoint`]. Default: none.
    fn checkpoint_requests(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<CheckpointRequest>> {
        None
    }

    /// Tell the platform that `request` was handled: `report` is one line
    /// (what was saved, or why it failed). Errors are logged, never returned:
    /// the platform stops waiting at its own timeout.
    async fn answer_checkpoint(&self, request: &CheckpointRequest, report: &str) {
        let _ = (request, report);
    }

    /// How often an active session `id` is checkpointed (Kubernetes:
    /// `spec.lifecycle.checkpoint.interval`); `None`: never periodically.
    fn checkpoint_interval(&self, id: &str) -> Option<Duration> {
        let _ = id;
        None
    }

    /// Whether a fresh R connected after a loss (pod replaced, idle expiry,
    /// R killed) gets the session's last checkpoint restored. True where the
    /// workspace outlives the R process on its own (Kubernetes).
    fn restores_after_loss(&self) -> bool {
        false
    }

    /// Whether this server should take traffic (`/readyz`): direct, an Rserve endpoint accepts
    /// connections; sandboxed, always; kubernetes, the API server has answered once since the
    /// start (an outage later leaves it ready: `create_session` then says
    /// `backend_unavailable`, and sessions keep answering).
    async fn ready(&self) -> bool;
}

/// A request to checkpoint one session ([`Backend::checkpoint_requests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRequest {
    /// The session.
    pub session_id: String,
    /// When the platform asked (Kubernetes: `status.checkpointRequestedAt`,
    /// echoed in the answer).
    pub requested_at: String,
}
