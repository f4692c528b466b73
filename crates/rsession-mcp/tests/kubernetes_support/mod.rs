//! Support for the `kubernetes` backend tests against a REAL kube-apiserver
//! (rsession-testenv: etcd + kube-apiserver + kube-controller-manager, RBAC on).
//!
//! There is no kubelet in that control plane, so no session pod can run.
//! [`StandIn`] therefore plays only the part the kubelet and the operator's
//! pod handling would play: for every RSession it starts a real local Rserve
//! (`rserve::testing`, with a generated password), writes the credentials
//! Secret in the operator's key layout (`username`, `password`, `rserve.pwd`),
//! and sets `status` Pending → Starting → Ready with `endpoint
//! 127.0.0.1:<port>` through the status subresource. Everything the MCP
//! frontend does — server-side apply, watch, Secret read, QAP1, activity
//! stamps, TokenReview, SubjectAccessReview, RBAC, deletion — is real. The
//! real operator + kubelet path is covered by the node e2e suite (`e2e/`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use rand::distr::Alphanumeric;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ContentBlock, ProgressNotificationParam,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use rserve::testing::{FixtureConfig, RserveFixture};
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSession, RSessionStatus};
use rsession_mcp::auth::{KubeAuth, KubeAuthConfig};
use rsession_mcp::metrics::Metrics;
use rsession_mcp::session::kubernetes::{KubernetesBackend, KubernetesConfig};
use rsession_mcp::session::{ManagerConfig, SessionManager};
use rsession_testenv::{ControlPlane, apply_yaml};
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Field manager of the stand-in's writes.
const STANDIN_MANAGER: &str = "test-kubelet-stand-in";

/// The shared control plane with the committed RSession CRD installed.
pub async fn control_plane() -> &'static ControlPlane {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rsession_mcp=info".into()),
        )
        .try_init();
    ControlPlane::shared_with_crds()
        .await
        .expect("control plane with the RSession CRD")
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusApply<'a> {
    api_version: &'static str,
    kind: &'static str,
    status: &'a RSessionStatus,
}

/// Stands in for the kubelet (see the module docs): real Rserve per RSession.
pub struct StandIn {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    /// Rserve per session name; dropping one kills that Rserve.
    pub rserves: Arc<Mutex<HashMap<String, RserveFixture>>>,
}

impl StandIn {
    /// Start watching RSessions in `ns` with the admin `client`.
    pub fn start(client: Client, ns: &str) -> StandIn {
        let shutdown = CancellationToken::new();
        let rserves: Arc<Mutex<HashMap<String, RserveFixture>>> = Arc::default();
        let api: Api<RSession> = Api::namespaced(client.clone(), ns);
        let secrets: Api<Secret> = Api::namespaced(client, ns);
        let stop = shutdown.clone();
        let held = rserves.clone();
        let task = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher::watcher(api.clone(), watcher::Config::default()));
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => return,
                    e = events.next() => e,
                };
                match event {
                    None => return,
                    Some(Ok(Event::Apply(rs) | Event::InitApply(rs))) => {
                        let name = rs.name_any();
                        let known = held.lock().unwrap().contains_key(&name);
                        if !known && rs.metadata.deletion_timestamp.is_none() {
                            let fixture = start_session(&api, &secrets, &rs).await;
                            held.lock().unwrap().insert(name, fixture);
                        }
                    }
                    Some(Ok(Event::Delete(rs))) => {
                        held.lock().unwrap().remove(&rs.name_any());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "stand-in watch"),
                }
            }
        });
        StandIn {
            shutdown,
            task,
            rserves,
        }
    }

    /// Stop watching and kill every Rserve.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        self.rserves.lock().unwrap().clear();
    }
}

async fn set_status(api: &Api<RSession>, name: &str, status: &RSessionStatus) {
    let body = StatusApply {
        api_version: "rsession.dev/v1alpha1",
        kind: "RSession",
        status,
    };
    api.patch_status(
        name,
        &PatchParams::apply(STANDIN_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .expect("stand-in status apply");
}

/// Pending → Starting → (real Rserve, credentials Secret) → Ready.
async fn start_session(api: &Api<RSession>, secrets: &Api<Secret>, rs: &RSession) -> RserveFixture {
    let name = rs.name_any();
    let generation = rs.metadata.generation;
    let mut status = RSessionStatus {
        phase: Some(Phase::Pending),
        observed_generation: generation,
        message: Some("stand-in: creating the session".into()),
        ..RSessionStatus::default()
    };
    set_status(api, &name, &status).await;
    status.phase = Some(Phase::Starting);
    status.message = Some("stand-in: Rserve is starting".into());
    set_status(api, &name, &status).await;

    let password: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let config = FixtureConfig {
        username: "rsession".into(),
        password: password.clone(),
        ..FixtureConfig::default()
    };
    let fixture = tokio::task::spawn_blocking(move || RserveFixture::start_with(config))
        .await
        .expect("join")
        .expect("real Rserve starts (needs r-base-core and r-cran-rserve)");

    let secret_name = format!("{name}-credentials");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.clone()),
            owner_references: Some(vec![rs.controller_owner_ref(&()).expect("owner ref")]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (
                wk::SECRET_KEY_USERNAME.to_string(),
                ByteString(b"rsession".to_vec()),
            ),
            (
                wk::SECRET_KEY_PASSWORD.to_string(),
                ByteString(password.clone().into_bytes()),
            ),
            (
                wk::SECRET_KEY_PASSWORD_FILE.to_string(),
                ByteString(format!("rsession {password}\n").into_bytes()),
            ),
        ])),
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("stand-in credentials Secret");

    status.phase = Some(Phase::Ready);
    status.message = Some("Rserve accepts connections".into());
    status.endpoint = Some(fixture.addr().to_string());
    status.credentials_secret = Some(secret_name);
    status.conditions = vec![Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "RserveReady".into(),
        message: "stand-in Rserve listens".into(),
        last_transition_time: Time(jiff::Timestamp::now().round(jiff::Unit::Second).unwrap()),
        observed_generation: generation,
    }];
    set_status(api, &name, &status).await;
    fixture
}

