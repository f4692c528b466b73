//! [`KubernetesBackend`]: sessions as RSession objects in one namespace.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSession};
use serde_json::json;
use tokio::time::Instant;

use super::activity::Activity;
use super::checkpoints::{Checkpoints, answer};
use super::early;
use super::errors::{api_error, is_not_found};
use super::events::Events;
use super::pools::{Plan, Pools, spec_for, start_of};
use super::session_watch::SessionWatch;
use super::status::{idled_out, not_ready, progress_step, terminal_state};
use super::{
    ANNOTATION_OWNER_NAME, FIELD_MANAGER, KubernetesConfig, LABEL_OWNER, PROGRESS_TOTAL,
    owner_label_value,
};
use crate::errors::{ErrorCode, ToolError};
use crate::session::{
    Backend, BackendSession, CheckpointRequest, Created, Credentials, Endpoint, PoolRequest,
    Progress, WorkspaceCleanup,
};
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a wait for Ready waits for a newly started shared watch's first list before
/// watching its RSession on its own.
const SESSION_WATCH_FIRST_LIST: std::time::Duration = std::time::Duration::from_secs(5);

/// Sessions as RSession objects in one namespace.
pub struct KubernetesBackend {
    rsessions: Api<RSession>,
    secrets: Api<Secret>,
    config: KubernetesConfig,
    /// Activity stamps (`rsession.dev/last-activity`).
    pub(super) activity: Activity,
    /// Events on the RSessions: who created, closed or resumed them.
    events: Events,
    /// RSessionPool lookups before a create.
    pub(super) pools: Pools,
    /// The checkpoint watch, started when the session manager asks for its
    /// requests ([`Backend::checkpoint_requests`]).
    checkpoints: std::sync::OnceLock<std::sync::Arc<Checkpoints>>,
    /// The shared watch of MCP-created RSessions that waits for Ready read from
    /// ([`Self::with_session_watch`]); `None`: each wait watches its own RSession.
    sessions: Option<SessionWatch>,
    /// Set once a LIST of RSessions has succeeded ([`Backend::ready`]).
    reached_api: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubernetesBackend {
    /// A backend creating RSessions in `config.namespace` with `client`.
    pub fn new(client: Client, config: KubernetesConfig) -> Self {
        let rsessions = Api::namespaced(client.clone(), &config.namespace);
        KubernetesBackend {
            activity: Activity::new(rsessions.clone(), &config),
            rsessions,
            events: Events::new(client.clone(), &config.namespace),
            pools: Pools::new(
                Api::namespaced(client.clone(), &config.namespace),
                &config.namespace,
                config.default_pool.clone(),
                &config.spec,
            ),
            secrets: Api::namespaced(client, &config.namespace),
            config,
            checkpoints: std::sync::OnceLock::new(),
            sessions: None,
            reached_api: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This backend waiting for sessions to be usable through one shared watch of its
    /// MCP-created RSessions rather than a LIST and a WATCH per wait (`session_watch.rs`;
    /// falls back to those while the shared watch is not in sync). Must run inside a Tokio
    /// runtime.
    pub fn with_session_watch(mut self) -> Self {
        self.sessions = Some(SessionWatch::start(
            self.rsessions.clone(),
            &self.config.namespace,
        ));
        self
    }

    /// This backend with RSessionPools read from a watch-fed cache rather than a GET per
    /// `create_session` (needs `list` and `watch` on rsessionpools; falls back to the GET).
    /// Must run inside a Tokio runtime.
    pub fn with_pool_watch(mut self) -> Self {
        self.pools.watch();
        self
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
            .ok_or_else(|| ToolError::session_not_found(id))?;
        if rs.labels().get(LABEL_OWNER) != Some(&owner_label_value(owner)) {
            return Err(ToolError::session_not_found(id));
        }
        Ok(rs)
    }

    /// Endpoint and login of a Ready RSession.
    async fn endpoint_of(&self, rs: &RSession) -> Result<Endpoint, ToolError> {
        let status = rs.status.as_ref().ok_or_else(|| not_ready(rs))?;
        let (Some(addr), Some(secret_name)) = (&status.endpoint, &status.credentials_secret) else {
            return Err(not_ready(rs));
        };
        Ok(Endpoint {
            addr: addr.clone(),
            credentials: Some(self.credentials(rs, secret_name).await?),
            workspace: self.config.workspace.clone(),
        })
    }

    /// The Rserve login in `rs`'s credentials Secret `secret_name`.
    async fn credentials(
        &self,
        rs: &RSession,
        secret_name: &str,
    ) -> Result<Credentials, ToolError> {
        let id = rs.name_any();
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
        credentials_from(&secret).ok_or_else(|| {
            ToolError::internal(format!(
                "the credentials Secret {secret_name} lacks the keys {} and {}",
                wk::SECRET_KEY_USERNAME,
                wk::SECRET_KEY_PASSWORD
            ))
        })
    }

    /// Where a Starting RSession's Rserve will answer, once it logs in ([`early::first_login`]
    /// at `status.podIP`); `None` when its status names no pod IP or Secret yet, or when the
    /// login fails other than by not listening yet (then Ready is awaited as usual).
    async fn answers_before_ready(&self, rs: &RSession) -> Option<Endpoint> {
        let status = rs.status.as_ref()?;
        let ip: std::net::IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
        let secret_name = status.credentials_secret.as_deref()?;
        let credentials = self.credentials(rs, secret_name).await.ok()?;
        let addr = std::net::SocketAddr::new(ip, self.config.rserve_port).to_string();
        match early::first_login(&addr, &credentials).await {
            Ok(()) => Some(Endpoint {
                addr,
                credentials: Some(credentials),
                workspace: self.config.workspace.clone(),
            }),
            Err(e) => {
                tracing::debug!(session_id = %rs.name_any(), %addr, error = %e, "no login before Ready; waiting for the readiness probe");
                None
            }
        }
    }

    /// The RSession of a new session `id` of `owner`, from `pool` if any
    /// ([`spec_for`]).
    pub(super) fn new_rsession(&self, owner: &str, id: &str, pool: Option<&str>) -> RSession {
        let mut rs = RSession::new(id, spec_for(&self.config.spec, pool));
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

    /// Bring back a session whose pod ended for idleness (phase Expired by
    /// IdleTimeout, or Checkpointing on the way there): a fresh activity
    /// stamp makes the operator start a new pod; wait until it is Ready.
    async fn revive(&self, owner: &str, id: &str) -> Result<Endpoint, ToolError> {
        tracing::info!(
            session_id = id,
            "resuming a session that idled out: stamping activity and waiting for its new pod"
        );
        self.activity
            .stamp_now(owner, id)
            .await
            .map_err(|e| ToolError::internal(format!("activity stamp task failed: {e}")))?;
        self.await_usable_or_revived(id, &Progress::none(), true)
            .await
            .map(|(_, endpoint)| endpoint)
    }

    /// Watch `id` until it is usable, reporting phase changes; bounded by the ready timeout.
    async fn await_usable(
        &self,
        id: &str,
        progress: &Progress,
    ) -> Result<(RSession, Endpoint), ToolError> {
        self.await_usable_or_revived(id, progress, false).await
    }

    /// [`Self::await_usable`]: until Ready, or until its Rserve accepted a login while Starting
    /// (whichever comes first); returns the RSession as last seen and where to connect.
    /// `reviving`: an Expired or Checkpointing phase is a step on the way back (the operator has
    /// not seen the new activity yet), not the end.
    async fn await_usable_or_revived(
        &self,
        id: &str,
        progress: &Progress,
        reviving: bool,
    ) -> Result<(RSession, Endpoint), ToolError> {
        let mut last_step: Option<String> = None;
        let mut last_seen: Option<RSession> = None;
        // The login attempt at the pod IP of the Starting session, restarted when the IP changes.
        let mut early: std::pin::Pin<Box<dyn Future<Output = Option<Endpoint>> + Send + '_>> =
            Box::pin(std::future::pending());
        let mut early_ip: Option<String> = None;
        let shared = match &self.sessions {
            Some(w) if w.in_sync(SESSION_WATCH_FIRST_LIST).await => Some(w),
            _ => None,
        };
        let mut watch: std::pin::Pin<Box<dyn futures::Stream<Item = _> + Send>> = match shared {
            Some(shared) => Box::pin(shared.object(id)),
            // With backoff, so an unreachable apiserver is retried calmly rather
            // than in a busy loop until the deadline.
            None => Box::pin(
                kube::runtime::watcher::watch_object(self.rsessions.clone(), id).default_backoff(),
            ),
        };
        let deadline = Instant::now() + self.config.ready_timeout;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(deadline, watch.next()) => next,
                answered = &mut early => {
                    early = Box::pin(std::future::pending());
                    match (answered, &last_seen) {
                        (Some(endpoint), Some(rs)) => {
                            tracing::info!(session_id = id, addr = %endpoint.addr, "Rserve answered before the pod turned Ready");
                            return Ok((rs.clone(), endpoint));
                        }
                        _ => continue,
                    }
                }
            };
            let next = match next {
                Ok(next) => next,
                Err(_) => {
                    let phase = last_seen
                        .as_ref()
                        .and_then(RSession::phase)
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
                    if rs.is_ready() {
                        let endpoint = self.endpoint_of(&rs).await?;
                        return Ok((rs, endpoint));
                    }
                    let on_the_way_back = reviving && idled_out(&rs);
                    if let Some(e) = terminal_state(&rs).filter(|_| !on_the_way_back) {
                        return Err(e);
                    }
                    let pod_ip = rs.status.as_ref().and_then(|s| s.pod_ip.clone());
                    if rs.phase() == Some(Phase::Starting)
                        && logs_in_before_ready(&rs)
                        && pod_ip.is_some()
                        && pod_ip != early_ip
                    {
                        early_ip = pod_ip;
                        let starting = rs.clone();
                        early = Box::pin(async move { self.answers_before_ready(&starting).await });
                    }
                    last_seen = Some(rs);
                }
            }
        }
    }
}

/// Whether a Starting `rs` may be used as soon as its Rserve accepts a login. Not with a
/// database (or a pool, whose template may have one): R can start before the database proxy
/// sidecar is ready, and the pod's Ready, which waits for both, is what says the `cdm` handle
/// set up at connect time can reach the database.
fn logs_in_before_ready(rs: &RSession) -> bool {
    rs.spec.database.is_none() && rs.spec.pool_ref.is_none()
}

/// The progress words naming the pool of `plan`, e.g. `", from pool warm (3 Ready)"`.
fn from_pool(plan: &Plan) -> String {
    match (&plan.pool, plan.ready_replicas) {
        (Some(pool), Some(ready)) => format!(", from pool {pool} ({ready} Ready)"),
        (Some(pool), None) => format!(", from pool {pool}"),
        (None, _) => String::new(),
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

#[async_trait]
impl Backend for KubernetesBackend {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    async fn create(
        &self,
        owner: &str,
        id: &str,
        pool: &PoolRequest,
        progress: &Progress,
    ) -> Result<Created, ToolError> {
        // Time to Ready counts from here: the pool lookup, the apply, the
        // operator's bind or pod start, up to the watch event showing Ready.
        let started = Instant::now();
        let plan = self.pools.resolve(pool, &self.config.spec).await?;
        let rs = self.new_rsession(owner, id, plan.pool.as_deref());
        let rs = self
            .rsessions
            .patch(id, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&rs))
            .await
            .map_err(|e| api_error("create RSessions", &e))?;
        tracing::info!(session_id = id, namespace = %self.config.namespace, "RSession applied");
        self.events
            .publish(&rs, "Created", format!("created through MCP for {owner}"));
        progress
            .report(
                0.0,
                Some(PROGRESS_TOTAL),
                format!(
                    "Submitted RSession {id} in namespace {}{}",
                    self.config.namespace,
                    from_pool(&plan)
                ),
            )
            .await;
        let (rs, endpoint) = self.await_usable(id, progress).await?;
        let start = start_of(&rs, &plan, started.elapsed());
        tracing::info!(
            session_id = id,
            warm = start.warm,
            pool = start.pool.as_deref(),
            pod = start.pod_name.as_deref(),
            ready_ms = start.ready_ms,
            "RSession Ready"
        );
        Ok(Created { endpoint, start })
    }

    fn pools(&self) -> bool {
        true
    }

    fn record_activity(&self, owner: &str, id: &str) {
        self.activity.stamp(owner, id);
    }

    async fn endpoint(&self, owner: &str, id: &str) -> Result<Endpoint, ToolError> {
        let rs = self.owned(owner, id).await?;
        if rs.is_ready() {
            return self.endpoint_of(&rs).await;
        }
        if idled_out(&rs) {
            self.events.publish(
                &rs,
                "Resuming",
                format!("a call through MCP by {owner} brings the idle session back"),
            );
            return self.revive(owner, id).await;
        }
        Err(not_ready(&rs))
    }

    async fn list(&self, owner: &str) -> Result<Vec<BackendSession>, ToolError> {
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
                ready: rs.is_ready(),
                phase: rs.phase().map(|p| p.as_str().to_string()),
            })
            .collect();
        Ok(out)
    }

    async fn close(&self, owner: &str, id: &str) -> Result<(), ToolError> {
        let rs = self.owned(owner, id).await?;
        self.events
            .publish(&rs, "Closed", format!("closed through MCP by {owner}"));
        match self.rsessions.delete(id, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Err(ToolError::session_not_found(id)),
            Err(e) => return Err(api_error("delete RSessions", &e)),
        }
        self.activity.forget(id);
        tracing::info!(session_id = id, "RSession deleted");
        Ok(())
    }

    fn workspace_cleanup(&self) -> WorkspaceCleanup {
        WorkspaceCleanup::ByBackend
    }

    fn outlives_server(&self) -> bool {
        true
    }

    fn checkpoint_requests(&self) -> Option<UnboundedReceiver<CheckpointRequest>> {
        self.checkpoints
            .get_or_init(|| Checkpoints::start(self.rsessions.clone()))
            .take_requests()
    }

    async fn answer_checkpoint(&self, request: &CheckpointRequest, report: &str) {
        answer(&self.rsessions, request, report).await;
    }

    fn checkpoint_interval(&self, id: &str) -> Option<std::time::Duration> {
        self.checkpoints.get()?.interval(id)
    }

    fn restores_after_loss(&self) -> bool {
        true
    }

    fn endpoint_moves(&self) -> bool {
        true
    }

    /// Ready from the first successful LIST of RSessions on, and then for good.
    ///
    /// Why sticky: the API server is shared by every replica. Failing `/readyz` while it is
    /// down takes every frontend out of its Service at once, and when it is back the kubelet's
    /// NotReady status removes the endpoints until the next probes pass. During that time the
    /// sessions that need no API call (their credentials and the caller's authorization are
    /// cached) would answer nothing, and `create_session` could not say `backend_unavailable`.
    /// The first LIST still holds a new frontend (wrong RBAC, unreachable API) out of a rollout.
    async fn ready(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.reached_api.load(Ordering::Relaxed) {
            return true;
        }
        let ok = self
            .rsessions
            .list_metadata(&ListParams::default().limit(1))
            .await
            .is_ok();
        if ok {
            self.reached_api.store(true, Ordering::Relaxed);
        }
        ok
    }
}
