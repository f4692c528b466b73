//! The operator's one error type.

use crate::validate::SpecError;

/// Why a reconcile did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused or could not be reached (transient: retried with backoff).
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The spec cannot be realised as written (recorded in status; retried only when the
    /// RSession changes, or later for a missing database Secret).
    #[error("invalid RSession spec: {0}")]
    InvalidSpec(#[from] SpecError),
    /// A claimed pool pod's credentials Secret is missing or holds no usable password
    /// (transient: retried with backoff).
    #[error("the credentials Secret of pool pod {0:?} is missing or holds no usable password")]
    PoolPodCredentials(String),
    /// The RSession (or RSessionPool) was deleted while it was being reconciled (its status
    /// write found no object). [`crate::reconcile::reconcile`] ends such a reconcile quietly;
    /// the pool controller's error policy waits for a change without a warning.
    #[error("the object was deleted during the reconcile")]
    Gone,
    /// The database host is a DNS name that did not resolve (transient: retried with backoff).
    #[error("database host {host:?} did not resolve: {reason}")]
    DatabaseHostUnresolved {
        /// The `host` value from the database Secret.
        host: String,
        /// Resolver error.
        reason: String,
    },
}

impl Error {
    /// Short stable label for the `rsession_operator_reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube_api",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::DatabaseHostUnresolved { .. } => "database_dns",
            Self::PoolPodCredentials(_) => "pool_pod_credentials",
            Self::Gone => "gone",
        }
    }
}
