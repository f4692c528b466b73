//! Support for the `kubernetes` backend tests against a REAL kube-apiserver
//! (rsession-testenv: etcd + kube-apiserver + kube-controller-manager, RBAC on).
//!
//! There is no kubelet in that control plane, so no session pod can run.
//! [`StandIn`] therefore plays only the part the kubelet and the operator's
//! pod handling would play: for every RSession it starts a real local Rserve
//! (`rserve::testing`, with a generated password), writes the credentials
//! Secret in the operator's key layout (`username`, `password`, `rserve.pwd`),
//! and sets `status` Pending → Starting → Ready with `endpoint
//! 127.0.0.1:<port>` through the status subresource (for an RSession with
//! `spec.poolRef`, with a warm `status.claim` as the operator writes it). Everything the MCP
//! frontend does — server-side apply, watch, Secret read, QAP1, activity
//! stamps, TokenReview, SubjectAccessReview, RBAC, deletion — is real. The
//! real operator + kubelet path is covered by the node e2e suite (`e2e/`).
//!
//! [`Frontend`] is the `rsession-mcp` binary itself (`main.rs` → `App::start` → HTTP with the
//! auth layer), configured through `KUBECONFIG` and the `RSESSION_*` variables the Helm chart
//! sets, acting as the `rsession-mcp` service account. The MCP client helpers come from
//! `rsession-testkit`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use rand::distr::Alphanumeric;
use rserve::testing::{FixtureConfig, RserveFixture};
use rsession_api::well_known as wk;
use rsession_api::{ClaimStatus, Phase, RSession, RSessionStatus};
use rsession_testenv::{ControlPlane, apply_yaml};
use rsession_testkit::mcp;
use rsession_testkit::status::{ReadyStatus, StatusApply};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)] // each test binary uses a subset
pub use rsession_testkit::mcp::{
    error_code, expect_call as call, service_account_token, service_account_user, structured, text,
};

/// Field manager of the stand-in's writes.
const STANDIN_MANAGER: &str = "test-kubelet-stand-in";

/// The shared control plane with the committed RSession CRD installed.
pub async fn control_plane() -> &'static ControlPlane {
    rsession_testkit::control_plane("warn,rsession_mcp=info").await
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
    let body = StatusApply::new(status);
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

    ReadyStatus::new(fixture.addr().to_string(), secret_name)
        .observed_generation(generation)
        .condition_message("stand-in Rserve listens")
        .apply_to(&mut status);
    // A session naming a pool is bound warm to a made-up pool pod, as the operator's claim
    // reports it.
    status.claim = rs.spec.pool_ref.as_ref().map(|pool| ClaimStatus {
        pool: pool.name.clone(),
        warm: true,
        pod_name: Some(format!("{}-stand", pool.name)),
        ..ClaimStatus::default()
    });
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
- apiGroups: [rsession.dev]
  resources: [rsessionpools]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
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

/// Path of the built server binary.
pub fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rsession-mcp")
}

/// Spawns `command` (the server with `RSESSION_TRANSPORT=http`) with stderr piped, and
/// returns once it logs that it serves HTTP; its later log lines are drained.
pub async fn spawn_http_server(mut command: tokio::process::Command) -> tokio::process::Child {
    let mut server = command
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rsession-mcp");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .expect("read stderr")
            .expect("rsession-mcp exited before serving");
        if line.contains("serving MCP over streamable HTTP") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    server
}

/// The MCP frontend as the chart runs it: the `rsession-mcp` binary with the kubernetes
/// backend and bearer-token auth over HTTP on loopback, its backend and reviews running as
/// the `rsession-mcp` service account (a kubeconfig that impersonates it).
pub struct Frontend {
    /// The streamable-HTTP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    server: tokio::process::Child,
}

impl Frontend {
    /// Starts the frontend for sessions in `ns` with workspaces under `workspace`
    /// (Ready within 60 s, interrupt grace 1 s).
    pub async fn start(cp: &ControlPlane, ns: &str, workspace: &str) -> Frontend {
        let kubeconfig = service_account_kubeconfig(cp, ns, "rsession-mcp");
        let port = rserve::testing::free_port().expect("free port");
        let mut command = tokio::process::Command::new(server_bin());
        command
            .env("KUBECONFIG", &kubeconfig)
            .env("RSESSION_TRANSPORT", "http")
            .env("RSESSION_LISTEN", format!("127.0.0.1:{port}"))
            .env("RSESSION_BACKEND", "kubernetes")
            .env("RSESSION_NAMESPACE", ns)
            .env("RSESSION_WORKSPACE_ROOT", workspace)
            .env("RSESSION_READY_TIMEOUT_SECS", "60")
            .env("RSESSION_INTERRUPT_GRACE_SECS", "1")
            .env("RSESSION_LOG", "info");
        let server = spawn_http_server(command).await;
        Frontend {
            url: format!("http://127.0.0.1:{port}/mcp"),
            server,
        }
    }

    /// Stops the process with SIGTERM and waits for it (the RSession objects stay).
    pub async fn stop(mut self) {
        let pid = self.server.id().expect("pid").to_string();
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.server.wait()).await;
    }
}

/// Writes a copy of the admin kubeconfig that impersonates service account `ns/name` (user
/// and groups as the apiserver's service-account authenticator assigns them) into the
/// control plane's folder, and returns its path.
fn service_account_kubeconfig(cp: &ControlPlane, ns: &str, name: &str) -> std::path::PathBuf {
    let mut config =
        kube::config::Kubeconfig::read_from(cp.kubeconfig_path()).expect("admin kubeconfig");
    for named in &mut config.auth_infos {
        if let Some(info) = named.auth_info.as_mut() {
            info.impersonate = Some(service_account_user(ns, name));
            info.impersonate_groups = Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]);
        }
    }
    let path = cp.dir().join(format!("{ns}-{name}.kubeconfig"));
    write_json(&path, &config);
    path
}

fn write_json(path: &Path, value: &impl serde::Serialize) {
    // JSON is YAML, which is what kubeconfig readers parse.
    std::fs::write(path, serde_json::to_vec(value).expect("kubeconfig JSON"))
        .expect("write kubeconfig");
}

pub type Client_ = mcp::Client;

/// A real rmcp client over streamable HTTP with `token` as bearer token.
pub async fn connect(url: &str, token: Option<&str>) -> Result<Client_, mcp::Error> {
    mcp::connect_http(url, token).await
}
