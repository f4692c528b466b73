//! rsession-operator: reconciles `RSession` resources (`rsession.dev/v1alpha1`) into a
//! locked-down Rserve pod and its Secret, Service, NetworkPolicy and PVC.
//!
//! Layout, following the fetch → validate → decide → build → apply → status pipeline:
//! - [`validate`]: pure checks and defaulting, RSession → [`validate::Session`];
//! - [`decide`]: pure decision of one reconcile (timers, whether a pod is wanted, the pod
//!   plan, the requeue), built on [`lifecycle`] and [`pod_plan`];
//! - [`build`]: pure builders of every child (security invariants unit-tested by name), the
//!   pod and one [`build::children::Children`] bundle of the rest;
//! - [`status`]: pure status computation;
//! - [`pool`]: the RSessionPool controller (warm pods), and [`claim`]: binding an RSession with
//!   `spec.poolRef` to one of them;
//! - [`quantity`]: byte amounts of Kubernetes quantities (sizing /tmp against memory);
//! - [`mod@reconcile`]: drives the pipeline (fetch, the live check before replacing a pod,
//!   events, error policy); `apply`: the server-side apply and delete calls; [`context`]:
//!   state shared by reconciles;
//! - [`leader`], [`http`], [`metrics`], [`config`]: running it.
//!
//! Embedding: `rsession_operator::run(client, config, runtime, shutdown)` runs the controller
//! (with leader election when `config.leaderElection.enabled`) until `shutdown` is cancelled.

pub mod applied;
mod apply;
pub mod build;
pub mod checkpoint;
pub mod claim;
pub mod config;
pub mod context;
pub mod decide;
pub mod error;
pub mod http;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod pod_plan;
pub mod pool;
pub mod quantity;
pub mod reconcile;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use rsession_api::well_known as wk;
use rsession_api::{RSession, RSessionPool};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::OperatorConfig;
pub use error::Error;
pub use http::Runtime;
pub use reconcile::{Context, error_policy, reconcile};

/// Why [`run`] stopped other than by `shutdown`.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The RSession API is not reachable or the CRD is not installed.
    #[error("cannot list RSessions (is the CRD installed and the RBAC granted?): {0}")]
    Startup(#[source] kube::Error),
    /// Leader election failed or the Lease was lost; the process should exit and restart.
    #[error("lost leadership: {0}")]
    LostLeadership(String),
}

/// Identity of this replica for the Lease and Events: `POD_NAME`, else `HOSTNAME`, else a
/// random suffix.
pub fn default_identity() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("rsession-operator-{}", random_suffix()))
}

