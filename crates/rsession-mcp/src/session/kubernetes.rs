//! The `kubernetes` backend: one RSession object (`rsession.dev/v1alpha1`) per
//! session, reconciled into a locked-down Rserve pod by rsession-operator.
//!
//! - create: server-side apply of a typed RSession (field manager
//!   [`FIELD_MANAGER`]) labelled with the caller's [`owner_label_value`], then a
//!   watch on it until its `Ready` condition is `True`, reporting each phase as
//!   progress; then the endpoint (`status.endpoint`) and the Rserve login from
//!   the Secret named by `status.credentialsSecret` (keys `username`,
//!   `password`).
//! - every lookup checks the owner label, so another caller's session is
//!   `session_not_found`, never revealed.
//! - activity: after evaluations the annotation `rsession.dev/last-activity`
//!   (RFC 3339) is applied in the background, at most once per
//!   [`KubernetesConfig::activity_interval`] per session, with its own field
//!   manager [`ACTIVITY_FIELD_MANAGER`] (so the stamp never removes the
//!   fields the create apply owns). A stamp that fails because the API is
//!   unavailable is retried in the background with backoff; it never fails
//!   the evaluation.
//! - API failures map to tool errors by [`api_error_code`]: an unreachable or
//!   overloaded apiserver is `backend_unavailable` (retryable).
//!
//! Kubernetes API calls: `rsessions` patch (apply), get, list, watch, delete;
//! `secrets` get — the verbs the chart's `rsession-mcp` Role grants.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSession, RSessionSpec};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::errors::{ErrorCode, ToolError};
use crate::session::{Backend, BackendSession, Credentials, Endpoint, Progress, WorkspaceCleanup};

/// Server-side apply field manager of the RSession objects this backend creates.
pub const FIELD_MANAGER: &str = "rsession-mcp";
/// Field manager of the `rsession.dev/last-activity` stamp (separate from
/// [`FIELD_MANAGER`] so an annotation-only apply leaves spec and labels alone).
pub const ACTIVITY_FIELD_MANAGER: &str = "rsession-mcp-activity";
/// Label holding [`owner_label_value`] of the caller that created the session.
pub const LABEL_OWNER: &str = "rsession.dev/owner";
/// Annotation holding the creating caller's user name as authenticated
/// (readable form of [`LABEL_OWNER`]; informational, never used for access).
pub const ANNOTATION_OWNER_NAME: &str = "rsession.dev/owner-name";
/// The `Ready` condition type the operator maintains (`status.conditions`).
pub const CONDITION_READY: &str = "Ready";

/// Steps reported while a session starts: submitted, Pending, Starting, Ready,
/// connected (the last one reported by the session manager).
pub const PROGRESS_TOTAL: f64 = 4.0;

/// Settings of the Kubernetes backend.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// Namespace holding the RSession objects (the sessions namespace).
    pub namespace: String,
    /// How long `create_session` waits for the Ready condition before
    /// answering `session_not_ready` (the RSession is kept and usable later).
    pub ready_timeout: Duration,
    /// Workspace directory inside the session pod ([`wk::WORKSPACE_PATH`]).
    pub workspace: String,
    /// Shortest time between two activity stamps of one session.
    pub activity_interval: Duration,
    /// First wait before retrying a failed activity stamp (then doubling, up
    /// to 30 s between attempts).
    pub activity_retry_delay: Duration,
    /// How long a failed activity stamp is retried while the Kubernetes API
    /// is unavailable; a newer stamp of the session, or closing it, ends the
    /// retry sooner.
    pub activity_retry_window: Duration,
    /// Spec of new RSessions (empty: the operator's defaults).
    pub spec: RSessionSpec,
}

impl KubernetesConfig {
    /// Defaults for `namespace`: 120 s ready timeout, `/workspace`, stamps at
    /// most every 10 s (a failed one retried from 1 s on, for up to an hour),
    /// default spec.
    pub fn new(namespace: impl Into<String>) -> Self {
        KubernetesConfig {
            namespace: namespace.into(),
            ready_timeout: Duration::from_secs(120),
            workspace: wk::WORKSPACE_PATH.to_string(),
            activity_interval: Duration::from_secs(10),
            activity_retry_delay: Duration::from_secs(1),
            activity_retry_window: Duration::from_secs(3600),
            spec: RSessionSpec::default(),
        }
    }
}

