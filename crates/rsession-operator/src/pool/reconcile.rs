//! One reconcile of an RSessionPool. API calls, in order:
//! 1. `GET` the database Secret (only when the template has a database);
//! 2. server-side apply of the pool's NetworkPolicy and R harness ConfigMap together (unless this
//!    replica applied the very same objects within the last minute, `crate::applied`);
//! 3. `LIST` pods labelled `rsession.dev/pool=<pool>`;
//! 4. `DELETE` (precondition: the resourceVersion listed) of unclaimed pods to replace or
//!    remove ([`super::plan`]);
//! 5. per pod to create: server-side apply of the pod, then of its credentials Secret (owned by
//!    the pod, so created after it; the pod itself carries only the password's hash, and the
//!    Secret is for the MCP frontend of the session that claims it);
//! 6. server-side apply of `status` when it changed.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use kube::core::TypeMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use rsession_api::status::CONDITION_READY;
use rsession_api::well_known as wk;
use rsession_api::{RSessionPool, RSessionPoolStatus};
use tracing::{info, warn};

use super::build::{
    TEMPLATE_NAME, build_harness_config_map, build_pod_secret, build_pool_network_policy,
    build_pool_pod, pod_name, pod_owner_reference, template_hash, template_session,
    unclaimed_selector,
};
use super::plan::{PoolPlan, plan_pool};
use crate::apply::{apply, apply_in, apply_status_of, delete_unchanged};
use crate::build::secret::generate_password;
use crate::context::Context;
use crate::decide::MAX_REQUEUE;
use crate::error::Error;
use crate::reconcile::{MISSING_SECRET_REQUEUE, resolve_addresses};
use crate::status::{new_condition, since_last_change};
use crate::validate::SpecError;

/// Retry delay after a transient error of a pool reconcile.
pub const POOL_RETRY: Duration = Duration::from_secs(5);

/// Reconciles one RSessionPool. Called by the kube-runtime controller.
///
/// # Errors
/// [`Error`]; [`error_policy`] decides when to retry.
#[tracing::instrument(skip_all, fields(pool = %pool.name_any(), namespace = pool.namespace().unwrap_or_default()))]
pub async fn reconcile(pool: Arc<RSessionPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    if pool.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = pool.name_any();
    let namespace = pool
        .namespace()
        .ok_or(SpecError::MissingMetadata("namespace"))?;
    let client = &ctx.client;
    let pools: Api<RSessionPool> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);

    let database_secret = match &pool.spec.template.database {
        Some(db) => secrets.get_opt(&db.secret_ref.name).await?,
        None => None,
    };
    let template =
        match template_session(&pool, TEMPLATE_NAME, &ctx.config, database_secret.as_ref()) {
            Ok(t) => t,
            Err(e) => {
                let status = invalid_status(&pool, &e);
                write_status(&pools, &pool, &status).await?;
                publish(
                    &ctx,
                    &pool,
                    EventType::Warning,
                    "InvalidTemplate",
                    e.to_string(),
                )
                .await;
                return Err(e.into());
            }
        };
    let hash = template_hash(&template, &ctx.config);
    let addresses = resolve_addresses(&template).await?;
    // Every pool pod event (claims, starts, Ready) reconciles the pool; the policy and the
    // harness are sent again only when they changed or a minute has passed (`crate::applied`).
    let policy = build_pool_network_policy(&template, &ctx.config, &name, &addresses);
    let harness = build_harness_config_map(&pool);
    let uid = pool.metadata.uid.clone().unwrap_or_default();
    // The harness text is this binary's (`rsession_harness::HARNESS_R`): its digest stands for
    // the 77 KB, which would otherwise be serialized and hashed on every reconcile.
    ctx.applied
        .apply_unless_fresh(
            &uid,
            &(&policy, &harness.metadata, rsession_harness::digest()),
            async {
                tokio::try_join!(
                    apply_in::<NetworkPolicy>(client, &namespace, &policy),
                    apply_in::<ConfigMap>(client, &namespace, &harness),
                )
                .map(drop)
            },
        )
        .await?;

    let listed = pods
        .list(&ListParams::default().labels(&format!("{}={name}", wk::LABEL_POOL)))
        .await?
        .items;
    let max_starting = pool
        .spec
        .max_starting
        .unwrap_or(rsession_api::DEFAULT_MAX_STARTING);
    let plan = plan_pool(pool.spec.replicas, max_starting, &hash, &listed);
    for (pod, resource_version) in &plan.delete {
        if delete_unchanged(&pods, pod, resource_version.clone()).await? {
            info!(%pod, "deleted pool pod (older template, failed, or above spec.replicas)");
        }
    }
    let live: Vec<String> = listed.iter().map(ResourceExt::name_any).collect();
    ctx.pool_passwords.retain(&namespace, &name, &live);
    for _ in 0..plan.create {
        let pod_name = pod_name(&name);
        let session = template_session(&pool, &pod_name, &ctx.config, database_secret.as_ref())?;
        let password = generate_password();
        let pod = build_pool_pod(&session, &ctx.config, &name, &hash, &password);
        let created = apply(&pods, &pod).await?;
        let owner = pod_owner_reference(
            &pod_name,
            created.metadata.uid.as_deref().unwrap_or_default(),
        );
        let secret = build_pod_secret(&session, &name, &password, owner);
        apply_in(client, &namespace, &secret).await?;
        // A claim takes it from memory instead of reading the Secret back (one API call less
        // on the way to a warm session's first result).
        ctx.pool_passwords
            .remember(&namespace, &name, &pod_name, &password);
        info!(pod = %pod_name, "created pool pod");
    }

    write_status(&pools, &pool, &pool_status(&pool, &plan, Timestamp::now())).await?;
    Ok(Action::requeue(MAX_REQUEUE))
}

