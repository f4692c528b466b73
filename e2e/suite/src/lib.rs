//! Helpers for the RSession end-to-end suite (`tests/`), which runs against the cluster that
//! `KUBECONFIG` names with the Helm chart `charts/rsession` installed (see `e2e/run-e2e.sh`).
//!
//! Every wait watches a condition (kube `await_condition`, rmcp responses) under a deadline,
//! or polls one (files under `/proc` and `/sys/fs/cgroup`, which cannot be watched) under a
//! deadline and a bounded number of attempts; nothing sleeps for a fixed time. Configuration
//! comes from environment variables set by `e2e/run-e2e.sh`:
//!
//! - `RSESSION_E2E_SESSIONS_NS`: the chart's `sessions.namespace` (the frontend creates there).
//! - `RSESSION_E2E_SYSTEM_NS`: the release namespace (operator and MCP frontend pods).
//! - `RSESSION_E2E_MCP_ADDR`: `ClusterIP:port` of the frontend's Service, reachable from the
//!   node through kube-proxy. The suite talks to it through a loopback forwarder of its own
//!   ([`mcp_url`]), so the `Host` header is `127.0.0.1`, which the frontend accepts, and a
//!   restarted frontend pod is reached again without restarting anything.
//!   `RSESSION_E2E_MCP_URL`, when set, is used instead (any URL the frontend accepts).
//! - `RSESSION_E2E_USER_CLUSTERROLE`: the chart's `<release>-rsession-user` ClusterRole.
//! - `RSESSION_E2E_PG_*` (HOST, PORT, DB, USER, PASSWORD, SCHEMA): the synthetic OMOP CDM for
//!   the database tests (`e2e/local/omop-postgres.sh` prints them).
//! - `RSESSION_E2E_COMPONENT_CTL`: `e2e/local/component.sh` (`stop|start|restart <component>`,
//!   returning when the component is stopped or healthy), for the fault tests.
//!
//! NetworkPolicy must be enforced: the policy checks never skip, a cluster without an enforcer
//! fails them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Client, Resource, ResourceExt};
use rserve::{ConnectOptions, Connection};
use rsession_api::{RSession, well_known as wk};
use rsession_testkit::mcp::service_account_token;

mod agent;
mod forward;
pub mod local_frontend;
mod net;
mod node;
mod ready_times;
mod sessions;
mod stats;

pub use agent::*;
pub use forward::mcp_url;
pub use net::*;
pub use node::*;
pub use ready_times::ReadyTimes;
pub use sessions::*;
pub use stats::percentile;

pub use rsession_api::well_known::LABEL_OWNER;
pub use rsession_testkit::mcp::{
    Client as McpClient, call, connect_http as mcp_connect, images, structured_field, text,
};

/// Field manager of every object this suite applies.
pub const FIELD_MANAGER: &str = "rsession-e2e";

/// A required environment variable, or an error naming it.
pub fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run through e2e/run-e2e.sh)"))
}

/// The sessions namespace (`RSESSION_E2E_SESSIONS_NS`).
pub fn sessions_ns() -> Result<String> {
    env("RSESSION_E2E_SESSIONS_NS")
}

/// The release namespace of the operator and the MCP frontend (`RSESSION_E2E_SYSTEM_NS`).
pub fn system_ns() -> Result<String> {
    env("RSESSION_E2E_SYSTEM_NS")
}

/// A kube client for `KUBECONFIG` (or in-cluster config).
pub async fn client() -> Result<Client> {
    Client::try_default()
        .await
        .context("no Kubernetes client (KUBECONFIG)")
}

/// Waits up to `secs` seconds for `cond` on object `name` (a watch, not polling).
pub async fn wait_for<K, C>(api: &Api<K>, name: &str, secs: u64, what: &str, cond: C) -> Result<K>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    C: Condition<K>,
{
    match tokio::time::timeout(
        Duration::from_secs(secs),
        await_condition(api.clone(), name, cond),
    )
    .await
    {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => bail!("{name} was deleted while waiting for {what}"),
        Ok(Err(e)) => bail!("watch of {name} failed while waiting for {what}: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            bail!("{name}: no {what} within {secs} s; last state: {last:?}")
        }
    }
}

/// Waits up to `secs` seconds for object `name` to be gone.
pub async fn wait_deleted<K>(api: &Api<K>, name: &str, secs: u64) -> Result<()>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let r = tokio::time::timeout(
        Duration::from_secs(secs),
        kube::runtime::wait::await_condition(api.clone(), name, |o: Option<&K>| o.is_none()),
    )
    .await;
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!("watch of {name} failed: {e}"),
        Err(_) => bail!("{name} still exists after {secs} s"),
    }
}

/// Condition type `t` of an RSession has status `True`.
pub fn has_condition(rs: &RSession, t: &str) -> bool {
    rs.status.as_ref().is_some_and(|s| s.condition_true(t))
}