/// Sessions as RSession objects in one namespace.
pub struct KubernetesBackend {
    rsessions: Api<RSession>,
    secrets: Api<Secret>,
    config: KubernetesConfig,
    /// The last activity stamp of each session (throttle, and which retry
    /// is still current), by session id.
    stamped: Arc<Mutex<HashMap<String, Stamp>>>,
    /// Sequence number of the next activity stamp.
    stamps: AtomicU64,
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Value of the [`LABEL_OWNER`] label for a caller: `u-` and the first 48 hex
/// digits of SHA-256 of the user name. A label value holds at most 63
/// characters from a small alphabet, so user names such as
/// `system:serviceaccount:team-a:agent` cannot be stored as they are, and a
/// hash (unlike replacing characters) cannot make two callers collide.
pub fn owner_label_value(owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    let hex: String = digest.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("u-{hex}")
}

/// The last activity stamp sent for a session.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// When it was sent.
    at: Instant,
    /// Increases with every stamp; a retry goes on only while its stamp is
    /// the session's newest.
    seq: u64,
}

/// Longest wait between two attempts of one activity stamp.
const ACTIVITY_RETRY_MAX_DELAY: Duration = Duration::from_secs(30);

/// The apply body of an activity stamp: only `metadata.annotations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ActivityApply {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
}

fn not_found(id: &str) -> ToolError {
    ToolError::new(
        ErrorCode::SessionNotFound,
        format!("no session with id {id:?}; list_sessions shows yours, create_session makes one"),
    )
    .with_details(json!({"session_id": id}))
}

/// The tool error code of a Kubernetes API failure.
///
/// - `backend_unavailable` (retryable): the apiserver cannot be reached or
///   cannot answer now — transport errors (connection refused or reset, DNS,
///   TLS handshake, connect/read timeouts: [`kube::Error::Service`],
///   [`kube::Error::HyperError`], [`kube::Error::ReadEvents`]), HTTP 401 (this
///   server's token is rotated and re-read), 408, 409, 429 and 5xx, and
///   failures getting this server's own credentials ([`kube::Error::Auth`]).
/// - `forbidden`: 403, this server's service account lacks an RBAC right.
/// - `session_not_found`: 404.
/// - `invalid_argument`: 400 and 422, the object was refused.
/// - `internal`: anything else (an undecodable answer, a request that could
///   not be built, a client misconfiguration): retrying cannot help.
pub fn api_error_code(e: &kube::Error) -> ErrorCode {
    match e {
        kube::Error::Api(s) => match s.code {
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::SessionNotFound,
            400 | 422 => ErrorCode::InvalidArgument,
            401 | 408 | 409 | 429 | 500..=599 => ErrorCode::BackendUnavailable,
            _ => ErrorCode::Internal,
        },
        kube::Error::Service(_)
        | kube::Error::HyperError(_)
        | kube::Error::ReadEvents(_)
        | kube::Error::Auth(_) => ErrorCode::BackendUnavailable,
        _ => ErrorCode::Internal,
    }
}

/// Map an API failure while trying to `what` (e.g. `"create RSessions"`) to a
/// tool error coded by [`api_error_code`]; `details.http_status` carries the
/// apiserver's status code when it answered.
fn api_error(what: &str, e: &kube::Error) -> ToolError {
    let code = api_error_code(e);
    let answer = match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    };
    let message = match code {
        ErrorCode::Forbidden => {
            format!("the MCP server's service account may not {what}: {answer}")
        }
        ErrorCode::SessionNotFound => format!(
            "the Kubernetes API found nothing to {what} ({answer}); the session, or the RSession resource type, does not exist"
        ),
        ErrorCode::InvalidArgument => format!("the Kubernetes API refused to {what}: {answer}"),
        ErrorCode::BackendUnavailable => format!(
            "the Kubernetes API is unavailable, so this server could not {what}: {answer}. Retry shortly."
        ),
        _ => format!("trying to {what} failed unexpectedly: {e}"),
    };
    let details = match e {
        kube::Error::Api(s) => json!({"http_status": s.code}),
        _ => json!({}),
    };
    ToolError::new(code, message).with_details(details)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether the RSession's `Ready` condition is `True` (and its status names
/// an endpoint and a credentials Secret).
pub fn is_ready(rs: &RSession) -> bool {
    rs.status.as_ref().is_some_and(|s| {
        s.endpoint.is_some()
            && s.credentials_secret.is_some()
            && s.conditions
                .iter()
                .any(|c| c.type_ == CONDITION_READY && c.status == "True")
    })
}

