//! The `kubernetes` backend: one RSession object (`rsession.dev/v1alpha1`) per
//! session, reconciled into a locked-down Rserve pod by rsession-operator.
//!
//! - create: server-side apply of a typed RSession (field manager
//!   [`FIELD_MANAGER`]) labelled with the caller's [`owner_label_value`], then a
//!   watch on it until its `Ready` condition is `True`, reporting each phase as
//!   progress; then the endpoint (`status.endpoint`) and the Rserve login from
//!   the Secret named by `status.credentialsSecret` (keys `username`,
//!   `password`). A Starting session whose status names its pod IP is logged
//!   in to there meanwhile, and is usable as soon as that succeeds, up to a
//!   readiness-probe period before Ready (`early.rs`). The in-cluster server reads those
//!   states from one shared watch of its RSessions (`session_watch.rs`).
//! - pools: with a pool (`create_session`'s `pool`, else `--default-pool`)
//!   the RSessionPool is read first and the RSession names it in
//!   `spec.poolRef` with the pod-shaping fields unset; the operator binds
//!   it to a Ready pool pod (warm) or starts a pod (cold, the pool was
//!   empty), and `status.claim` says which (`pools.rs`).
//! - every lookup checks the owner label, so another caller's session is
//!   `session_not_found`, never revealed.
//! - activity: after evaluations the annotation `rsession.dev/last-activity`
//!   (RFC 3339) is applied in the background, at most once per
//!   [`KubernetesConfig::activity_interval`] per session, with its own field
//!   manager [`ACTIVITY_FIELD_MANAGER`] (so the stamp never removes the
//!   fields the create apply owns). A stamp that fails because the API is
//!   unavailable is retried in the background with backoff; it never fails
//!   the evaluation.
//! - API failures map to tool errors by [`api_error_code`]: an unreachable or
//!   overloaded apiserver is `backend_unavailable` (retryable), within seconds
//!   (`client.rs`: a 5 s connect timeout and three quick retries of 429/503/504).
//!
//! Files, one job each: `backend.rs` (the [`crate::session::Backend`] over RSession objects),
//! `status.rs` (progress and errors read from an RSession's status),
//! `pools.rs` (the pool of a new session and how it started), `early.rs` (the login before
//! Ready),
//! `activity.rs` (activity stamps), `checkpoints.rs` (the checkpoint
//! handshake before expiry, periodic checkpoint intervals), `events.rs`
//! (Events on the RSession: who created, closed or resumed it), `errors.rs` (API failures as tool errors;
//! the owner label). Contract names (labels, annotations, condition types,
//! readiness) come from `rsession-api`.
//!
//! Kubernetes API calls: `rsessions` patch (apply), get, list, watch, delete;
//! `rsessionpools` get, list, watch; `secrets` get; `events.k8s.io` events create — the verbs the chart's
//! `rsession-mcp` Role grants.

mod activity;
mod backend;
mod checkpoints;
pub mod client;
mod early;
mod errors;
mod events;
mod pools;
mod session_watch;
mod status;

#[cfg(test)]
mod outage_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;

use std::time::Duration;

use rsession_api::RSessionSpec;
use rsession_api::well_known as wk;

pub use backend::{KubernetesBackend, credentials_from};
pub use errors::{api_error_code, owner_label_value};
pub use pools::{MAX_POOL_NAME, pod_fields_set, pool_conflicts, valid_pool_name};
pub use rsession_api::well_known::{ANNOTATION_OWNER_NAME, LABEL_OWNER};
pub use status::{PROGRESS_TOTAL, progress_step};

/// Server-side apply field manager of the RSession objects this backend creates.
pub const FIELD_MANAGER: &str = "rsession-mcp";
/// Field manager of the `rsession.dev/last-activity` stamp (separate from
/// [`FIELD_MANAGER`] so an annotation-only apply leaves spec and labels alone).
pub const ACTIVITY_FIELD_MANAGER: &str = "rsession-mcp-activity";

/// Settings of the Kubernetes backend.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// Namespace holding the RSession objects (the sessions namespace).
    pub namespace: String,
    /// How long `create_session` waits for the Ready condition before
    /// answering `session_not_ready` (the RSession is kept and usable later).
    pub ready_timeout: Duration,
    /// Workspace directory inside the session pod ([`wk::WORKSPACE_PATH`]).
    pub workspace: String,
    /// Shortest time between two activity stamps of one session.
    pub activity_interval: Duration,
    /// First wait before retrying a failed activity stamp (then doubling, up
    /// to 30 s between attempts).
    pub activity_retry_delay: Duration,
    /// How long a failed activity stamp is retried while the Kubernetes API
    /// is unavailable; a newer stamp of the session, or closing it, ends the
    /// retry sooner.
    pub activity_retry_window: Duration,
    /// Spec of new RSessions (empty: the operator's defaults).
    pub spec: RSessionSpec,
    /// RSessionPool new sessions come from when `create_session` names none
    /// (`--default-pool`); not used for sessions whose spec it cannot serve
    /// ([`pool_conflicts`]), nor while it does not exist.
    pub default_pool: Option<String>,
    /// Rserve's port at a session pod's IP ([`wk::RSERVE_PORT`]), where a Starting session is
    /// logged in to before the pod turns Ready (`early.rs`).
    pub rserve_port: u16,
}

impl KubernetesConfig {
    /// Defaults for `namespace`: 120 s ready timeout, `/workspace`, stamps at
    /// most every 10 s (a failed one retried from 1 s on, for up to an hour),
    /// default spec, no default pool.
    pub fn new(namespace: impl Into<String>) -> Self {
        KubernetesConfig {
            namespace: namespace.into(),
            ready_timeout: Duration::from_secs(120),
            workspace: wk::WORKSPACE_PATH.to_string(),
            activity_interval: Duration::from_secs(10),
            activity_retry_delay: Duration::from_secs(1),
            activity_retry_window: Duration::from_secs(3600),
            spec: RSessionSpec::default(),
            default_pool: None,
            rserve_port: u16::try_from(wk::RSERVE_PORT).unwrap_or(6311),
        }
    }
}