/// RBAC of the frontend's service account, as the chart grants it (Role in the
/// sessions namespace + `system:auth-delegator` for the reviews), plus caller
/// identities: `alice` (create/get/list/delete), `bob` (get/list/delete, no
/// create), `carol` (nothing).
pub async fn setup_identities(client: &Client, ns: &str) {
    let yaml = format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: rsession-mcp}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: rsession-mcp}}
rules:
- apiGroups: [rsession.dev]
  resources: [rsessions]
  verbs: [create, get, list, watch, delete, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: rsession-mcp}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: rsession-mcp}}
subjects: [{{kind: ServiceAccount, name: rsession-mcp, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-mcp-auth}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}}
subjects: [{{kind: ServiceAccount, name: rsession-mcp, namespace: {ns}}}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: alice}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: bob}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: carol}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: session-user}}
rules:
- apiGroups: [rsession.dev]
  resources: [rsessions]
  verbs: [create, get, list, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: session-viewer}}
rules:
- apiGroups: [rsession.dev]
  resources: [rsessions]
  verbs: [get, list, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: alice}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: session-user}}
subjects: [{{kind: ServiceAccount, name: alice, namespace: {ns}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: bob}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: session-viewer}}
subjects: [{{kind: ServiceAccount, name: bob, namespace: {ns}}}]
"#
    );
    apply_yaml(client, &yaml, Some(ns))
        .await
        .expect("apply RBAC");
}

/// Remove the cluster-scoped binding [`setup_identities`] made.
pub async fn teardown_identities(client: &Client, ns: &str) {
    let api: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    let _ = api
        .delete(&format!("{ns}-mcp-auth"), &Default::default())
        .await;
}

/// A real service-account token of `ns/name` from the TokenRequest API
/// (audience: the apiserver's own).
pub async fn token_for(client: &Client, ns: &str, name: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token status")
        .token
}

/// The user name the apiserver gives service account `ns/name`.
pub fn sa_user(ns: &str, name: &str) -> String {
    format!("system:serviceaccount:{ns}:{name}")
}

/// The MCP frontend, in-process: the kubernetes backend and the reviews run
/// as the `rsession-mcp` service account (impersonated), HTTP on loopback
/// with the same router and auth layer as `rsession-mcp --transport http`.
pub struct Frontend {
    pub url: String,
    pub manager: Arc<SessionManager>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Frontend {
    pub async fn start(cp: &ControlPlane, ns: &str, workspace: &str) -> Frontend {
        let client = cp
            .impersonate_service_account(ns, "rsession-mcp")
            .expect("frontend client");
        let mut config = KubernetesConfig::new(ns);
        config.workspace = workspace.to_string();
        config.ready_timeout = Duration::from_secs(60);
        let backend = KubernetesBackend::new(client.clone(), config);
        let metrics = Arc::new(Metrics::new());
        let mut manager_config = ManagerConfig::default();
        manager_config.limits.grace = Duration::from_secs(1);
        let manager = Arc::new(SessionManager::new(
            Arc::new(backend),
            manager_config,
            metrics.clone(),
        ));
        let auth = Arc::new(KubeAuth::new(client, KubeAuthConfig::new(ns)));
        let cancel = CancellationToken::new();
        let router = rsession_mcp::auth::layer(
            rsession_mcp::http::router(manager.clone(), metrics, &[], cancel.clone()),
            auth,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Frontend {
            url: format!("http://{addr}/mcp"),
            manager,
            cancel,
            task,
        }
    }

    /// Stop serving and drop this frontend's state (like a process exit; the
    /// RSession objects stay).
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// An MCP client that records progress notifications.
#[derive(Clone, Default)]
pub struct Recorder {
    pub progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::default()
    }
}

pub type Client_ = RunningService<RoleClient, Recorder>;

/// A real rmcp client over streamable HTTP with `token` as bearer token.
pub async fn connect(url: &str, token: Option<&str>) -> Result<Client_, String> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(t) = token {
        config = config.auth_header(t.to_string());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    Recorder::default()
        .serve(transport)
        .await
        .map_err(|e| e.to_string())
}

/// Call `tool` with `args`. (The rmcp client puts a progress token of its
/// own into every request's `_meta`, so progress notifications always flow.)
pub async fn call(client: &Client_, tool: &str, args: Value) -> CallToolResult {
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("{tool} call failed at the protocol level: {e}"))
}

/// The text content of a result, joined.
pub fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The structured content (tool errors carry `{code, ...}` there).
pub fn structured(r: &CallToolResult) -> Value {
    r.structured_content.clone().unwrap_or(Value::Null)
}

/// The error code of a failed call, or `None` when it succeeded.
pub fn error_code(r: &CallToolResult) -> Option<String> {
    (r.is_error == Some(true)).then(|| structured(r)["code"].as_str().unwrap_or("?").to_string())
}