fn phase_of(rs: &RSession) -> Option<Phase> {
    rs.status.as_ref().and_then(|s| s.phase)
}

/// Progress step and readable text for an RSession as last seen.
pub fn progress_step(rs: &RSession) -> (f64, String) {
    let detail = rs
        .status
        .as_ref()
        .and_then(|s| s.message.as_deref())
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    match phase_of(rs) {
        _ if is_ready(rs) => (
            3.0,
            "Ready: Rserve accepts connections; connecting to R".to_string(),
        ),
        None => (
            1.0,
            "Pending: waiting for the operator to pick up the session".to_string(),
        ),
        Some(Phase::Pending) => (
            1.0,
            format!("Pending: the session pod is being created and scheduled{detail}"),
        ),
        Some(Phase::Starting) => (
            2.0,
            format!("Starting: the session pod is scheduled and Rserve is starting{detail}"),
        ),
        Some(p) => (2.0, format!("{p}{detail}")),
    }
}

/// Why a session that is not Ready cannot be used now, if waiting cannot help.
fn terminal_state(rs: &RSession) -> Option<ToolError> {
    let id = rs.name_any();
    let message = rs
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    let phase = phase_of(rs)?;
    let (code, text) = match phase {
        Phase::Failed => (
            ErrorCode::BackendUnavailable,
            format!("session {id} failed: {message}. Close it and create a new one."),
        ),
        Phase::Suspended => (
            ErrorCode::SessionNotReady,
            format!("session {id} is suspended (spec.lifecycle.suspend); resume it to use it"),
        ),
        Phase::Expired => (
            ErrorCode::SessionNotReady,
            format!(
                "session {id} expired ({message}); its pod is gone. Create a new session (a Persistent workspace is kept)."
            ),
        ),
        Phase::Pending | Phase::Starting | Phase::Ready => return None,
    };
    Some(
        ToolError::new(code, text).with_details(json!({"session_id": id, "phase": phase.as_str()})),
    )
}

fn not_ready(rs: &RSession) -> ToolError {
    if let Some(e) = terminal_state(rs) {
        return e;
    }
    let id = rs.name_any();
    let phase = phase_of(rs).map(|p| p.as_str()).unwrap_or("Pending");
    ToolError::new(
        ErrorCode::SessionNotReady,
        format!("session {id} is not ready yet (phase {phase}); retry shortly"),
    )
    .with_details(json!({"session_id": id, "phase": phase}))
}

impl KubernetesBackend {
    /// A backend creating RSessions in `config.namespace` with `client`.
    pub fn new(client: Client, config: KubernetesConfig) -> Self {
        KubernetesBackend {
            rsessions: Api::namespaced(client.clone(), &config.namespace),
            secrets: Api::namespaced(client, &config.namespace),
            config,
            stamped: Arc::new(Mutex::new(HashMap::new())),
            stamps: AtomicU64::new(0),
        }
    }

    /// The namespace sessions live in.
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// The RSession `id` if it exists and belongs to `owner`.
    async fn owned(&self, owner: &str, id: &str) -> Result<RSession, ToolError> {
        let rs = self
            .rsessions
            .get_opt(id)
            .await
            .map_err(|e| api_error("read RSessions", &e))?
            .ok_or_else(|| not_found(id))?;
        if rs.labels().get(LABEL_OWNER) != Some(&owner_label_value(owner)) {
            return Err(not_found(id));
        }
        Ok(rs)
    }

    /// Endpoint and login of a Ready RSession.
    async fn endpoint_of(&self, rs: &RSession) -> Result<Endpoint, ToolError> {
        let id = rs.name_any();
        let status = rs.status.as_ref().ok_or_else(|| not_ready(rs))?;
        let (Some(addr), Some(secret_name)) = (&status.endpoint, &status.credentials_secret) else {
            return Err(not_ready(rs));
        };
        let secret = self
            .secrets
            .get_opt(secret_name)
            .await
            .map_err(|e| api_error("read the session's credentials Secret", &e))?
            .ok_or_else(|| {
                ToolError::new(
                    ErrorCode::SessionNotReady,
                    format!(
                        "the credentials Secret {secret_name} of session {id} does not exist yet"
                    ),
                )
                .with_details(json!({"session_id": id}))
            })?;
        let credentials = credentials_from(&secret).ok_or_else(|| {
            ToolError::internal(format!(
                "the credentials Secret {secret_name} lacks the keys {} and {}",
                wk::SECRET_KEY_USERNAME,
                wk::SECRET_KEY_PASSWORD
            ))
        })?;
        Ok(Endpoint {
            addr: addr.clone(),
            credentials: Some(credentials),
            workspace: self.config.workspace.clone(),
        })
    }

