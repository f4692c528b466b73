//! Reading an RSession's status: the condition types the operator maintains and what "ready"
//! means, so the operator (which writes them) and the MCP frontend (which waits on them) cannot
//! drift apart.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::v1alpha1::{Phase, RSession, RSessionStatus};

/// Condition type (`status.conditions[].type`): the kubelet's readiness probe connected to
/// Rserve at `status.endpoint`. Also the CRD's `Ready` print column.
pub const CONDITION_READY: &str = "Ready";
/// Condition type: mirrors the session pod's own `PodScheduled` condition (`NoPod` while there
/// is no pod).
pub const CONDITION_POD_SCHEDULED: &str = "PodScheduled";
/// Condition type: the idle timeout or maximum lifetime passed (reason `IdleTimeout` or
/// `MaxLifetime`; `Active` while False).
pub const CONDITION_EXPIRED: &str = "Expired";
/// Condition type: R state was lost because the session pod was replaced (reason
/// `PodReplaced`); kept once set.
pub const CONDITION_STATE_RESET: &str = "StateReset";

/// Condition type, only with `spec.poolRef`: True (reason `ClaimedWarm`) when the session was
/// bound to a Ready pod of its RSessionPool, False (reason `PoolEmpty`) when the pool had none
/// and a pod was started for it (a cold start).
pub const CONDITION_CLAIMED: &str = "Claimed";

/// `status` value of a condition that holds (Kubernetes API conventions: `True`, `False`,
/// `Unknown`).
pub const CONDITION_TRUE: &str = "True";

impl RSessionStatus {
    /// The condition of type `type_` (one of the `CONDITION_*` constants), if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of type `type_` is present with status `True`.
    pub fn condition_true(&self, type_: &str) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.status == CONDITION_TRUE)
    }

    /// Whether a QAP1 client can connect now: the [`CONDITION_READY`] condition is `True` and
    /// the status names both `endpoint` and `credentialsSecret` (what a client needs to reach
    /// and log in to Rserve).
    pub fn is_ready(&self) -> bool {
        self.endpoint.is_some()
            && self.credentials_secret.is_some()
            && self.condition_true(CONDITION_READY)
    }
}

impl RSession {
    /// [`RSessionStatus::is_ready`] of this object; false while it has no status.
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(RSessionStatus::is_ready)
    }

    /// `status.phase`; `None` before the operator first wrote status.
    pub fn phase(&self) -> Option<Phase> {
        self.status.as_ref().and_then(|s| s.phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RSessionSpec;

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Test".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().expect("timestamp"),
            ),
        }
    }

    fn ready_status() -> RSessionStatus {
        RSessionStatus {
            phase: Some(Phase::Ready),
            conditions: vec![
                condition(CONDITION_POD_SCHEDULED, "True"),
                condition(CONDITION_READY, "True"),
            ],
            endpoint: Some("10.0.0.1:6311".into()),
            credentials_secret: Some("s-credentials".into()),
            ..RSessionStatus::default()
        }
    }

    fn rsession(status: Option<RSessionStatus>) -> RSession {
        let mut rs = RSession::new("s", RSessionSpec::default());
        rs.status = status;
        rs
    }

    #[test]
    fn ready_needs_the_condition_an_endpoint_and_credentials() {
        assert!(rsession(Some(ready_status())).is_ready());

        let mut no_endpoint = ready_status();
        no_endpoint.endpoint = None;
        assert!(!rsession(Some(no_endpoint)).is_ready());

        let mut no_secret = ready_status();
        no_secret.credentials_secret = None;
        assert!(!rsession(Some(no_secret)).is_ready());

        let mut not_ready = ready_status();
        not_ready.conditions[1].status = "False".into();
        assert!(!rsession(Some(not_ready)).is_ready());

        let mut no_condition = ready_status();
        no_condition
            .conditions
            .retain(|c| c.type_ != CONDITION_READY);
        assert!(!rsession(Some(no_condition)).is_ready());
    }

    #[test]
    fn ready_ignores_the_phase_and_other_conditions() {
        // The condition, not the phase, is the contract (the CRD's Ready column reads it).
        let mut status = ready_status();
        status.phase = Some(Phase::Starting);
        status.conditions[0].status = "False".into();
        assert!(rsession(Some(status)).is_ready());
    }

    #[test]
    fn no_status_is_not_ready_and_has_no_phase() {
        let rs = rsession(None);
        assert!(!rs.is_ready());
        assert_eq!(rs.phase(), None);
    }

    #[test]
    fn phase_reads_status_phase() {
        assert_eq!(rsession(Some(ready_status())).phase(), Some(Phase::Ready));
        let expired = RSessionStatus {
            phase: Some(Phase::Expired),
            ..RSessionStatus::default()
        };
        assert_eq!(rsession(Some(expired)).phase(), Some(Phase::Expired));
        assert_eq!(
            rsession(Some(RSessionStatus::default())).phase(),
            None,
            "status without a phase"
        );
    }

    #[test]
    fn condition_lookup_by_type() {
        let status = ready_status();
        assert_eq!(
            status.condition(CONDITION_READY).map(|c| c.status.as_str()),
            Some("True")
        );
        assert!(status.condition(CONDITION_EXPIRED).is_none());
        assert!(!status.condition_true(CONDITION_EXPIRED));
    }

    #[test]
    fn condition_types_match_the_crd_print_column() {
        let crd =
            serde_json::to_value(<RSession as kube::CustomResourceExt>::crd()).expect("crd json");
        let columns = &crd["spec"]["versions"][0]["additionalPrinterColumns"];
        let ready = columns
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "Ready"))
            .expect("Ready column");
        assert_eq!(
            ready["jsonPath"],
            format!(".status.conditions[?(@.type==\"{CONDITION_READY}\")].status")
        );
    }
}
