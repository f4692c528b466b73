//! The reconciler: fetch → validate (pure) → build (pure) → apply → update status.
//!
//! API calls of one reconcile, in order (the scenario tests in `tests/api_calls.rs` pin them):
//! 1. `GET` the database Secret (only when `spec.database` is set);
//! 2. `GET` the credentials Secret (to reuse its password);
//! 3. `LIST` pods labelled `rsession.dev/session=<name>`;
//! 4. server-side apply (`PATCH`, field manager `rsession-operator`) of the Secret, ConfigMap,
//!    Service, NetworkPolicy and (Persistent workspace) PVC;
//! 5. `DELETE` of pods no longer wanted, then server-side apply of a pod to create;
//! 6. server-side apply of `status` when it changed;
//! 7. `POST` of an Event for each transition a user cares about.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::TypeMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSession, RSessionStatus};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::build::{
    config_map::build_config_map, network_policy::build_network_policy, pod::build_pod,
    pvc::build_pvc, secret, secret_name, service::build_service,
};
use crate::config::OperatorConfig;
use crate::error::Error;
use crate::lifecycle;
use crate::metrics::Metrics;
use crate::pod_plan::plan_pods;
use crate::status::{self, Observed};
use crate::validate::{DatabaseHost, Session, SpecError, validate};

/// Longest time between two reconciles of one RSession, so that DNS-resolved database
/// addresses and timers are re-checked even without watch events.
pub const MAX_REQUEUE: Duration = Duration::from_secs(300);
/// Requeue delay while a database Secret the spec names does not exist yet.
pub const MISSING_SECRET_REQUEUE: Duration = Duration::from_secs(30);
/// First and largest backoff after a transient error.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Largest backoff after repeated transient errors.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

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
        }
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

    fn remember_status(&self, rs: &RSession, status: &RSessionStatus) {
        let Some(uid) = rs.metadata.uid.clone() else {
            return;
        };
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        written.retain(|_, (at, _)| at.elapsed() < WRITTEN_STATUS_TTL);
        written.insert(uid, (Instant::now(), status.clone()));
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<RSession>, u32>> {
        // A poisoned map only holds counters; keep using it.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Status written with server-side apply: only `status`, under the operator's field manager.
#[derive(Serialize, Debug)]
struct StatusApply<'a> {
    #[serde(flatten)]
    types: TypeMeta,
    status: &'a RSessionStatus,
}

fn apply_params() -> PatchParams {
    PatchParams::apply(wk::MANAGER).force()
}

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(&name, &apply_params(), &Patch::Apply(obj))
        .await?)
}

/// Deletes a pod; NotFound is the expected answer for a pod that is already gone.
async fn delete_pod(api: &Api<Pod>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Resolves a database host given as a DNS name; an IP address needs no lookup.
async fn resolve_database(session: &Session) -> Result<Vec<IpAddr>, Error> {
    let Some(db) = &session.database else {
        return Ok(Vec::new());
    };
    let DatabaseHost::Name(host) = &db.host else {
        return Ok(Vec::new());
    };
    let resolved = tokio::net::lookup_host((host.as_str(), db.port))
        .await
        .map_err(|e| Error::DatabaseHostUnresolved {
            host: host.clone(),
            reason: e.to_string(),
        })?;
    let mut ips: Vec<IpAddr> = resolved.map(|a| a.ip()).collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(Error::DatabaseHostUnresolved {
            host: host.clone(),
            reason: "no addresses".into(),
        });
    }
    Ok(ips)
}

/// Reconciles one RSession. Called by the kube-runtime controller.
///
/// # Errors
/// [`Error`]; [`error_policy`] decides when to retry.
pub async fn reconcile(rs: Arc<RSession>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_session(&rs, &ctx).await;
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().map(|_| ()));
    if result.is_ok() {
        ctx.failures().remove(&ObjectRef::from_obj(&*rs));
    }
    result
}

