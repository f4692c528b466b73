//! Helpers shared by the real-apiserver tests (`cluster_*.rs`): run the operator in-process
//! against the rsession-testenv control plane, and observe what it created.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use rsession_api::well_known as wk;
use rsession_api::{RSession, WorkspaceKind};
use rsession_operator::{OperatorConfig, RunError, Runtime};
use rsession_testenv::ControlPlane;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long the operator may take to settle a namespace in these tests.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Child kinds the operator creates, in the order they are reported.
pub const CHILD_KINDS: [&str; 5] = [
    "Secret",
    "Pod",
    "Service",
    "NetworkPolicy",
    "PersistentVolumeClaim",
];

/// Label selector matching everything the operator manages.
pub fn managed_selector() -> String {
    format!("{}={}", wk::LABEL_MANAGED_BY, wk::MANAGER)
}

/// The shared control plane with the committed CRD installed, and test logging on
/// (`RUST_LOG`, shown for failing tests).
pub async fn control_plane() -> &'static ControlPlane {
    rsession_testkit::control_plane("warn,rsession_operator=info").await
}

/// Operator configuration for one test: only `namespace` is watched, so tests sharing the
/// control plane do not reconcile each other's sessions.
pub fn config_for(namespace: Option<&str>) -> OperatorConfig {
    OperatorConfig {
        watch_namespace: namespace.map(str::to_owned),
        ..OperatorConfig::default()
    }
}

/// An operator running in-process (`rsession_operator::run`) on its own task.
pub struct Operator {
    pub runtime: Arc<Runtime>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RunError>>,
}

impl Operator {
    /// Starts `rsession_operator::run` with `client` and `config`.
    pub fn start(client: Client, config: OperatorConfig) -> Operator {
        let runtime = Arc::new(Runtime::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(rsession_operator::run(
            client,
            config,
            format!("test-{}", std::process::id()),
            runtime.clone(),
            shutdown.clone(),
        ));
        Operator {
            runtime,
            shutdown,
            task,
        }
    }

    /// Reconciles finished so far (`rsession_operator_reconciles_total`).
    pub fn reconciles(&self) -> u64 {
        self.runtime.metrics.reconciles.get()
    }

    /// Reconciles that failed so far, as Prometheus text lines (empty when none).
    pub fn error_lines(&self) -> Vec<String> {
        self.runtime
            .metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("rsession_operator_reconcile_errors_total{"))
            .map(str::to_owned)
            .collect()
    }

    /// Waits until at least `n` reconciles have finished.
    pub async fn wait_reconciles(&self, n: u64) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while self.reconciles() < n {
            assert!(
                Instant::now() < deadline,
                "operator finished {} of {n} reconciles in {SETTLE_TIMEOUT:?}",
                self.reconciles()
            );
            assert!(!self.task.is_finished(), "operator stopped early");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Graceful shutdown (cancel, then in-flight reconciles finish); fails on a run error.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("operator task")
            .expect("operator ran without error");
    }

    /// Abrupt stop, like a crash: the task is aborted wherever it is, mid-request included.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn list_meta<K>(client: &Client, namespace: &str, selector: &str) -> Vec<ObjectMeta>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|e| panic!("list {} in {namespace}: {e}", K::kind(&())))
        .items
        .into_iter()
        .map(|o| o.metadata)
        .collect()
}

/// Everything matching `selector` in `namespace`, by child kind (every kind present, maybe
/// empty).
pub async fn children(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> BTreeMap<&'static str, Vec<ObjectMeta>> {
    BTreeMap::from([
        (
            "Secret",
            list_meta::<Secret>(client, namespace, selector).await,
        ),
        ("Pod", list_meta::<Pod>(client, namespace, selector).await),
        (
            "Service",
            list_meta::<Service>(client, namespace, selector).await,
        ),
        (
            "NetworkPolicy",
            list_meta::<NetworkPolicy>(client, namespace, selector).await,
        ),
        (
            "PersistentVolumeClaim",
            list_meta::<PersistentVolumeClaim>(client, namespace, selector).await,
        ),
    ])
}

