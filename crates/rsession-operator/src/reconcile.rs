//! The reconciler drives one pass of the pipeline and holds no rules of its own: fetch →
//! validate ([`crate::validate`], pure) → decide ([`crate::decide`], pure) → build
//! ([`crate::build`], pure) → apply (`apply.rs`) → update status ([`crate::status`]
//! computes it, pure).
//!
//! API calls of one reconcile, in order (the scenario tests in `tests/api_calls.rs` pin them):
//! 0. with `spec.poolRef`, `GET` the RSessionPool when the pool controller's cache lacks it;
//! 1. `GET` the database Secret (only when `spec.database` is set);
//! 2. `GET` the credentials Secret (to reuse its password) and, sent at the same time,
//! 3. `LIST` pods labelled `rsession.dev/session=<name>`;
//!    then, only when the recorded pod was lost, a live `GET` of the RSession itself (a
//!    stale cache shows a deleted RSession's pod as lost; see `still_wanted`);
//! 4. server-side apply (`PATCH`, field manager `rsession-operator`), all sent at once, of the
//!    Secret, Service, NetworkPolicy and (Persistent workspace) PVC, unless this
//!    replica applied the very same children within the last minute (`crate::applied`) (with
//!    `spec.poolRef`, first the claim of `crate::claim`; a session claimed warm applies them only
//!    in a reconcile `claim::WARM_CHILDREN_DELAY` after its claim, requeued for that);
//! 5. `DELETE` of pods no longer wanted, then server-side apply of a pod to create;
//! 6. server-side apply of `status` when it changed;
//! 7. `POST` of an Event for each transition a user cares about.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSession, RSessionPool, RSessionStatus};
use tracing::{debug, info, warn};

use crate::apply::{apply, apply_children, apply_status, delete_pod};
use crate::build::children::{build_children, cold_preload};
use crate::build::pod::{PodStart, build_pod};
use crate::build::{secret, secret_name};
use crate::checkpoint::Handshake;
use crate::claim;
use crate::decide::{Facts, decide};
use crate::error::Error;
use crate::status::{self, Observed};
use crate::validate::{DatabaseHost, Session, SpecError, effective_rsession, validate};

// Kept importable from here, where they were defined before the context and decide steps got
// their own modules.
pub use crate::context::{Context, WRITTEN_STATUS_TTL};
pub use crate::decide::MAX_REQUEUE;