/// Decides when to retry after [`reconcile`] failed: an invalid spec waits for a change (or
/// 30 s for a missing database Secret, which we do not watch); anything else backs off
/// exponentially from 1 s to 5 min per RSession.
pub fn error_policy(rs: Arc<RSession>, error: &Error, ctx: Arc<Context>) -> Action {
    match error {
        Error::InvalidSpec(SpecError::DatabaseSecretNotFound(_)) => {
            Action::requeue(MISSING_SECRET_REQUEUE)
        }
        Error::InvalidSpec(_) => Action::await_change(),
        Error::Kube(_) | Error::DatabaseHostUnresolved { .. } => {
            let mut failures = ctx.failures();
            let n = failures.entry(ObjectRef::from_obj(&*rs)).or_insert(0);
            *n = n.saturating_add(1);
            let delay = BACKOFF_MIN
                .saturating_mul(1 << (*n - 1).min(16))
                .min(BACKOFF_MAX);
            warn!(session = %rs.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
            Action::requeue(delay)
        }
    }
}

#[tracing::instrument(skip_all, fields(session = %rs.name_any(), namespace = rs.namespace().unwrap_or_default()))]
async fn reconcile_session(rs: &RSession, ctx: &Context) -> Result<Action, Error> {
    if rs.metadata.deletion_timestamp.is_some() {
        // Garbage collection removes the children through their owner references.
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let name = rs.name_any();
    let namespace = rs
        .namespace()
        .ok_or(SpecError::MissingMetadata("namespace"))?;
    let client = &ctx.client;
    let rsessions: Api<RSession> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    // fetch
    let database_secret = match &rs.spec.database {
        Some(db) => secrets.get_opt(&db.secret_ref.name).await?,
        None => None,
    };

    let previous_status = ctx.current_status(rs);
    let previous = previous_status.as_ref();

    // validate
    let session = match validate(rs, &ctx.config, database_secret.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            let observed = Observed {
                generation: rs.metadata.generation,
                previous,
                spec_error: Some((e.reason(), e.to_string())),
                pod_name: previous.and_then(|s| s.pod_name.clone()),
                now,
                ..Observed::default()
            };
            write_status(rs, ctx, &rsessions, previous, &status::compute(&observed)).await?;
            return Err(e.into());
        }
    };
    let database_addresses = resolve_database(&session).await?;
    let credentials = secrets.get_opt(&secret_name(&name)).await?;
    let session_pods = pods
        .list(&ListParams::default().labels(&format!("{}={name}", wk::LABEL_SESSION)))
        .await?
        .items;

    // decide (pure)
    let recorded_pod = previous.and_then(|s| s.pod_name.as_deref()).and_then(|n| {
        session_pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(n))
    });
    let last_activity = lifecycle::parse_activity(
        rs.annotations()
            .get(wk::ANNOTATION_LAST_ACTIVITY)
            .map(String::as_str),
    );
    let created = rs.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let pod_started = recorded_pod
        .and_then(|p| p.metadata.creation_timestamp.as_ref())
        .or_else(|| previous.and_then(|s| s.start_time.as_ref()))
        .map(|t| t.0);
    let suspended = session.lifecycle.suspend;
    // Resuming counts as activity: the new pod must not expire for idleness accrued while
    // suspended.
    let resumed = !suspended && previous.and_then(|s| s.phase) == Some(Phase::Suspended);
    let active_since = [
        Some(created),
        last_activity,
        pod_started,
        resumed.then_some(now),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(created);
    let timers = lifecycle::evaluate(now, created, active_since, &session.lifecycle, suspended);
    let want_pod = !suspended && timers.expired.is_none();
    let plan = plan_pods(&name, previous, &session_pods, want_pod);
    // A lost pod is also what the deletion of the RSession looks like through a stale cache:
    // garbage collection removes the pod before the watch delivers the RSession's deletion, and
    // recreating it would start (and at once tear down) a pod for every closed session. Ask
    // the API server, one GET and only on this path, before replacing anything.
    if plan.replaced.is_some() && !still_wanted(&rsessions, rs).await? {
        debug!("session pod gone with its RSession; nothing to replace");
        return Ok(Action::await_change());
    }

    // build (pure)
    let password = credentials
        .as_ref()
        .and_then(secret::existing_password)
        .unwrap_or_else(secret::generate_password);
    let credentials_secret = secret::build_secret(&session, &password);
    let config_map = build_config_map(&session, &ctx.config.preload_packages);
    let service = build_service(&session);
    let network_policy = build_network_policy(&session, &ctx.config, &database_addresses);
    let pvc = build_pvc(&session);

    // apply
    apply(&secrets, &credentials_secret).await?;
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), &namespace),
        &config_map,
    )
    .await?;
    apply(
        &Api::<Service>::namespaced(client.clone(), &namespace),
        &service,
    )
    .await?;
    apply(
        &Api::<NetworkPolicy>::namespaced(client.clone(), &namespace),
        &network_policy,
    )
    .await?;
    if let Some(pvc) = &pvc {
        apply(
            &Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace),
            pvc,
        )
        .await?;
    }
    for stale in &plan.delete {
        info!(pod = %stale, "deleting session pod");
        delete_pod(&pods, stale).await?;
    }
    let current_pod = if plan.create {
        info!(pod = %plan.pod_name, "creating session pod");
        let pod = apply(&pods, &build_pod(&session, &ctx.config, &plan.pod_name)).await?;
        publish(
            ctx,
            rs,
            EventType::Normal,
            "PodCreated",
            "Create",
            format!("created session pod {}", plan.pod_name),
        )
        .await;
        Some(pod)
    } else if want_pod {
        session_pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(plan.pod_name.as_str()))
            .cloned()
    } else {
        None
    };

    // status
    let observed = Observed {
        generation: rs.metadata.generation,
        previous,
        spec_error: None,
        expired: timers.expired,
        suspended,
        pod_name: Some(plan.pod_name.clone()),
        pod: current_pod.as_ref(),
        replaced_pod: plan.replaced.clone(),
        credentials_secret: Some(secret_name(&name)),
        last_activity,
        now,
    };
    let new_status = status::compute(&observed);
    write_status(rs, ctx, &rsessions, previous, &new_status).await?;
    if let Some(old) = &plan.replaced {
        publish(
            ctx,
            rs,
            EventType::Warning,
            "StateReset",
            "Recreate",
            format!(
                "session pod {old} was lost; started {} with fresh R state",
                plan.pod_name
            ),
        )
        .await;
    }

    let requeue = timers
        .next_deadline
        .map_or(MAX_REQUEUE, |d| d.min(MAX_REQUEUE));
    debug!(phase = ?new_status.phase, requeue = ?requeue, "reconciled");
    Ok(Action::requeue(requeue))
}