/// The child kinds an RSession must have: all but the PVC, which exists only for a Persistent
/// workspace without `existingClaim`.
pub fn expected_kinds(rs: &RSession) -> Vec<&'static str> {
    let workspace = &rs.spec.workspace;
    let pvc = workspace.kind == WorkspaceKind::Persistent && workspace.existing_claim.is_none();
    CHILD_KINDS
        .into_iter()
        .filter(|k| *k != "PersistentVolumeClaim" || pvc)
        .collect()
}

/// RSessions and managed children of one namespace at one moment.
#[derive(Debug, Clone)]
pub struct State {
    pub sessions: Vec<RSession>,
    pub children: BTreeMap<&'static str, Vec<ObjectMeta>>,
}

impl State {
    pub async fn read(client: &Client, namespace: &str) -> State {
        let sessions = Api::<RSession>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .expect("list RSessions")
            .items;
        let children = children(client, namespace, &managed_selector()).await;
        State { sessions, children }
    }

    /// The children of kind `kind` labelled for session `name`.
    pub fn of(&self, kind: &str, name: &str) -> Vec<&ObjectMeta> {
        self.children[kind]
            .iter()
            .filter(|m| {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(wk::LABEL_SESSION))
                    .map(String::as_str)
                    == Some(name)
            })
            .collect()
    }

    /// What is still missing before every RSession is settled: status for the current
    /// generation and one child of each expected kind. Empty when settled.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for rs in &self.sessions {
            let name = rs.name_any();
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
            if observed.is_none() || observed != rs.metadata.generation {
                missing.push(format!(
                    "{name}: observedGeneration {observed:?} != generation {:?}",
                    rs.metadata.generation
                ));
            }
            for kind in expected_kinds(rs) {
                if self.of(kind, &name).is_empty() {
                    missing.push(format!("{name}: no {kind}"));
                }
            }
        }
        missing
    }

    /// `(kind, name) -> resourceVersion` of every RSession and child.
    pub fn resource_versions(&self) -> BTreeMap<(String, String), String> {
        let rsessions = self.sessions.iter().map(|rs| {
            (
                ("RSession".to_owned(), rs.name_any()),
                rs.resource_version(),
            )
        });
        let children = self.children.iter().flat_map(|(kind, metas)| {
            metas.iter().map(move |m| {
                (
                    ((*kind).to_owned(), m.name.clone().unwrap_or_default()),
                    m.resource_version.clone(),
                )
            })
        });
        rsessions
            .chain(children)
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }
}

/// Polls until every RSession in `namespace` is settled ([`State::missing`] is empty) and
/// returns that state; panics with what is missing after [`SETTLE_TIMEOUT`].
pub async fn wait_settled(client: &Client, namespace: &str, sessions: usize) -> State {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let state = State::read(client, namespace).await;
        let missing = state.missing();
        if state.sessions.len() == sessions && missing.is_empty() {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after {SETTLE_TIMEOUT:?} ({} of {sessions} RSessions): {missing:#?}",
            state.sessions.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts that `meta` has exactly one owner reference, the controller reference to `owner`.
pub fn assert_owned_by(kind: &str, meta: &ObjectMeta, owner: &RSession) {
    let name = meta.name.as_deref().unwrap_or_default();
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    assert_eq!(refs.len(), 1, "{kind} {name} owner references: {refs:?}");
    let r = &refs[0];
    assert_eq!(
        (r.api_version.as_str(), r.kind.as_str(), r.name.as_str()),
        (
            "rsession.dev/v1alpha1",
            "RSession",
            owner.name_any().as_str()
        ),
        "{kind} {name}"
    );
    assert_eq!(
        Some(r.uid.as_str()),
        owner.metadata.uid.as_deref(),
        "{kind} {name}"
    );
    assert_eq!(r.controller, Some(true), "{kind} {name}");
    assert_eq!(r.block_owner_deletion, Some(true), "{kind} {name}");
}
