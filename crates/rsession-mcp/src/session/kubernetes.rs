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
//!   fields the create apply owns).
//!
//! Kubernetes API calls: `rsessions` patch (apply), get, list, watch, delete;
//! `secrets` get — the verbs the chart's `rsession-mcp` Role grants.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
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
    /// Spec of new RSessions (empty: the operator's defaults).
    pub spec: RSessionSpec,
}

impl KubernetesConfig {
    /// Defaults for `namespace`: 120 s ready timeout, `/workspace`, stamps at
    /// most every 10 s, default spec.
    pub fn new(namespace: impl Into<String>) -> Self {
        KubernetesConfig {
            namespace: namespace.into(),
            ready_timeout: Duration::from_secs(120),
            workspace: wk::WORKSPACE_PATH.to_string(),
            activity_interval: Duration::from_secs(10),
            spec: RSessionSpec::default(),
        }
    }
}

/// Sessions as RSession objects in one namespace.
pub struct KubernetesBackend {
    rsessions: Api<RSession>,
    secrets: Api<Secret>,
    config: KubernetesConfig,
    /// When each session was last stamped (throttle), by session id.
    stamped: Arc<Mutex<HashMap<String, Instant>>>,
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

/// Map an API failure to a tool error (`backend_unavailable`, or `forbidden`
/// when this server's own service account lacks a right).
fn api_error(what: &str, e: &kube::Error) -> ToolError {
    match e {
        kube::Error::Api(s) if s.code == 403 => ToolError::new(
            ErrorCode::Forbidden,
            format!(
                "the MCP server's service account may not {what}: {}",
                s.message
            ),
        ),
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => ToolError::invalid(format!(
            "the Kubernetes API refused to {what}: {}",
            s.message
        )),
        _ => ToolError::new(
            ErrorCode::BackendUnavailable,
            format!("the Kubernetes API failed to {what}: {e}"),
        ),
    }
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

    /// Watch `id` until Ready, reporting phase changes; bounded by the ready timeout.
    async fn await_ready(&self, id: &str, progress: &Progress) -> Result<RSession, ToolError> {
        let mut last_step: Option<String> = None;
        let mut last_seen: Option<RSession> = None;
        let watch = kube::runtime::watcher::watch_object(self.rsessions.clone(), id);
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
        let now = Instant::now();
        {
            let mut stamped = self.stamped.lock().unwrap_or_else(|p| p.into_inner());
            if stamped
                .get(id)
                .is_some_and(|t| now.duration_since(*t) < self.config.activity_interval)
            {
                return;
            }
            stamped.insert(id.to_string(), now);
        }
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
        let id = id.to_string();
        let owner = owner.to_string();
        tokio::spawn(async move {
            let params = PatchParams::apply(ACTIVITY_FIELD_MANAGER).force();
            if let Err(e) = api.patch(&id, &params, &Patch::Apply(&body)).await {
                tracing::warn!(session_id = %id, owner = %owner, error = %e, "stamping rsession.dev/last-activity failed");
            }
        });
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
