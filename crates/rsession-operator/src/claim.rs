//! Claiming a warm pool pod for an RSession with `spec.poolRef` (see [`crate::pool`]).
//!
//! A claim is one JSON merge patch of the pool pod carrying the `resourceVersion` the operator
//! listed: the apiserver applies it only while the pod is unchanged, so two RSessions (or two
//! operator replicas) can never both claim one pod; the loser gets 409 Conflict and tries the
//! next candidate. The patch, in one step, gives the pod the session's labels (the session's
//! Service and NetworkPolicy select it from then on), replaces its owner (the pool) by the
//! RSession, and stamps the claim time. The pod keeps its pool label, so the pool's
//! NetworkPolicy covers it throughout; its credentials Secret is owned by the pod itself and
//! follows it.
//!
//! API calls of a claim: the `PATCH` of each candidate (Ready, unclaimed, of the pool's current
//! template, as the operator's watch-fed cache of pool pods shows them; in random order, skipping
//! those another claim of this replica is taking: [`crate::pool::reserved`]) until one succeeds;
//! when none did (the cache was stale or empty), a `LIST` of the pool's pods and the same again.
//! The session's own Secret gets the claimed pod's password: from memory when this replica
//! created the pod ([`crate::pool::passwords`]), else a `GET` of the pod's credentials Secret.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use rand::seq::SliceRandom;
use rsession_api::well_known as wk;
use rsession_api::{ClaimStatus, RSession, RSessionPool, RSessionStatus};
use serde_json::json;
use tracing::{debug, info};

use crate::build::{controller_owner_reference, secret, secret_name};
use crate::context::Context;
use crate::error::Error;
use crate::pool::build::{TEMPLATE_NAME, template_hash, template_session};
use crate::pool::plan::is_claimable;
use crate::pool::reserved::Reserved;
use crate::status::whole_seconds;

/// A pool pod now bound to the RSession.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The pod as the patch returned it.
    pub pod: Pod,
    /// The Rserve password of the pod's credentials Secret.
    pub password: String,
}

/// The outcome of binding an RSession with `spec.poolRef`: its `status.claim`, and the pod when
/// it was warm.
#[derive(Clone, Debug)]
pub struct Bound {
    /// What `status.claim` records.
    pub status: ClaimStatus,
    /// The claimed pool pod; `None` for a cold start.
    pub claimed: Option<Claimed>,
}

impl Bound {
    /// The Event that reports the binding: `ClaimedWarm` (Normal) or `PoolEmpty` (Warning).
    pub fn event(&self) -> (EventType, &'static str, String) {
        let pool = &self.status.pool;
        let ms = self.status.bind_milliseconds.unwrap_or_default();
        match &self.status.pod_name {
            Some(pod) if self.status.warm => (
                EventType::Normal,
                "ClaimedWarm",
                format!("bound to Ready pod {pod} of RSessionPool {pool} in {ms} ms"),
            ),
            _ => (
                EventType::Warning,
                "PoolEmpty",
                format!(
                    "RSessionPool {pool} had no Ready unclaimed pod; starting a pod for this session (cold start)"
                ),
            ),
        }
    }
}

/// Binds `rs` to a Ready pod of `pool` ([`claim`]), or records a cold start when there is none.
/// `started` is when the reconcile began (for `bindMilliseconds`); `database_secret` is the
/// Secret the pool's template names, if any.
///
/// # Errors
/// An invalid pool template ([`Error::InvalidSpec`]) and API errors of [`claim`].
pub async fn bind(
    ctx: &Context,
    namespace: &str,
    rs: &RSession,
    pool: &RSessionPool,
    database_secret: Option<&Secret>,
    started: Instant,
    now: Timestamp,
) -> Result<Bound, Error> {
    let pool_name = pool.name_any();
    let template = template_session(pool, TEMPLATE_NAME, &ctx.config, database_secret)?;
    let hash = template_hash(&template, &ctx.config);
    // The pool controller's cache of pool pods first (no LIST on the way to a warm session); a
    // candidate it shows stale costs one refused patch, and when none of them could be claimed
    // the pool's pods are listed afresh.
    let cached = ctx.cached_pool_pods(namespace, &pool_name, &hash);
    let mut won = claim_among(&ctx.client, &ctx.reserved, namespace, rs, cached).await?;
    if won.is_none() {
        won = claim(&ctx.client, &ctx.reserved, namespace, rs, &pool_name, &hash).await?;
    }
    let claimed = match won {
        Some(pod) => Some(Claimed {
            password: pool_pod_password(ctx, namespace, &pod.name_any()).await?,
            pod,
        }),
        None => None,
    };
    let bind_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match &claimed {
        Some(c) => {
            info!(pod = %c.pod.name_any(), pool = %pool_name, bind_ms, "claimed a warm pool pod")
        }
        None => info!(pool = %pool_name, "pool has no Ready unclaimed pod; starting cold"),
    }
    Ok(Bound {
        status: ClaimStatus {
            pool: pool_name,
            warm: claimed.is_some(),
            pod_name: claimed.as_ref().map(|c| c.pod.name_any()),
            claimed_at: Some(Time(whole_seconds(now))),
            bind_milliseconds: Some(bind_ms),
        },
        claimed,
    })
}