/// Requeue delay while a database Secret the spec names does not exist yet.
pub const MISSING_SECRET_REQUEUE: Duration = Duration::from_secs(30);
/// First and largest backoff after a transient error.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Largest backoff after repeated transient errors.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Resolves the database host of `session` when given as a DNS name; an IP address needs no
/// lookup, and a session without a database has no addresses.
pub(crate) async fn resolve_addresses(session: &Session) -> Result<Vec<IpAddr>, Error> {
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
    let result = match reconcile_session(&rs, &ctx).await {
        // Deleted meanwhile: its children go with it (garbage collection); not a failure.
        Err(Error::Gone) => {
            debug!("RSession deleted during the reconcile; status not written");
            Ok(Action::await_change())
        }
        other => other,
    };
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
        Error::InvalidSpec(SpecError::DatabaseSecretNotFound(_) | SpecError::PoolNotFound(_)) => {
            Action::requeue(MISSING_SECRET_REQUEUE)
        }
        Error::InvalidSpec(_) | Error::Gone => Action::await_change(),
        Error::Kube(_) | Error::DatabaseHostUnresolved { .. } | Error::PoolPodCredentials(_) => {
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
    let started = Instant::now();
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
    // The pool controller's cache first: this is on the way to a warm session's first result.
    let pool = match &rs.spec.pool_ref {
        Some(r) => match ctx.cached_pool(&namespace, &r.name) {
            Some(cached) => Some(RSessionPool::clone(&cached)),
            None => {
                Api::<RSessionPool>::namespaced(client.clone(), &namespace)
                    .get_opt(&r.name)
                    .await?
            }
        },
        None => None,
    };
    let effective = effective_rsession(rs, pool.as_ref());
    let database_secret = match effective
        .as_ref()
        .ok()
        .and_then(|e| e.spec.database.as_ref())
    {
        Some(db) => secrets.get_opt(&db.secret_ref.name).await?,
        None => None,
    };

    let previous_status = ctx.current_status(rs);
    let previous = previous_status.as_ref();

    // validate
    let validated = effective.and_then(|e| validate(&e, &ctx.config, database_secret.as_ref()));
    let session = match validated {
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
    let database_addresses = resolve_addresses(&session).await?;
    // Independent reads, sent together (one round trip on the path to Ready, not two).
    let session_pods_of = ListParams::default().labels(&format!("{}={name}", wk::LABEL_SESSION));
    let credentials_name = secret_name(&name);
    let (credentials, listed) = tokio::try_join!(
        secrets.get_opt(&credentials_name),
        pods.list(&session_pods_of),
    )?;
    let mut session_pods = listed.items;

    // claim a warm pod (spec.poolRef, first pod only)
    let mut bound = None;
    if let Some(pool) = &pool
        && wants_claim(rs, previous, &session_pods)
    {
        let b = claim::bind(
            ctx,
            &namespace,
            rs,
            pool,
            database_secret.as_ref(),
            started,
            now,
        )
        .await?;
        if let Some(c) = &b.claimed {
            session_pods = vec![c.pod.clone()];
        }
        bound = Some(b);
    }

    // decide (pure)
    let decision = decide(&Facts {
        rs,
        session: &session,
        previous,
        pods: &session_pods,
        now,
    });
    let plan = &decision.plan;
    // A lost pod is also what the deletion of the RSession looks like through a stale cache:
    // garbage collection removes the pod before the watch delivers the RSession's deletion, and
    // recreating it would start (and at once tear down) a pod for every closed session. Ask
    // the API server, one GET and only on this path, before replacing anything.
    if plan.replaced.is_some() && !still_wanted(&rsessions, rs).await? {
        debug!("session pod gone with its RSession; nothing to replace");
        return Ok(Action::await_change());
    }

    // build (pure)
    // A claimed pod's Rserve already has its password: the session's Secret gets the same one.
    let claimed_password = bound
        .as_ref()
        .and_then(|b| b.claimed.as_ref())
        .map(|c| c.password.clone());
    let password = match claimed_password
        .or_else(|| credentials.as_ref().and_then(secret::existing_password))
    {
        Some(p) => p,
        // A pool pod claimed by a reconcile that ended before it wrote the session's Secret.
        None => match decision
            .kept_pod
            .filter(|p| p.labels().contains_key(wk::LABEL_POOL))
        {
            Some(pod) => claim::pool_pod_password(ctx, &namespace, &pod.name_any()).await?,
            None => secret::generate_password(),
        },
    };
    let children = build_children(&session, &ctx.config, &password, &database_addresses);

    // apply: the children, unless the session was claimed warm moments ago, when they wait
    // (`claim::WARM_CHILDREN_DELAY`; the claimed pod, its Secret and the pool's NetworkPolicy
    // already serve the session) — but never when a pod is to be created, which must not run
    // before its NetworkPolicy exists. Not re-sent when this replica applied the very same
    // children within the last minute.
    let children_wait = claim::children_wait(
        bound
            .as_ref()
            .map(|b| &b.status)
            .or_else(|| previous.and_then(|s| s.claim.as_ref())),
        now,
    );
    if plan.create || children_wait.is_none() {
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        ctx.applied
            .apply_unless_fresh(
                &uid,
                &children,
                apply_children(client, &namespace, &children),
            )
            .await?;
    }
    for stale in &plan.delete {
        info!(pod = %stale, "deleting session pod");
        delete_pod(&pods, stale).await?;
    }
    let current_pod = if plan.create {
        info!(pod = %plan.pod_name, "creating session pod");
        let start = PodStart {
            preload_packages: cold_preload(&ctx.config),
            harness_config_map: None,
            pwdfile_entry: secret::pwdfile_entry(&password),
        };
        let pod = apply(
            &pods,
            &build_pod(&session, &ctx.config, &plan.pod_name, &start),
        )
        .await?;
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
    } else {
        decision.kept_pod.cloned()
    };

    // status
    let observed = Observed {
        generation: rs.metadata.generation,
        previous,
        spec_error: None,
        expired: decision.timers.expired,
        suspended: decision.suspended,
        pod_name: Some(plan.pod_name.clone()),
        pod: current_pod.as_ref(),
        replaced_pod: plan.replaced.clone(),
        credentials_secret: Some(claim::credentials_secret(&name, current_pod.as_ref())),
        last_activity: decision.last_activity,
        checkpointing: match &decision.checkpoint {
            Handshake::Waiting { requested_at, .. } => Some(*requested_at),
            _ => None,
        },
        claim: bound
            .as_ref()
            .map(|b| b.status.clone())
            .or_else(|| claim::adopted(rs, previous, current_pod.as_ref())),
        now,
    };
    let new_status = status::compute(&observed);
    write_status(rs, ctx, &rsessions, previous, &new_status).await?;
    // After the status write, which is what the MCP frontend waits for.
    if let Some(b) = &bound {
        let (type_, reason, note) = b.event();
        publish(ctx, rs, type_, reason, "Claim", note).await;
    }
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

    match &decision.checkpoint {
        Handshake::Answered { report } => {
            publish(
                ctx,
                rs,
                EventType::Normal,
                "Checkpointed",
                "Checkpoint",
                format!("the MCP frontend saved R state before the pod ended: {report}"),
            )
            .await;
        }
        Handshake::TimedOut { timeout } => {
            publish(
                ctx,
                rs,
                EventType::Warning,
                "CheckpointTimeout",
                "Checkpoint",
                format!(
                    "no MCP frontend answered the checkpoint request within {} s; the pod ended without saving R state",
                    timeout.as_secs()
                ),
            )
            .await;
        }
        Handshake::NotNeeded | Handshake::Waiting { .. } => {}
    }

    let requeue = match children_wait {
        Some(wait) if !plan.create => decision.requeue.min(wait),
        _ => decision.requeue,
    };
    debug!(phase = ?new_status.phase, requeue = ?requeue, "reconciled");
    Ok(Action::requeue(requeue))
}

/// Whether this reconcile should try to claim a pool pod: the RSession names a pool, has never
/// been bound (no claim and no pod recorded, no pod labelled with its name: a reconcile that
/// crashed after its claim finds the claimed pod by its label) and is not suspended.
fn wants_claim(rs: &RSession, previous: Option<&RSessionStatus>, pods: &[Pod]) -> bool {
    rs.spec.pool_ref.is_some()
        && !rs.spec.lifecycle.suspend
        && pods.is_empty()
        && previous.is_none_or(|s| s.claim.is_none() && s.pod_name.is_none())
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
    // Error::Gone when the RSession was deleted meanwhile (a session closed right after it was
    // created): `reconcile` ends quietly then.
    apply_status(api, &rs.name_any(), new).await?;
    ctx.remember_status(rs, new);
    let old_phase = previous.and_then(|s| s.phase);
    if old_phase != new.phase
        && let Some(phase) = new.phase
    {
        let message = new.message.clone().unwrap_or_default();
        let event = match phase {
            Phase::Ready => Some((EventType::Normal, "Ready")),
            Phase::Suspended => Some((EventType::Normal, "Suspended")),
            Phase::Checkpointing => Some((EventType::Normal, "Checkpointing")),
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
