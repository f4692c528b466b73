//! Prometheus metrics (text exposition format at `/metrics`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::Error;

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`Error::metric_label`].
    pub error: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles started (`rsession_operator_reconciles_total`).
    pub reconciles: Counter,
    /// Reconciles that failed, by error label (`rsession_operator_reconcile_errors_total`).
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile duration in seconds (`rsession_operator_reconcile_duration_seconds`).
    pub duration: Histogram,
    /// 1 while this replica holds the leader Lease (`rsession_operator_leader`).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rsession_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration in seconds",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            leader,
        }
    }
}

impl Metrics {
    /// Records one finished reconcile.
    pub fn observe(&self, elapsed: Duration, result: Result<(), &Error>) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
        if let Err(e) = result {
            self.errors
                .get_or_create(&ErrorLabels {
                    error: e.metric_label().to_owned(),
                })
                .inc();
        }
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::SpecError;

    #[test]
    fn errors_are_counted_by_metric_label() {
        let m = Metrics::default();
        m.observe(Duration::from_millis(3), Ok(()));
        m.observe(
            Duration::from_millis(3),
            Err(&Error::InvalidSpec(SpecError::MissingMetadata("uid"))),
        );
        let text = m.encode();
        assert!(
            text.contains("rsession_operator_reconciles_total 2"),
            "{text}"
        );
        assert!(
            text.contains("rsession_operator_reconcile_errors_total{error=\"invalid_spec\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rsession_operator_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }
}