/// Whether the RSession `rs` still exists on the API server (same uid) and is not being
/// deleted: a live read, not the controller's cache.
async fn still_wanted(api: &Api<RSession>, rs: &RSession) -> Result<bool, Error> {
    let live = api.get_opt(&rs.name_any()).await?;
    Ok(live.is_some_and(|live| {
        live.metadata.uid == rs.metadata.uid && live.metadata.deletion_timestamp.is_none()
    }))
}

/// Writes `status` when it differs from the stored one, and publishes an Event when the phase
/// changed.
async fn write_status(
    rs: &RSession,
    ctx: &Context,
    api: &Api<RSession>,
    previous: Option<&RSessionStatus>,
    new: &RSessionStatus,
) -> Result<(), Error> {
    if previous == Some(new) {
        return Ok(());
    }
    let patch = StatusApply {
        types: rsession_api::type_meta(),
        status: new,
    };
    api.patch_status(&rs.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await?;
    ctx.remember_status(rs, new);
    let old_phase = previous.and_then(|s| s.phase);
    if old_phase != new.phase
        && let Some(phase) = new.phase
    {
        let message = new.message.clone().unwrap_or_default();
        let event = match phase {
            Phase::Ready => Some((EventType::Normal, "Ready")),
            Phase::Suspended => Some((EventType::Normal, "Suspended")),
            Phase::Expired => Some((EventType::Normal, "Expired")),
            Phase::Failed => Some((EventType::Warning, "Failed")),
            Phase::Pending | Phase::Starting => None,
        };
        if let Some((type_, reason)) = event {
            publish(ctx, rs, type_, reason, "Reconcile", message).await;
        }
    }
    Ok(())
}

/// Publishes an Event about `rs`; failures are logged, never fatal.
async fn publish(
    ctx: &Context,
    rs: &RSession,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &rs.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}