/// `status.claim` for a pod claimed by an earlier reconcile that ended before it wrote status:
/// the session's pod still carries its pool label. `None` in every other case.
pub fn adopted(
    rs: &RSession,
    previous: Option<&RSessionStatus>,
    pod: Option<&Pod>,
) -> Option<ClaimStatus> {
    let pool = rs.spec.pool_ref.as_ref()?;
    if previous.is_some_and(|s| s.claim.is_some()) {
        return None;
    }
    let pod = pod?;
    (pod.labels().get(wk::LABEL_POOL) == Some(&pool.name)).then(|| ClaimStatus {
        pool: pool.name.clone(),
        warm: true,
        pod_name: Some(pod.name_any()),
        claimed_at: pod
            .annotations()
            .get(wk::ANNOTATION_CLAIMED_AT)
            .and_then(|t| t.parse().ok())
            .map(Time),
        bind_milliseconds: None,
    })
}

/// The Secret holding the Rserve login of session `session` whose current pod is `pod`
/// (`status.credentialsSecret`): a claimed pool pod's own `<pod>-credentials`, which its Rserve
/// reads and which the claim made the session's along with the pod (so a warm claim's Ready status
/// needs no Secret written first); else the session's `<session>-credentials`. Both hold the
/// same password once the session's own Secret is written.
pub fn credentials_secret(session: &str, pod: Option<&Pod>) -> String {
    match pod {
        Some(p) if p.labels().contains_key(wk::LABEL_POOL) => secret_name(&p.name_any()),
        _ => secret_name(session),
    }
}

/// The merge patch that binds pool pod `pod` (listed at `resource_version`) to RSession `rs`.
pub fn claim_patch(rs: &RSession, resource_version: &str, now: Timestamp) -> serde_json::Value {
    let name = rs.name_any();
    let owner = controller_owner_reference(&name, rs.metadata.uid.as_deref().unwrap_or_default());
    json!({
        "metadata": {
            "resourceVersion": resource_version,
            "labels": {
                wk::LABEL_SESSION: name,
                wk::LABEL_APP_INSTANCE: name,
            },
            "annotations": { wk::ANNOTATION_CLAIMED_AT: now.to_string() },
            "ownerReferences": [owner],
        }
    })
}

/// Tries to bind `rs` to a Ready, unclaimed pod of pool `pool` whose template hash is `hash`.
/// `Ok(None)`: none could be claimed (the pool is empty, still filling, or every candidate was
/// taken first); the caller starts the session cold.
///
/// Candidates are tried in random order (concurrent claimants spread over the pool), skipping
/// those another claim of this replica holds in `reserved`, until one patch succeeds; a candidate
/// another claimant took first costs one refused request. Returns the claimed pod as the patch
/// returned it.
///
/// # Errors
/// API errors other than the expected 404 and 409 answers.
pub async fn claim(
    client: &Client,
    reserved: &Reserved,
    namespace: &str,
    rs: &RSession,
    pool: &str,
    hash: &str,
) -> Result<Option<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{}={pool},{}={hash},!{}",
        wk::LABEL_POOL,
        wk::LABEL_POOL_TEMPLATE,
        wk::LABEL_SESSION
    );
    let candidates: Vec<Pod> = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(is_claimable)
        .collect();
    claim_among(client, reserved, namespace, rs, candidates).await
}

