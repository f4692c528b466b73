//! Activity stamps: after evaluations the annotation
//! `rsession.dev/last-activity` is applied in the background, at most once per
//! interval per session, retried with backoff while the API is unavailable.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::core::TypeMeta;
use rsession_api::RSession;
use rsession_api::well_known as wk;
use serde::Serialize;
use tokio::time::Instant;

use super::{ACTIVITY_FIELD_MANAGER, KubernetesConfig, api_error_code};
use crate::errors::ErrorCode;

/// The last activity stamp sent for a session.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// When it was sent.
    at: Instant,
    /// Increases with every stamp; a retry goes on only while its stamp is
    /// the session's newest.
    seq: u64,
}

/// Longest wait between two attempts of one activity stamp.
const ACTIVITY_RETRY_MAX_DELAY: Duration = Duration::from_secs(30);

/// The apply body of an activity stamp: only `metadata.annotations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ActivityApply {
    #[serde(flatten)]
    types: TypeMeta,
    metadata: ObjectMeta,
}

/// The activity stamps of one backend.
pub(super) struct Activity {
    rsessions: Api<RSession>,
    /// Shortest time between two stamps of one session.
    interval: Duration,
    /// First wait before retrying a failed stamp.
    retry_delay: Duration,
    /// How long a failed stamp is retried.
    retry_window: Duration,
    /// The last stamp of each session (throttle, and which retry is still
    /// current), by session id.
    stamped: Arc<Mutex<HashMap<String, Stamp>>>,
    /// Sequence number of the next stamp.
    stamps: AtomicU64,
}

impl Activity {
    /// Stamps on `rsessions` with the intervals of `config`.
    pub(super) fn new(rsessions: Api<RSession>, config: &KubernetesConfig) -> Self {
        Activity {
            rsessions,
            interval: config.activity_interval,
            retry_delay: config.activity_retry_delay,
            retry_window: config.activity_retry_window,
            stamped: Arc::new(Mutex::new(HashMap::new())),
            stamps: AtomicU64::new(0),
        }
    }

    /// Forget session `id` (closed): its retry, if any, stops.
    pub(super) fn forget(&self, id: &str) {
        self.stamped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Stamp `rsession.dev/last-activity` on `id` in the background unless
    /// the session was stamped less than `activity_interval` ago; the task
    /// retries while the API is unavailable. Returns the task, if one started.
    pub(super) fn stamp(&self, owner: &str, id: &str) -> Option<tokio::task::JoinHandle<()>> {
        self.stamp_unless_recent(owner, id, true)
    }

    /// Stamp `id` now whatever the throttle says (to bring an idle-expired
    /// session back); await the task for the stamp to be applied.
    pub(super) fn stamp_now(&self, owner: &str, id: &str) -> tokio::task::JoinHandle<()> {
        self.stamp_unless_recent(owner, id, false)
            .unwrap_or_else(|| tokio::spawn(async {}))
    }

    fn stamp_unless_recent(
        &self,
        owner: &str,
        id: &str,
        throttle: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let now = Instant::now();
        let seq = {
            let mut stamped = self.stamped.lock().unwrap_or_else(|p| p.into_inner());
            if throttle
                && stamped
                    .get(id)
                    .is_some_and(|s| now.duration_since(s.at) < self.interval)
            {
                return None;
            }
            let seq = self.stamps.fetch_add(1, Ordering::Relaxed);
            stamped.insert(id.to_string(), Stamp { at: now, seq });
            seq
        };
        let body = ActivityApply {
            types: rsession_api::type_meta(),
            metadata: ObjectMeta {
                name: Some(id.to_string()),
                annotations: Some(BTreeMap::from([(
                    wk::ANNOTATION_LAST_ACTIVITY.to_string(),
                    jiff::Timestamp::now()
                        .round(jiff::Unit::Second)
                        .unwrap_or_else(|_| jiff::Timestamp::now())
                        .to_string(),
                )])),
                ..ObjectMeta::default()
            },
        };
        let api = self.rsessions.clone();
        let stamped = self.stamped.clone();
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry_delay)
            .with_max_delay(ACTIVITY_RETRY_MAX_DELAY.max(self.retry_delay))
            .with_total_delay(Some(self.retry_window))
            .without_max_times()
            .with_jitter();
        let id = id.to_string();
        let owner = owner.to_string();
        // The evaluation that asked for this stamp has already returned; a
        // failure (Kubernetes API down) is logged and retried here, never
        // reported to the caller.
        Some(tokio::spawn(async move {
            let params = PatchParams::apply(ACTIVITY_FIELD_MANAGER).force();
            // Only the newest stamp of a session is worth retrying: a newer one
            // carries a later time, and a closed session needs none.
            let current = || {
                stamped
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .is_some_and(|s| s.seq == seq)
            };
            let patch = Patch::Apply(&body);
            let result = (|| api.patch(&id, &params, &patch))
                .retry(backoff)
                .when(|e| api_error_code(e) == ErrorCode::BackendUnavailable && current())
                .notify(|e, after| {
                    tracing::warn!(session_id = %id, owner = %owner, error = %e, retry_in = ?after, "stamping rsession.dev/last-activity failed; will retry");
                })
                .await;
            match result {
                Ok(_) => tracing::debug!(session_id = %id, "stamped rsession.dev/last-activity"),
                Err(e) if current() => {
                    tracing::warn!(session_id = %id, owner = %owner, error = %e, "stamping rsession.dev/last-activity failed; gave up")
                }
                Err(e) => {
                    tracing::debug!(session_id = %id, error = %e, "a stamp was superseded while it was retried")
                }
            }
        }))
    }
}
