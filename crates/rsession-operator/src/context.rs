//! Shared state of all reconciles: the client, the event recorder, metrics, configuration,
//! and what this replica remembers between reconciles (failure counts for backoff, the status
//! it last wrote, the pool controller's cache of RSessionPools, the passwords of the pool pods
//! it created, the children it applied recently).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use rsession_api::well_known as wk;
use rsession_api::{RSession, RSessionPool, RSessionStatus};

use crate::applied::Applied;
use crate::config::OperatorConfig;
use crate::metrics::Metrics;
use crate::pool::passwords::PoolPasswords;
use crate::pool::plan::is_claimable;
use crate::pool::reserved::Reserved;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Shared state of all reconciles.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes Events (events.k8s.io/v1) about RSessions.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Operator configuration.
    pub config: OperatorConfig,
    /// Consecutive transient failures per RSession, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<RSession>, u32>>,
    /// The status this replica last wrote, by RSession uid. The controller's cache can lag our
    /// own status writes by a watch round trip; a reconcile started in that window (for example
    /// by the new pod's watch event) must not recompute from the older status, or it would
    /// count a pod replacement twice or drop a condition. Entries older than
    /// [`WRITTEN_STATUS_TTL`] are ignored and pruned: by then the cache has caught up.
    written: Mutex<HashMap<String, (Instant, RSessionStatus)>>,
    /// The pool controller's cache of RSessionPools, when it runs: a claim reads the pool from
    /// here instead of a `GET` on the path to a warm session's first result.
    pools: Option<Store<RSessionPool>>,
    /// A watch-fed cache of pool pods, when the operator runs one: a claim picks its candidates
    /// here instead of a `LIST`.
    pool_pods: Option<Store<Pod>>,
    /// Rserve passwords of the pool pods this replica created and nobody claimed yet: a claim
    /// takes it from here instead of a `GET` of the pod's Secret.
    pub(crate) pool_passwords: PoolPasswords,
    /// Pool pods this replica's claims are taking (`crate::pool::reserved`).
    pub(crate) reserved: Reserved,
    /// What this replica applied recently, per owner uid (an RSession's children, a pool's
    /// NetworkPolicy): reconciles in quick succession skip re-sending it unchanged.
    pub(crate) applied: Applied,
}

/// How long a status this replica wrote is preferred over the controller cache's copy.
pub const WRITTEN_STATUS_TTL: Duration = Duration::from_secs(60);

impl Context {
    /// Creates a context; events are reported as controller `rsession-operator` with
    /// `instance` (for example the pod name) when given.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: wk::MANAGER.into(),
                instance,
            },
        );
        Self {
            client,
            recorder,
            metrics,
            config,
            failures: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            pools: None,
            pool_pods: None,
            pool_passwords: PoolPasswords::default(),
            reserved: Reserved::default(),
            applied: Applied::default(),
        }
    }

    /// This context with the pool controller's cache of RSessionPools ([`Context::cached_pool`]).
    #[must_use]
    pub fn with_pool_store(mut self, pools: Store<RSessionPool>) -> Self {
        self.pools = Some(pools);
        self
    }

    /// This context with a cache of pool pods ([`Context::cached_pool_pods`]).
    #[must_use]
    pub fn with_pool_pod_store(mut self, pods: Store<Pod>) -> Self {
        self.pool_pods = Some(pods);
        self
    }

    /// The pods of pool `pool` in `namespace` that the cache shows claimable (Ready, unclaimed,
    /// live) with template hash `hash`; empty without a cache. They may be stale: a claim's
    /// resourceVersion precondition refuses a pod that changed since.
    pub fn cached_pool_pods(&self, namespace: &str, pool: &str, hash: &str) -> Vec<Pod> {
        let Some(store) = &self.pool_pods else {
            return Vec::new();
        };
        store
            .state()
            .into_iter()
            .filter(|p| {
                let labels = p.labels();
                p.namespace().as_deref() == Some(namespace)
                    && labels.get(wk::LABEL_POOL).map(String::as_str) == Some(pool)
                    && labels.get(wk::LABEL_POOL_TEMPLATE).map(String::as_str) == Some(hash)
                    && is_claimable(p)
            })
            .map(|p| Pod::clone(&p))
            .collect()
    }

    /// RSessionPool `name` in `namespace` from the pool controller's cache; `None` when there
    /// is no cache or it does not hold the pool (the caller then asks the API server).
    pub fn cached_pool(&self, namespace: &str, name: &str) -> Option<Arc<RSessionPool>> {
        self.pools
            .as_ref()?
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// The freshest known status of `rs`: the one this replica wrote within
    /// [`WRITTEN_STATUS_TTL`], else the one on the object.
    pub fn current_status(&self, rs: &RSession) -> Option<RSessionStatus> {
        let uid = rs.metadata.uid.as_deref()?;
        let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        match written.get(uid) {
            Some((at, status)) if at.elapsed() < WRITTEN_STATUS_TTL => Some(status.clone()),
            _ => rs.status.clone(),
        }
    }

    /// Records `status` as written just now for [`Context::current_status`].
    pub(crate) fn remember_status(&self, rs: &RSession, status: &RSessionStatus) {
        let Some(uid) = rs.metadata.uid.clone() else {
            return;
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        written.retain(|_, (at, _)| at.elapsed() < WRITTEN_STATUS_TTL);
        written.insert(uid, (Instant::now(), status.clone()));
    }

    /// Consecutive transient failures per RSession.
    pub(crate) fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<RSession>, u32>> {
        // A poisoned map only holds counters; keep using it.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}
