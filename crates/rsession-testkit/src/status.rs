//! The Ready status of an RSession as the operator writes it (phase `Ready`, a `Ready`
//! condition that is `True`, `endpoint`, `credentialsSecret`), for tests that play the
//! operator's part, and the server-side apply body that writes a status through the status
//! subresource. Condition types and what Ready means come from [`rsession_api::status`].

use jiff::{Timestamp, Unit};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::TypeMeta;
use rsession_api::status::{CONDITION_READY, CONDITION_TRUE};
use rsession_api::{Phase, RSessionStatus};
use serde::Serialize;

/// Reason of the Ready condition the operator sets once Rserve accepts connections.
pub const READY_REASON: &str = "RserveReady";

/// The operator's message while a session is Ready.
pub const READY_MESSAGE: &str = "Rserve accepts connections";

/// Builder of a Ready status: [`ReadyStatus::new`], optional setters, then
/// [`ReadyStatus::apply_to`] or [`ReadyStatus::build`]. The result satisfies
/// [`RSessionStatus::is_ready`].
#[derive(Debug, Clone)]
pub struct ReadyStatus {
    endpoint: String,
    credentials_secret: String,
    observed_generation: Option<i64>,
    condition_message: String,
    since: Timestamp,
}

impl ReadyStatus {
    /// Ready at `endpoint` (`host:port` of Rserve) with credentials in Secret
    /// `credentials_secret`; condition message [`READY_MESSAGE`], transition now (whole
    /// seconds, as the API stores it), no observed generation.
    pub fn new(endpoint: impl Into<String>, credentials_secret: impl Into<String>) -> Self {
        ReadyStatus {
            endpoint: endpoint.into(),
            credentials_secret: credentials_secret.into(),
            observed_generation: None,
            condition_message: READY_MESSAGE.into(),
            since: Timestamp::now()
                .round(Unit::Second)
                .unwrap_or_else(|_| Timestamp::now()),
        }
    }

    /// `observedGeneration` of the status and of its Ready condition (`metadata.generation`
    /// of the RSession).
    pub fn observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    /// `message` of the Ready condition.
    pub fn condition_message(mut self, message: impl Into<String>) -> Self {
        self.condition_message = message.into();
        self
    }

    /// `lastTransitionTime` of the Ready condition.
    pub fn since(mut self, at: Timestamp) -> Self {
        self.since = at;
        self
    }

    /// The Ready condition alone (`True`, reason [`READY_REASON`]).
    pub fn condition(&self) -> Condition {
        Condition {
            type_: CONDITION_READY.into(),
            status: CONDITION_TRUE.into(),
            reason: READY_REASON.into(),
            message: self.condition_message.clone(),
            last_transition_time: Time(self.since),
            observed_generation: self.observed_generation,
        }
    }

    /// Turns `status` Ready: phase `Ready`, message [`READY_MESSAGE`], `endpoint`, `podIP` (the
    /// endpoint's IP, as the operator writes both), `credentialsSecret`, `observedGeneration`,
    /// and the Ready condition as the only condition; other fields stay.
    pub fn apply_to(self, status: &mut RSessionStatus) {
        status.pod_ip = self
            .endpoint
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.ip().to_string());
        status.conditions = vec![self.condition()];
        status.phase = Some(Phase::Ready);
        status.message = Some(READY_MESSAGE.into());
        status.observed_generation = self.observed_generation;
        status.endpoint = Some(self.endpoint);
        status.credentials_secret = Some(self.credentials_secret);
    }

    /// A Ready status with only the fields [`ReadyStatus::apply_to`] sets.
    pub fn build(self) -> RSessionStatus {
        let mut status = RSessionStatus::default();
        self.apply_to(&mut status);
        status
    }
}

/// Server-side apply body for the status subresource of an RSession: `apiVersion` and
/// `kind` from [`rsession_api::type_meta`], and `status`. Send it with
/// `Api::patch_status(name, &PatchParams::apply(manager).force(), &Patch::Apply(&body))`.
#[derive(Debug, Serialize)]
pub struct StatusApply<'a> {
    #[serde(flatten)]
    types: TypeMeta,
    status: &'a RSessionStatus,
}

impl<'a> StatusApply<'a> {
    /// The body that sets `status`.
    pub fn new(status: &'a RSessionStatus) -> Self {
        StatusApply {
            types: rsession_api::type_meta(),
            status,
        }
    }
}