fn random_suffix() -> String {
    build::secret::generate_password()[..8].to_lowercase()
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator until `shutdown` is cancelled (then it finishes in-flight reconciles and
/// releases the Lease) or leadership is lost.
///
/// `identity` names this replica in the Lease and in Events.
///
/// # Errors
/// [`RunError::Startup`] when RSessions cannot be listed; [`RunError::LostLeadership`] when
/// the Lease could not be renewed within its duration.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    identity: String,
    runtime: Arc<Runtime>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let namespace = config.watch_namespace.clone();
    let rsessions: Api<RSession> = api_for(&client, namespace.as_deref());
    rsessions
        .list(&ListParams::default().limit(1))
        .await
        .map_err(RunError::Startup)?;
    runtime.ready.store(true, Ordering::Relaxed);

    let le = config.leader_election.clone();
    let elector = le.enabled.then(|| {
        let lease_ns = le
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".into());
        leader::LeaderElector::new(
            client.clone(),
            &lease_ns,
            &le.lease_name,
            &identity,
            Duration::from_secs(le.lease_duration_secs.into()),
        )
    });
    let renew = Duration::from_secs(le.renew_interval_secs.into());
    let lease_duration = Duration::from_secs(le.lease_duration_secs.into());

    if let Some(elector) = &elector {
        info!(%identity, "waiting to become leader");
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(leader::LeaseState::Leader) => break,
                Ok(leader::LeaseState::Follower) => {}
                Err(e) => warn!(error = %e, "leader election attempt failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(renew) => {}
            }
        }
        info!(%identity, "became leader");
    }
    runtime.metrics.leader.set(1);

    let controller_stop = shutdown.child_token();
    // Pool pods keep the pool's label when claimed, so a claim (which moves the pod's owner to
    // the RSession) still triggers the pool's reconcile, which starts a replacement.
    let pool_pods = watcher::Config::default().labels(&format!(
        "{},{}={}",
        wk::LABEL_POOL,
        wk::LABEL_MANAGED_BY,
        wk::MANAGER
    ));
    // One watch of pool pods feeds both the pool controller and a cache that claims pick their
    // candidates from (rather than a LIST). Deleted pods count too: the pool refills.
    let (pool_pod_store, pool_pod_writer) = reflector::store();
    let pool_pod_events = watcher(api_for::<Pod>(&client, namespace.as_deref()), pool_pods)
        .default_backoff()
        .reflect(pool_pod_writer)
        .touched_objects();
    let pool_controller = Controller::new(
        api_for::<RSessionPool>(&client, namespace.as_deref()),
        watcher::Config::default(),
    );
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            config.clone(),
            runtime.metrics.clone(),
            Some(identity.clone()),
        )
        .with_pool_store(pool_controller.store())
        .with_pool_pod_store(pool_pod_store),
    );
    // Only pod changes trigger reconciles: the pod's status drives the RSession's status.
    // The other children are re-applied by the reconciles at least every MAX_REQUEUE (those
    // within APPLIED_TTL of an identical apply skip it), so a hand-deleted Service or
    // NetworkPolicy comes back within 5 minutes; not watching them keeps memory flat and avoids
    // one extra reconcile per created child (measured: 1000 sessions).
    let children =
        watcher::Config::default().labels(&format!("{}={}", wk::LABEL_MANAGED_BY, wk::MANAGER));
    let controller = Controller::new(rsessions, watcher::Config::default())
        .owns(api_for::<Pod>(&client, namespace.as_deref()), children)
        .with_config(ControllerConfig::default().concurrency(config.max_concurrent_reconciles))
        .graceful_shutdown_on(controller_stop.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(session = %obj.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        });

    let pool_controller = pool_controller
        .watches_stream(pool_pod_events, |pod: Pod| {
            let pool = pod.metadata.labels.as_ref()?.get(wk::LABEL_POOL)?.clone();
            let ns = pod.metadata.namespace.clone()?;
            Some(ObjectRef::<RSessionPool>::new(&pool).within(&ns))
        })
        .with_config(ControllerConfig::default().concurrency(config.max_concurrent_reconciles))
        .graceful_shutdown_on(controller_stop.clone().cancelled_owned())
        .run(
            pool::reconcile::reconcile,
            pool::reconcile::error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "pool reconcile error");
            }
        });

    let lease_loop = async {
        let Some(elector) = &elector else {
            controller_stop.cancelled().await;
            return Ok(());
        };
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = controller_stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(renew) => {}
            }
            match elector.try_acquire_or_renew().await {
                Ok(leader::LeaseState::Leader) => last_renewal = tokio::time::Instant::now(),
                Ok(leader::LeaseState::Follower) => {
                    controller_stop.cancel();
                    return Err(RunError::LostLeadership(
                        "another replica holds the Lease".into(),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "could not renew the Lease");
                    if last_renewal.elapsed() >= lease_duration {
                        controller_stop.cancel();
                        return Err(RunError::LostLeadership(format!(
                            "no renewal for {lease_duration:?}: {e}"
                        )));
                    }
                }
            }
        }
    };

    let (_, _, lease_result) = tokio::join!(controller, pool_controller, lease_loop);
    runtime.metrics.leader.set(0);
    if let Some(elector) = &elector
        && lease_result.is_ok()
        && let Err(e) = elector.release().await
    {
        warn!(error = %e, "could not release the Lease");
    }
    info!("operator stopped");
    lease_result
}