/// Tries to bind `rs` to one of `candidates` (pool pods believed Ready and unclaimed, each with
/// the resourceVersion it was read at), in random order, until one patch succeeds. Candidates
/// another claim of this replica holds in `reserved` are skipped; each one tried is reserved for
/// its patch and, when won, for a while after ([`Reserved::finish`]).
/// `Ok(None)`: every candidate had changed, was taken first or was held.
///
/// # Errors
/// API errors other than the expected 404 and 409 answers.
pub async fn claim_among(
    client: &Client,
    reserved: &Reserved,
    namespace: &str,
    rs: &RSession,
    mut candidates: Vec<Pod>,
) -> Result<Option<Pod>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    candidates.shuffle(&mut rand::rng());
    for candidate in candidates {
        let name = candidate.name_any();
        let Some(rv) = candidate.metadata.resource_version.as_deref() else {
            continue;
        };
        if !reserved.try_reserve(namespace, &name) {
            debug!(pod = %name, "pool pod held by another claim of this replica; trying the next");
            continue;
        }
        let patch = claim_patch(rs, rv, Timestamp::now());
        let answer = pods
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        reserved.finish(namespace, &name, answer.is_ok());
        match answer {
            Ok(pod) => return Ok(Some(pod)),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                debug!(pod = %name, code = e.code, "pool pod taken first; trying the next");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// The Rserve password of pool pod `pod`: remembered when this replica created the pod, else read
/// from its `<pod>-credentials` Secret. A claimed pod's Rserve already runs with it, so the
/// session's own Secret must hold the same one.
///
/// # Errors
/// API errors; [`Error::PoolPodCredentials`] when the Secret is missing or unusable (retried;
/// it cannot happen for a pod that became Ready, which mounts the Secret).
pub async fn pool_pod_password(ctx: &Context, namespace: &str, pod: &str) -> Result<String, Error> {
    if let Some(password) = ctx.pool_passwords.take(namespace, pod) {
        return Ok(password);
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    secrets
        .get_opt(&secret_name(pod))
        .await?
        .as_ref()
        .and_then(secret::existing_password)
        .ok_or_else(|| Error::PoolPodCredentials(pod.to_owned()))
}

/// How long after a warm claim the session's own Secret, Service and NetworkPolicy wait. The
/// session needs none of them to serve: the claimed pod keeps its own Secret (named in
/// `status.credentialsSecret`) and the pool's NetworkPolicy, and `status.endpoint` is the pod's
/// IP. Applying them at once put three writes per claim, and the NetworkPolicy enforcer's resync
/// for each new policy, into a burst of claims on the API server and the node's CPUs (in a burst
/// of 20 on two cores: kube-apiserver 1.1 and kube-router 1.0 CPU-seconds in 1.9 s).
pub const WARM_CHILDREN_DELAY: Duration = Duration::from_secs(3);

/// How much longer the children of a session bound warm by `claim` wait ([`WARM_CHILDREN_DELAY`]
/// from `claim.claimedAt`) at `now`; `None` when they are due (or the session was not claimed
/// warm, or the claim time is unknown).
pub fn children_wait(claim: Option<&ClaimStatus>, now: Timestamp) -> Option<Duration> {
    let claim = claim.filter(|c| c.warm)?;
    let claimed_at = claim.claimed_at.as_ref()?.0;
    let due = claimed_at.checked_add(WARM_CHILDREN_DELAY).ok()?;
    let left = now.duration_until(due);
    (left.is_positive())
        .then(|| Duration::try_from(left).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_pool_pods_own_secret_holds_the_login_else_the_sessions() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("warm-x7k2q".into());
        assert_eq!(credentials_secret("s1", Some(&pod)), "s1-credentials");
        pod.metadata.labels = Some([(wk::LABEL_POOL.to_owned(), "warm".to_owned())].into());
        assert_eq!(
            credentials_secret("s1", Some(&pod)),
            "warm-x7k2q-credentials"
        );
        assert_eq!(credentials_secret("s1", None), "s1-credentials");
    }

    #[test]
    fn the_claim_patch_is_conditional_and_moves_labels_and_owner_in_one_step() {
        let mut rs = RSession::new("s1", rsession_api::RSessionSpec::default());
        rs.metadata.uid = Some("rs-uid".into());
        let p = claim_patch(&rs, "42", "2026-01-01T00:00:00Z".parse().expect("ts"));
        assert_eq!(p["metadata"]["resourceVersion"], "42");
        assert_eq!(p["metadata"]["labels"][wk::LABEL_SESSION], "s1");
        assert_eq!(p["metadata"]["labels"][wk::LABEL_APP_INSTANCE], "s1");
        assert!(
            p["metadata"]["labels"].get(wk::LABEL_POOL).is_none(),
            "the pool label stays: the pool's NetworkPolicy keeps covering the pod"
        );
        let owners = p["metadata"]["ownerReferences"].as_array().expect("owners");
        assert_eq!(
            owners.len(),
            1,
            "the pool's reference is replaced, not kept"
        );
        assert_eq!(owners[0]["kind"], "RSession");
        assert_eq!(owners[0]["uid"], "rs-uid");
        assert_eq!(owners[0]["controller"], true);
        assert_eq!(
            p["metadata"]["annotations"][wk::ANNOTATION_CLAIMED_AT],
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn a_warm_claims_children_wait_three_seconds_from_the_claim() {
        let claimed = Timestamp::from_second(1_000_000).expect("time");
        let claim = |warm| ClaimStatus {
            pool: "web".into(),
            warm,
            pod_name: Some("web-abcde".into()),
            claimed_at: Some(Time(claimed)),
            bind_milliseconds: Some(100),
        };
        let at = |ms: i64| claimed + jiff::SignedDuration::from_millis(ms);
        assert_eq!(
            children_wait(Some(&claim(true)), at(0)),
            Some(WARM_CHILDREN_DELAY)
        );
        assert_eq!(
            children_wait(Some(&claim(true)), at(2_500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(children_wait(Some(&claim(true)), at(3_000)), None);
        assert_eq!(children_wait(Some(&claim(false)), at(0)), None, "cold");
        assert_eq!(children_wait(None, at(0)), None);
        let unknown = ClaimStatus {
            claimed_at: None,
            ..claim(true)
        };
        assert_eq!(children_wait(Some(&unknown), at(0)), None);
    }
}