    fn new_rsession(&self, owner: &str, id: &str) -> RSession {
        let mut rs = RSession::new(id, self.config.spec.clone());
        rs.metadata.namespace = Some(self.config.namespace.clone());
        rs.metadata.labels = Some(BTreeMap::from([
            (LABEL_OWNER.to_string(), owner_label_value(owner)),
            (wk::LABEL_PART_OF.to_string(), wk::APP_NAME.to_string()),
        ]));
        rs.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_OWNER_NAME.to_string(),
            owner.to_string(),
        )]));
        rs
    }

    /// Stamp `rsession.dev/last-activity` on `id` in the background unless
    /// the session was stamped less than `activity_interval` ago; the task
    /// retries while the API is unavailable. Returns the task, if one started.
    fn stamp_activity(&self, owner: &str, id: &str) -> Option<tokio::task::JoinHandle<()>> {
        let now = Instant::now();
        let seq = {
            let mut stamped = self.stamped.lock().unwrap_or_else(|p| p.into_inner());
            if stamped
                .get(id)
                .is_some_and(|s| now.duration_since(s.at) < self.config.activity_interval)
            {
                return None;
            }
            let seq = self.stamps.fetch_add(1, Ordering::Relaxed);
            stamped.insert(id.to_string(), Stamp { at: now, seq });
            seq
        };
        let body = ActivityApply {
            api_version: "rsession.dev/v1alpha1",
            kind: "RSession",
            metadata: ObjectMeta {
                name: Some(id.to_string()),
                annotations: Some(BTreeMap::from([(
                    wk::ANNOTATION_LAST_ACTIVITY.to_string(),
                    jiff::Timestamp::now()
                        .round(jiff::Unit::Second)
                        .unwrap_or_else(|_| jiff::Timestamp::now())
                        .to_string(),
                )])),
                ..ObjectMeta::default()
            },
        };
        let api = self.rsessions.clone();
        let stamped = self.stamped.clone();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.activity_retry_delay)
            .with_max_delay(ACTIVITY_RETRY_MAX_DELAY.max(self.config.activity_retry_delay))
            .with_total_delay(Some(self.config.activity_retry_window))
            .without_max_times()
            .with_jitter();
        let id = id.to_string();
        let owner = owner.to_string();
        // The evaluation that asked for this stamp has already returned; a
        // failure (Kubernetes API down) is logged and retried here, never
        // reported to the caller.
        Some(tokio::spawn(async move {
            let params = PatchParams::apply(ACTIVITY_FIELD_MANAGER).force();
            // Only the newest stamp of a session is worth retrying: a newer one
            // carries a later time, and a closed session needs none.
            let current = || {
                stamped
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .is_some_and(|s| s.seq == seq)
            };
            let patch = Patch::Apply(&body);
            let result = (|| api.patch(&id, &params, &patch))
                .retry(backoff)
                .when(|e| api_error_code(e) == ErrorCode::BackendUnavailable && current())
                .notify(|e, after| {
                    tracing::warn!(session_id = %id, owner = %owner, error = %e, retry_in = ?after, "stamping rsession.dev/last-activity failed; will retry");
                })
                .await;
            match result {
                Ok(_) => tracing::debug!(session_id = %id, "stamped rsession.dev/last-activity"),
                Err(e) if current() => {
                    tracing::warn!(session_id = %id, owner = %owner, error = %e, "stamping rsession.dev/last-activity failed; gave up")
                }
                Err(e) => {
                    tracing::debug!(session_id = %id, error = %e, "a stamp was superseded while it was retried")
                }
            }
        }))
    }

    /// Watch `id` until Ready, reporting phase changes; bounded by the ready timeout.
    async fn await_ready(&self, id: &str, progress: &Progress) -> Result<RSession, ToolError> {
        let mut last_step: Option<String> = None;
        let mut last_seen: Option<RSession> = None;
        // With backoff, so an unreachable apiserver is retried calmly rather
        // than in a busy loop until the deadline.
        let watch =
            kube::runtime::watcher::watch_object(self.rsessions.clone(), id).default_backoff();
        let mut watch = std::pin::pin!(watch);
        let deadline = Instant::now() + self.config.ready_timeout;
        loop {
            let next = match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let phase = last_seen
                        .as_ref()
                        .and_then(phase_of)
                        .map(|p| p.as_str())
                        .unwrap_or("Pending");
                    return Err(ToolError::new(
                        ErrorCode::SessionNotReady,
                        format!(
                            "session {id} was not ready within {} s (phase {phase}). It keeps starting: call execute_in_session with this session_id later, or close_session it.",
                            self.config.ready_timeout.as_secs()
                        ),
                    )
                    .with_details(json!({"session_id": id, "phase": phase, "timeout_secs": self.config.ready_timeout.as_secs()})));
                }
            };
            match next {
                None => {
                    return Err(ToolError::new(
                        ErrorCode::BackendUnavailable,
                        format!("the watch on session {id} ended"),
                    ));
                }
                // The watcher retries transient errors itself; log and go on.
                Some(Err(e)) => {
                    tracing::warn!(session_id = id, error = %e, "watching the RSession")
                }
                Some(Ok(None)) => {
                    return Err(ToolError::new(
                        ErrorCode::SessionNotFound,
                        format!("session {id} was deleted while it was starting"),
                    )
                    .with_details(json!({"session_id": id})));
                }
                Some(Ok(Some(rs))) => {
                    let (step, message) = progress_step(&rs);
                    if last_step.as_deref() != Some(message.as_str()) {
                        tracing::info!(session_id = id, %message, "session progress");
                        progress
                            .report(step, Some(PROGRESS_TOTAL), message.clone())
                            .await;
                        last_step = Some(message);
                    }
                    if is_ready(&rs) {
                        return Ok(rs);
                    }
                    if let Some(e) = terminal_state(&rs) {
                        return Err(e);
                    }
                    last_seen = Some(rs);
                }
            }
        }
    }
}