/// Condition: the RSession is Ready with an endpoint and a credentials Secret
/// ([`RSession::is_ready`]).
pub fn is_ready() -> impl Condition<RSession> {
    |o: Option<&RSession>| o.is_some_and(RSession::is_ready)
}

/// Server-side applies `obj` (YAML or JSON value) to namespace `ns`.
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().context("object without a name")?;
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Deletes an RSession and waits until it is gone.
pub async fn delete_rsession(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<RSession> = Api::namespaced(client.clone(), ns);
    if api.get_opt(name).await?.is_some() {
        api.delete(name, &DeleteParams::foreground()).await?;
        wait_deleted(&api, name, 120).await?;
    }
    Ok(())
}

/// The host:port to reach a Ready session from this machine. `status.endpoint` is
/// `<pod IP>:6311` (used as it is), or in the older form `<svc>.<ns>.svc:6311`, which only
/// cluster DNS resolves: then the session Service's ClusterIP with that port.
pub async fn reachable_endpoint(client: &Client, ns: &str, rs: &RSession) -> Result<String> {
    let endpoint = rs
        .status
        .as_ref()
        .and_then(|s| s.endpoint.clone())
        .context("no status.endpoint")?;
    let (host, port) = endpoint
        .rsplit_once(':')
        .with_context(|| format!("endpoint {endpoint} is not host:port"))?;
    if host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .is_ok()
    {
        return Ok(endpoint);
    }
    let svc_name = host.split('.').next().unwrap_or(host);
    let svc: Service = Api::namespaced(client.clone(), ns).get(svc_name).await?;
    let ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .with_context(|| format!("Service {svc_name} has no clusterIP"))?;
    Ok(format!("{ip}:{port}"))
}

/// The Rserve login of a Ready session: user name and password from the credentials Secret
/// its status names (`status.credentialsSecret`), a 20 s connect timeout.
pub async fn rserve_login(client: &Client, ns: &str, rs: &RSession) -> Result<ConnectOptions> {
    let status = rs.status.as_ref().context("no status")?;
    let secret_name = status
        .credentials_secret
        .as_ref()
        .context("no credentials Secret")?;
    let secret: Secret = Api::namespaced(client.clone(), ns).get(secret_name).await?;
    let data = secret.data.unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    Ok(ConnectOptions {
        username: text(wk::SECRET_KEY_USERNAME),
        password: text(wk::SECRET_KEY_PASSWORD),
        connect_timeout: Duration::from_secs(20),
        ..ConnectOptions::default()
    })
}

/// Connects to a Ready session's Rserve over QAP1 with the credentials Secret.
pub async fn connect_rserve(client: &Client, ns: &str, rs: &RSession) -> Result<Connection> {
    let opts = rserve_login(client, ns, rs).await?;
    let addr = reachable_endpoint(client, ns, rs).await?;
    // Like the MCP frontend: a Service (older endpoint form) refuses connections for a moment
    // after its pod turns Ready, until kube-proxy has programmed the endpoint.
    (|| Connection::connect(&addr, &opts))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_millis(800))
                .with_total_delay(Some(Duration::from_secs(8)))
                .without_max_times(),
        )
        .when(|e| matches!(e, rserve::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused))
        .await
        .with_context(|| format!("QAP1 connect to {addr}"))
}

/// Evaluates `expr` (which must return one string) and returns it.
pub async fn eval_string(conn: &mut Connection, expr: &str) -> Result<String> {
    let v = conn
        .eval(expr)
        .await
        .with_context(|| format!("eval {expr}"))?;
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{expr} returned {v:?}, not one string"))
}

/// Creates (or keeps) ServiceAccount `sa` in `ns`, binds it to `cluster_role` there when given,
/// and returns a fresh token for it (TokenRequest, default audience, 1 hour).
pub async fn sa_token(
    client: &Client,
    ns: &str,
    sa: &str,
    cluster_role: Option<&str>,
) -> Result<String> {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(sa.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.patch(
        sa,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&account),
    )
    .await?;
    if let Some(role) = cluster_role {
        let rb = RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("{sa}-rsessions")),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: sa.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            }]),
        };
        apply(client, ns, &rb).await?;
    }
    Ok(service_account_token(client, ns, sa).await?)
}

/// Creates namespace `ns` (PodSecurity restricted) if missing.
pub async fn ensure_namespace(client: &Client, ns: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let obj = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                "pod-security.kubernetes.io/enforce".into(),
                "restricted".into(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    };
    api.patch(
        ns,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await?;
    Ok(())
}

/// The current session pod of an RSession.
pub async fn session_pod(client: &Client, ns: &str, rs: &RSession) -> Result<Pod> {
    let name = rs
        .status
        .as_ref()
        .and_then(|s| s.pod_name.clone())
        .context("no status.podName")?;
    Ok(Api::namespaced(client.clone(), ns).get(&name).await?)
}

/// The names of the RSessions in `ns` (for diagnostics).
pub async fn rsession_names(client: &Client, ns: &str) -> Result<Vec<String>> {
    let api: Api<RSession> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .iter()
        .map(|r| r.name_any())
        .collect())
}