/// Retries a failed pool reconcile: a missing database Secret after 30 s, another invalid
/// template on the next change, anything else after [`POOL_RETRY`].
pub fn error_policy(pool: Arc<RSessionPool>, error: &Error, _ctx: Arc<Context>) -> Action {
    match error {
        Error::InvalidSpec(SpecError::DatabaseSecretNotFound(_)) => {
            Action::requeue(MISSING_SECRET_REQUEUE)
        }
        Error::InvalidSpec(_) | Error::Gone => Action::await_change(),
        _ => {
            warn!(pool = %pool.name_any(), error = %error, "pool reconcile failed");
            Action::requeue(POOL_RETRY)
        }
    }
}

fn pool_types() -> TypeMeta {
    TypeMeta::resource::<RSessionPool>()
}

/// The Ready condition, keeping the previous transition time while its status is unchanged.
fn ready_condition(
    pool: &RSessionPool,
    ready: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Condition {
    let previous = pool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    since_last_change(
        new_condition(
            CONDITION_READY,
            ready,
            reason,
            message,
            pool.metadata.generation,
            now,
        ),
        previous,
    )
}

/// The status after `plan` is carried out.
pub fn pool_status(pool: &RSessionPool, plan: &PoolPlan, now: Timestamp) -> RSessionPoolStatus {
    let want = pool.spec.replicas;
    let replicas = plan.kept + i32::try_from(plan.create).unwrap_or(i32::MAX);
    let ready = plan.ready >= want;
    let message = format!(
        "{} of {want} unclaimed pods Ready; {} claimed",
        plan.ready, plan.claimed
    );
    RSessionPoolStatus {
        replicas,
        ready_replicas: plan.ready,
        claimed_replicas: plan.claimed,
        selector: Some(unclaimed_selector(&pool.name_any())),
        observed_generation: pool.metadata.generation,
        conditions: vec![ready_condition(
            pool,
            ready,
            if ready { "PoolReady" } else { "Filling" },
            message.clone(),
            now,
        )],
        message: Some(message),
    }
}

fn invalid_status(pool: &RSessionPool, e: &SpecError) -> RSessionPoolStatus {
    let previous = pool.status.clone().unwrap_or_default();
    RSessionPoolStatus {
        observed_generation: pool.metadata.generation,
        conditions: vec![ready_condition(
            pool,
            false,
            "InvalidTemplate",
            e.to_string(),
            Timestamp::now(),
        )],
        message: Some(format!("spec.template cannot be realised: {e}")),
        selector: Some(unclaimed_selector(&pool.name_any())),
        ..previous
    }
}

async fn write_status(
    api: &Api<RSessionPool>,
    pool: &RSessionPool,
    status: &RSessionPoolStatus,
) -> Result<(), Error> {
    if pool.status.as_ref() == Some(status) {
        return Ok(());
    }
    // Error::Gone when the pool was deleted meanwhile: `error_policy` waits without a warning.
    apply_status_of(api, &pool.name_any(), pool_types(), status).await
}

async fn publish(ctx: &Context, pool: &RSessionPool, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &pool.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OperatorConfig;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn a_pool_deleted_during_its_reconcile_is_not_retried() {
        // Never contacted: error_policy makes no API call.
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .expect("client");
        let ctx = Arc::new(Context::new(
            client,
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            None,
        ));
        let pool = Arc::new(crate::pool::build::tests::pool("web"));
        assert_eq!(
            error_policy(pool.clone(), &Error::Gone, ctx.clone()),
            Action::await_change()
        );
        let transient = Error::PoolPodCredentials("web-ab1cd".into());
        assert_eq!(
            error_policy(pool, &transient, ctx),
            Action::requeue(POOL_RETRY)
        );
    }
}