/// Rserve login from a credentials Secret (keys [`wk::SECRET_KEY_USERNAME`]
/// and [`wk::SECRET_KEY_PASSWORD`], UTF-8).
pub fn credentials_from(secret: &Secret) -> Option<Credentials> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    Some(Credentials {
        username: text(wk::SECRET_KEY_USERNAME)?,
        password: text(wk::SECRET_KEY_PASSWORD)?,
    })
}

impl Backend for KubernetesBackend {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn create<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Endpoint, ToolError>> {
        async move {
            self.create_with_progress(owner, id, &Progress::none())
                .await
        }
        .boxed()
    }

    fn create_with_progress<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
        progress: &'a Progress,
    ) -> BoxFuture<'a, Result<Endpoint, ToolError>> {
        async move {
            let rs = self.new_rsession(owner, id);
            self.rsessions
                .patch(id, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&rs))
                .await
                .map_err(|e| api_error("create RSessions", &e))?;
            tracing::info!(session_id = id, namespace = %self.config.namespace, "RSession applied");
            progress
                .report(
                    0.0,
                    Some(PROGRESS_TOTAL),
                    format!(
                        "Submitted RSession {id} in namespace {}",
                        self.config.namespace
                    ),
                )
                .await;
            let rs = self.await_ready(id, progress).await?;
            self.endpoint_of(&rs).await
        }
        .boxed()
    }

    fn record_activity(&self, owner: &str, id: &str) {
        self.stamp_activity(owner, id);
    }

    fn endpoint<'a>(
        &'a self,
        owner: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Endpoint, ToolError>> {
        async move {
            let rs = self.owned(owner, id).await?;
            if !is_ready(&rs) {
                return Err(not_ready(&rs));
            }
            self.endpoint_of(&rs).await
        }
        .boxed()
    }

    fn list<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<Vec<BackendSession>, ToolError>> {
        async move {
            let selector = format!("{LABEL_OWNER}={}", owner_label_value(owner));
            let list = self
                .rsessions
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| api_error("list RSessions", &e))?;
            let out: Vec<BackendSession> = list
                .items
                .iter()
                .map(|rs| BackendSession {
                    session_id: rs.name_any(),
                    owner: owner.to_string(),
                    created_at: rs
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string())
                        .unwrap_or_default(),
                    ready: is_ready(rs),
                    phase: phase_of(rs).map(|p| p.as_str().to_string()),
                })
                .collect();
            Ok(out)
        }
        .boxed()
    }

    fn close<'a>(&'a self, owner: &'a str, id: &'a str) -> BoxFuture<'a, Result<(), ToolError>> {
        async move {
            self.owned(owner, id).await?;
            match self.rsessions.delete(id, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Err(not_found(id)),
                Err(e) => return Err(api_error("delete RSessions", &e)),
            }
            self.stamped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
            tracing::info!(session_id = id, "RSession deleted");
            Ok(())
        }
        .boxed()
    }

    fn workspace_cleanup(&self) -> WorkspaceCleanup {
        WorkspaceCleanup::ByBackend
    }

    fn outlives_server(&self) -> bool {
        true
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        async move {
            self.rsessions
                .list_metadata(&ListParams::default().limit(1))
                .await
                .is_ok()
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use rsession_api::RSessionStatus;

    fn with_status(status: RSessionStatus) -> RSession {
        let mut rs = RSession::new("rs-1", RSessionSpec::default());
        rs.status = Some(status);
        rs
    }

    fn ready_condition(status: &str) -> Condition {
        Condition {
            type_: CONDITION_READY.into(),
            status: status.into(),
            reason: "RserveReady".into(),
            message: String::new(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    #[test]
    fn owner_label_is_a_valid_distinct_label_value() {
        let a = owner_label_value("system:serviceaccount:team-a:agent");
        let b = owner_label_value("system:serviceaccount:team-a:agent2");
        assert_ne!(a, b);
        assert_eq!(a.len(), 50);
        assert!(a.len() <= 63);
        assert!(a.starts_with("u-"));
        assert!(a[2..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a, owner_label_value("system:serviceaccount:team-a:agent"));
    }

    #[test]
    fn ready_needs_the_condition_endpoint_and_secret() {
        let full = RSessionStatus {
            phase: Some(Phase::Ready),
            conditions: vec![ready_condition("True")],
            endpoint: Some("rs-1.ns.svc:6311".into()),
            credentials_secret: Some("rs-1-credentials".into()),
            ..RSessionStatus::default()
        };
        assert!(is_ready(&with_status(full.clone())));
        let mut no_endpoint = full.clone();
        no_endpoint.endpoint = None;
        assert!(!is_ready(&with_status(no_endpoint)));
        let mut false_condition = full.clone();
        false_condition.conditions = vec![ready_condition("False")];
        assert!(!is_ready(&with_status(false_condition)));
        assert!(!is_ready(&RSession::new("x", RSessionSpec::default())));
    }

    #[test]
    fn progress_follows_the_phase() {
        let starting = with_status(RSessionStatus {
            phase: Some(Phase::Starting),
            message: Some("pulling image".into()),
            ..RSessionStatus::default()
        });
        let (step, text) = progress_step(&starting);
        assert_eq!(step, 2.0);
        assert!(
            text.starts_with("Starting:") && text.contains("pulling image"),
            "{text}"
        );
        let (step, text) = progress_step(&RSession::new("x", RSessionSpec::default()));
        assert_eq!(step, 1.0);
        assert!(text.starts_with("Pending:"), "{text}");
    }

    #[test]
    fn failed_and_expired_sessions_are_terminal_with_codes() {
        let failed = with_status(RSessionStatus {
            phase: Some(Phase::Failed),
            message: Some("OOMKilled".into()),
            ..RSessionStatus::default()
        });
        let e = not_ready(&failed);
        assert_eq!(e.code, ErrorCode::BackendUnavailable);
        assert!(e.message.contains("OOMKilled"));
        let expired = with_status(RSessionStatus {
            phase: Some(Phase::Expired),
            ..RSessionStatus::default()
        });
        assert_eq!(not_ready(&expired).code, ErrorCode::SessionNotReady);
        let starting = with_status(RSessionStatus {
            phase: Some(Phase::Starting),
            ..RSessionStatus::default()
        });
        assert!(terminal_state(&starting).is_none());
        assert_eq!(not_ready(&starting).details["phase"], "Starting");
    }

    #[test]
    fn credentials_come_from_the_operator_keys() {
        let secret = Secret {
            data: Some(BTreeMap::from([
                ("username".to_string(), ByteString(b"rsession".to_vec())),
                ("password".to_string(), ByteString(b"pw".to_vec())),
            ])),
            ..Secret::default()
        };
        let c = credentials_from(&secret).expect("credentials");
        assert_eq!(c.username, "rsession");
        assert_eq!(c.password, "pw");
        assert!(credentials_from(&Secret::default()).is_none());
    }
}

/// Kubernetes API failures: how each kind maps to a tool error, a real client
/// against an apiserver that is not there, and activity stamps retried
/// through an outage against a fake apiserver.
#[cfg(test)]
mod outage_tests {
    use super::*;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{Method, StatusCode, Uri};
    use axum::response::IntoResponse;
    use kube::core::Status;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            Status::failure("the apiserver says no", "SomeReason")
                .with_code(code)
                .boxed(),
        )
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "simulated")
    }

    #[test]
    fn http_statuses_map_to_codes() {
        for (status, code) in [
            (403, ErrorCode::Forbidden),
            (404, ErrorCode::SessionNotFound),
            (400, ErrorCode::InvalidArgument),
            (422, ErrorCode::InvalidArgument),
            (401, ErrorCode::BackendUnavailable),
            (408, ErrorCode::BackendUnavailable),
            (409, ErrorCode::BackendUnavailable),
            (429, ErrorCode::BackendUnavailable),
            (500, ErrorCode::BackendUnavailable),
            (502, ErrorCode::BackendUnavailable),
            (503, ErrorCode::BackendUnavailable),
            (504, ErrorCode::BackendUnavailable),
            (418, ErrorCode::Internal),
        ] {
            assert_eq!(api_error_code(&api(status)), code, "HTTP {status}");
            let e = api_error("create RSessions", &api(status));
            assert_eq!(e.code, code, "HTTP {status}");
            assert_eq!(e.details["http_status"], status);
            assert!(e.message.contains("the apiserver says no"), "{}", e.message);
        }
        assert!(api_error("create RSessions", &api(503)).code.retryable());
        assert!(api_error("create RSessions", &api(429)).code.retryable());
        assert!(!api_error("create RSessions", &api(403)).code.retryable());
        assert!(!api_error("create RSessions", &api(404)).code.retryable());
    }

    #[test]
    fn transport_failures_are_backend_unavailable_and_retryable() {
        use std::io::ErrorKind::*;
        for kind in [ConnectionRefused, ConnectionReset, TimedOut, BrokenPipe] {
            let service = kube::Error::Service(Box::new(io(kind)));
            let e = api_error("create RSessions", &service);
            assert_eq!(e.code, ErrorCode::BackendUnavailable, "{kind:?}");
            assert!(e.code.retryable());
            assert!(
                e.message.contains("the Kubernetes API is unavailable")
                    && e.message.contains("Retry shortly"),
                "{}",
                e.message
            );
            assert_eq!(
                api_error_code(&kube::Error::ReadEvents(io(kind))),
                ErrorCode::BackendUnavailable
            );
        }
    }

    #[test]
    fn answers_that_retrying_cannot_fix_are_internal() {
        let serde = serde_json::from_str::<u8>("not json").unwrap_err();
        let utf8 = String::from_utf8(vec![0xff]).unwrap_err();
        let http = http::Request::builder()
            .method("not a method")
            .body(())
            .unwrap_err();
        for e in [
            kube::Error::SerdeError(serde),
            kube::Error::FromUtf8(utf8),
            kube::Error::HttpError(http),
            kube::Error::TlsRequired,
            kube::Error::LinesCodecMaxLineLengthExceeded,
        ] {
            let t = api_error("list RSessions", &e);
            assert_eq!(t.code, ErrorCode::Internal, "{e}");
            assert!(!t.code.retryable());
        }
    }

    /// A client for `http://127.0.0.1:<port>`.
    fn client_at(port: u16) -> Client {
        let url: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let mut config = kube::Config::new(url);
        config.connect_timeout = Some(Duration::from_secs(2));
        Client::try_from(config).expect("client")
    }

    /// A loopback port nothing listens on (bound, then released).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn create_and_list_while_the_apiserver_is_down_are_retryable_backend_unavailable() {
        let backend = KubernetesBackend::new(client_at(closed_port()), KubernetesConfig::new("ns"));
        let e = backend.create("alice", "rs-down").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
        assert_eq!(e.body()["retryable"], true);
        assert!(e.message.contains("create RSessions"), "{}", e.message);
        let e = backend.list("alice").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
        let e = backend.endpoint("alice", "rs-down").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
        assert!(!backend.ready().await);
    }

    /// A fake apiserver: PATCHes of RSessions fail with 500 while `failures`
    /// lasts, then succeed; every PATCH body is recorded.
    #[derive(Clone, Default)]
    struct FakeApi {
        failures: Arc<std::sync::atomic::AtomicUsize>,
        patches: Arc<Mutex<Vec<(u16, serde_json::Value)>>>,
        done: Arc<tokio::sync::Notify>,
    }

    async fn fake_handler(
        State(api): State<FakeApi>,
        method: Method,
        uri: Uri,
        body: Bytes,
    ) -> axum::response::Response {
        if method != Method::PATCH || !uri.path().contains("/rsessions/") {
            return (StatusCode::NOT_FOUND, "not faked").into_response();
        }
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let failing = api
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let status = if failing { 500 } else { 200 };
        api.patches.lock().unwrap().push((status, body.clone()));
        if failing {
            let s = Status::failure("etcd is unavailable", "InternalError").with_code(500);
            return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(s)).into_response();
        }
        api.done.notify_one();
        let mut rs = RSession::new("rs-1", RSessionSpec::default());
        rs.metadata.namespace = Some("ns".into());
        rs.metadata.annotations = body["metadata"]["annotations"].as_object().map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        });
        axum::Json(rs).into_response()
    }

    async fn fake_apiserver(api: FakeApi) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().fallback(fake_handler).with_state(api);
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    #[tokio::test]
    async fn a_failed_activity_stamp_is_retried_until_the_api_answers() {
        let api = FakeApi::default();
        api.failures.store(2, Ordering::SeqCst);
        let port = fake_apiserver(api.clone()).await;
        let mut config = KubernetesConfig::new("ns");
        config.activity_retry_delay = Duration::from_millis(20);
        let backend = KubernetesBackend::new(client_at(port), config);

        // Returns at once: the stamp is the background's business.
        backend.record_activity("alice", "rs-1");
        tokio::time::timeout(Duration::from_secs(20), api.done.notified())
            .await
            .expect("the stamp went through after the API recovered");
        let patches = api.patches.lock().unwrap().clone();
        let statuses: Vec<u16> = patches.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, vec![500, 500, 200]);
        // Every attempt carries the time of the evaluation, not of the retry.
        let stamp = |b: &serde_json::Value| {
            b["metadata"]["annotations"][wk::ANNOTATION_LAST_ACTIVITY]
                .as_str()
                .map(str::to_string)
        };
        assert!(stamp(&patches[0].1).is_some(), "{:?}", patches[0].1);
        assert!(
            patches
                .iter()
                .all(|(_, b)| stamp(b) == stamp(&patches[0].1))
        );
    }

    #[tokio::test]
    async fn a_retry_stops_once_the_session_is_closed_or_stamped_again() {
        let api = FakeApi::default();
        api.failures.store(usize::MAX, Ordering::SeqCst);
        let port = fake_apiserver(api.clone()).await;
        let mut config = KubernetesConfig::new("ns");
        config.activity_retry_delay = Duration::from_millis(10);
        config.activity_interval = Duration::ZERO;
        let backend = KubernetesBackend::new(client_at(port), config);
        let attempts = || api.patches.lock().unwrap().len();
        let retrying = || async {
            while attempts() < 2 {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };

        // Closed: what close_session does to the throttle, without its API calls.
        let task = backend
            .stamp_activity("alice", "rs-1")
            .expect("a stamp task");
        tokio::time::timeout(Duration::from_secs(10), retrying())
            .await
            .expect("retried");
        backend.stamped.lock().unwrap().remove("rs-1");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the retry ended after close although the API still fails")
            .expect("task");

        // Superseded by a newer stamp of the same session.
        api.patches.lock().unwrap().clear();
        let older = backend
            .stamp_activity("alice", "rs-2")
            .expect("a stamp task");
        tokio::time::timeout(Duration::from_secs(10), retrying())
            .await
            .expect("retried");
        let newer = backend
            .stamp_activity("alice", "rs-2")
            .expect("a newer stamp task");
        tokio::time::timeout(Duration::from_secs(10), older)
            .await
            .expect("the older retry ended once a newer stamp was sent")
            .expect("task");
        assert!(!newer.is_finished(), "the newest stamp keeps retrying");
        newer.abort();
    }
}
