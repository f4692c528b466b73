//! Pure status computation: phase, conditions (with stable transition times) and the other
//! status fields, from what the reconciler observed.

use std::net::{IpAddr, SocketAddr};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use rsession_api::status::{
    CONDITION_CLAIMED, CONDITION_EXPIRED, CONDITION_POD_SCHEDULED, CONDITION_READY,
    CONDITION_STATE_RESET,
};
use rsession_api::well_known as wk;
use rsession_api::{ClaimStatus, Phase, RSessionStatus};

use crate::build::pod::CONTAINER_NAME;
use crate::checkpoint::Ending;
use crate::lifecycle::ExpiryReason;

/// The kubelet's pod condition types this module reads (Kubernetes `PodCondition.type`).
const POD_READY: &str = "Ready";
const POD_SCHEDULED: &str = "PodScheduled";

/// `t` truncated to whole seconds: Kubernetes serialises `metav1.Time` with second precision,
/// so status times must be whole seconds for an unchanged world to compare equal to what the
/// apiserver stored (and not be written again).
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Everything [`compute`] needs, gathered by the reconciler.
#[derive(Clone, Debug, Default)]
pub struct Observed<'a> {
    /// `metadata.generation` of the RSession.
    pub generation: Option<i64>,
    /// The status currently stored on the RSession.
    pub previous: Option<&'a RSessionStatus>,
    /// Why the spec cannot be realised (`InvalidSpec`-style reason, message).
    pub spec_error: Option<(&'static str, String)>,
    /// Expired now, and why.
    pub expired: Option<ExpiryReason>,
    /// `spec.lifecycle.suspend`.
    pub suspended: bool,
    /// Name of the current session pod (kept when the pod is gone, for reference).
    pub pod_name: Option<String>,
    /// The current session pod as last read from the apiserver, if it exists.
    pub pod: Option<&'a Pod>,
    /// Set when this reconcile replaced a lost pod: the old pod's name.
    pub replaced_pod: Option<String>,
    /// Name of the credentials Secret.
    pub credentials_secret: Option<String>,
    /// Latest activity stamp from the annotation.
    pub last_activity: Option<Timestamp>,
    /// Expiring, but the pod is held for the MCP frontend's checkpoint asked for at this time
    /// ([`crate::checkpoint`]): phase Checkpointing.
    pub checkpointing: Option<Timestamp>,
    /// Set by the reconcile that bound a session with `spec.poolRef` (warm or cold); later
    /// reconciles keep the stored one.
    pub claim: Option<ClaimStatus>,
    /// Clock reading used for new transition times.
    pub now: Timestamp,
}

/// How the session pod is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Not scheduled to a node yet (reason, message from the PodScheduled condition).
    Unscheduled(String, String),
    /// Scheduled; Rserve not ready yet (what a container waits on, such as "R container
    /// waiting: ErrImagePull", if any).
    Starting(Option<String>),
    /// Rserve passes its readiness probe at this `ip:6311` (see [`pod_endpoint`]).
    Ready(String),
    /// The pod reports Ready but has no usable `status.podIP` yet.
    ReadyWithoutAddress,
    /// The pod ended: reason (OOMKilled, Evicted, Error, RserveExited) and message.
    Failed(String, String),
}

fn condition_true(pod: &Pod, type_: &str) -> Option<bool> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status == "True")
}

/// `ip:6311` of Rserve at the pod's own address (`status.podIP`; IPv6 in brackets, as in
/// `[fd00::c]:6311`). The kubelet's TCP readiness probe connects to exactly this address, so
/// when the pod is Ready the address accepts connections; unlike the Service's ClusterIP it
/// needs no kube-proxy programming first. `None` while the pod has no IP.
pub fn pod_endpoint(pod: &Pod) -> Option<String> {
    let ip = pod_ip(pod)?;
    let port = u16::try_from(wk::RSERVE_PORT).ok()?;
    Some(SocketAddr::new(ip, port).to_string())
}

/// The pod's `status.podIP` when it is an IP address.
pub fn pod_ip(pod: &Pod) -> Option<IpAddr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.trim().parse().ok()
}

/// The memory limit of the R container, as written in the pod (for example `2Gi`).
fn memory_limit(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
}

/// Classifies a session pod from its status.
pub fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.first())
        .cloned();
    let terminated = container
        .as_ref()
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone());
    match status.phase.as_deref() {
        Some("Failed") => {
            let (reason, message) = match (&status.reason, &terminated) {
                (Some(r), _) => (r.clone(), status.message.clone().unwrap_or_default()),
                (None, Some(t)) => {
                    let reason = t.reason.clone().unwrap_or_else(|| "Error".into());
                    // The kernel killed Rserve's parent at the cgroup memory limit; say which.
                    let oom = match memory_limit(pod) {
                        Some(limit) if reason == "OOMKilled" => {
                            format!(" (memory limit {limit} exceeded)")
                        }
                        _ => String::new(),
                    };
                    let message = format!(
                        "R container exited with code {}{oom}{}",
                        t.exit_code,
                        t.message
                            .as_deref()
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    );
                    (reason, message)
                }
                (None, None) => ("Error".into(), status.message.clone().unwrap_or_default()),
            };
            return PodState::Failed(reason, message);
        }
        Some("Succeeded") => {
            return PodState::Failed(
                "RserveExited".into(),
                "Rserve exited; the session's R state is gone".into(),
            );
        }
        _ => {}
    }
    if condition_true(pod, POD_READY) == Some(true) {
        return pod_endpoint(pod).map_or(PodState::ReadyWithoutAddress, PodState::Ready);
    }
    if condition_true(pod, POD_SCHEDULED) != Some(true) {
        let cond = status
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == POD_SCHEDULED));
        return PodState::Unscheduled(
            cond.and_then(|c| c.reason.clone())
                .unwrap_or_else(|| "Pending".into()),
            cond.and_then(|c| c.message.clone()).unwrap_or_default(),
        );
    }
    let waiting = container
        .and_then(|c| c.state)
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason)
        .map(|reason| format!("R container waiting: {reason}"))
        .or_else(|| proxy_waiting(&status));
    PodState::Starting(waiting)
}

/// Why the database proxy sidecar holds the pod back, if it does: its waiting reason (such as
/// CrashLoopBackOff or ErrImagePull) with its last exit's message (the entrypoint names the
/// Secret key it cannot use).
fn proxy_waiting(status: &k8s_openapi::api::core::v1::PodStatus) -> Option<String> {
    let proxy = status
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == crate::build::db_proxy::CONTAINER_NAME)?;
    let reason = proxy.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
    let last = proxy
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.message.as_deref())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Some(format!("db-proxy sidecar waiting: {reason}{last}"))
}

/// Sets condition `type_` in `conditions`, keeping its `lastTransitionTime` from `previous`
/// when the status did not change (Kubernetes API conventions, "Typical status properties").
pub fn set_condition(conditions: &mut Vec<Condition>, previous: &[Condition], new: Condition) {
    let new = since_last_change(new, previous);
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

/// `new` with the `lastTransitionTime` of the same condition in `previous` when its status did
/// not change.
pub fn since_last_change(mut new: Condition, previous: &[Condition]) -> Condition {
    if let Some(old) = previous.iter().find(|c| c.type_ == new.type_)
        && old.status == new.status
    {
        new.last_transition_time = old.last_transition_time.clone();
    }
    new
}

/// A condition of `type_` (status `True` or `False`) observed at `generation`, transitioning
/// `now` (see [`since_last_change`] to keep an earlier transition time).
pub fn new_condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(whole_seconds(now)),
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    obs: &Observed<'_>,
) -> Condition {
    new_condition(type_, status, reason, message, obs.generation, obs.now)
}

/// Computes the new status from `obs`.
pub fn compute(obs: &Observed<'_>) -> RSessionStatus {
    let previous_conditions: &[Condition] = obs
        .previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let pod_state = obs.pod.map(pod_state);

    let (phase, ready_reason, message) = match (&obs.spec_error, obs.expired, &pod_state) {
        (Some((reason, msg)), _, _) => (Phase::Failed, *reason, msg.clone()),
        (None, _, _) if obs.checkpointing.is_some() => (
            Phase::Checkpointing,
            "Checkpointing",
            format!(
                "{}; the MCP frontend is saving R state into the workspace before the pod is deleted",
                if obs.suspended {
                    Ending::Suspended
                } else {
                    obs.expired.map_or(Ending::Suspended, Ending::Expired)
                }
                .describe()
            ),
        ),
        (None, Some(reason), _) => (
            Phase::Expired,
            "Expired",
            match reason {
                ExpiryReason::IdleTimeout => {
                    "idle timeout passed; the pod was deleted (new activity restarts it)"
                }
                ExpiryReason::MaxLifetime => "maximum lifetime passed; the pod was deleted",
            }
            .to_owned(),
        ),
        (None, None, _) if obs.suspended => (
            Phase::Suspended,
            "Suspended",
            "spec.lifecycle.suspend is true; the pod was deleted".to_owned(),
        ),
        (None, None, Some(PodState::Failed(reason, msg))) => (
            Phase::Failed,
            "PodFailed",
            format!(
                "pod failed: {reason}{}",
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                }
            ),
        ),
        (None, None, Some(PodState::Ready(_))) => (
            Phase::Ready,
            "RserveReady",
            "Rserve accepts connections".to_owned(),
        ),
        (None, None, Some(PodState::ReadyWithoutAddress)) => (
            Phase::Starting,
            "Starting",
            "the pod is Ready but has no IP address (status.podIP) yet".to_owned(),
        ),
        (None, None, Some(PodState::Starting(waiting))) => (
            Phase::Starting,
            "Starting",
            match waiting {
                Some(w) => w.clone(),
                None => "Rserve is starting".to_owned(),
            },
        ),
        (None, None, Some(PodState::Unscheduled(reason, msg))) => (
            Phase::Pending,
            "PodPending",
            format!(
                "pod not scheduled: {reason}{}",
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(": {msg}")
                }
            ),
        ),
        (None, None, None) => (
            Phase::Pending,
            "PodPending",
            "creating the session pod".to_owned(),
        ),
    };

    let mut conditions = Vec::new();
    let is_ready = phase == Phase::Ready;
    set_condition(
        &mut conditions,
        previous_conditions,
        condition(
            CONDITION_READY,
            is_ready,
            ready_reason,
            message.clone(),
            obs,
        ),
    );
    let scheduled = obs
        .pod
        .and_then(|p| condition_true(p, POD_SCHEDULED))
        .unwrap_or(false);
    let pod_scheduled_reason = obs.pod.and_then(|p| {
        p.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == POD_SCHEDULED)?
            .reason
            .clone()
    });
    let scheduled_reason = match (&obs.pod, scheduled) {
        (None, _) => "NoPod".to_owned(),
        (Some(_), true) => "Scheduled".to_owned(),
        (Some(_), false) => pod_scheduled_reason.unwrap_or_else(|| "NotScheduled".to_owned()),
    };
    set_condition(
        &mut conditions,
        previous_conditions,
        condition(
            CONDITION_POD_SCHEDULED,
            scheduled,
            &scheduled_reason,
            "",
            obs,
        ),
    );
    let (expired, expired_reason) = match obs.expired {
        Some(r) => (true, r.as_str()),
        None => (false, "Active"),
    };
    set_condition(
        &mut conditions,
        previous_conditions,
        condition(CONDITION_EXPIRED, expired, expired_reason, "", obs),
    );

    let previous_resets = obs.previous.and_then(|p| p.state_resets).unwrap_or(0);
    let state_resets = previous_resets + i32::from(obs.replaced_pod.is_some());
    match &obs.replaced_pod {
        Some(old) => set_condition(
            &mut conditions,
            previous_conditions,
            condition(
                CONDITION_STATE_RESET,
                true,
                "PodReplaced",
                format!(
                    "pod {old} was lost and replaced by {}; R state was reset (a Persistent /workspace keeps its files)",
                    obs.pod_name.as_deref().unwrap_or("a new pod")
                ),
                obs,
            ),
        ),
        None => {
            if let Some(old) = previous_conditions
                .iter()
                .find(|c| c.type_ == CONDITION_STATE_RESET)
            {
                conditions.push(old.clone());
            }
        }
    }

    let claim = obs
        .claim
        .clone()
        .or_else(|| obs.previous.and_then(|p| p.claim.clone()));
    if let Some(c) = &claim {
        let (reason, message) = if c.warm {
            (
                "ClaimedWarm",
                format!(
                    "bound to Ready pod {} of RSessionPool {}",
                    c.pod_name.as_deref().unwrap_or("?"),
                    c.pool
                ),
            )
        } else {
            (
                "PoolEmpty",
                format!(
                    "RSessionPool {} had no Ready unclaimed pod; started a pod for this session (cold start)",
                    c.pool
                ),
            )
        };
        set_condition(
            &mut conditions,
            previous_conditions,
            condition(CONDITION_CLAIMED, c.warm, reason, message, obs),
        );
    }

    let pod_uid = obs
        .pod
        .and_then(|p| p.metadata.uid.clone())
        .or_else(|| obs.previous.and_then(|p| p.pod_uid.clone()));
    let start_time = obs
        .pod
        .and_then(|p| p.metadata.creation_timestamp.clone())
        .or_else(|| obs.previous.and_then(|p| p.start_time.clone()));

    RSessionStatus {
        phase: Some(phase),
        conditions,
        observed_generation: obs.generation,
        pod_name: obs.pod_name.clone(),
        pod_uid,
        state_resets: (state_resets > 0).then_some(state_resets),
        // The current pod's address while it starts or serves; nothing stale once it is gone.
        pod_ip: match phase {
            Phase::Starting | Phase::Ready => obs.pod.and_then(pod_ip).map(|ip| ip.to_string()),
            _ => None,
        },
        // Only a Ready pod's address: what the readiness probe reached, nothing stale.
        endpoint: match (&pod_state, phase) {
            (Some(PodState::Ready(endpoint)), Phase::Ready) => Some(endpoint.clone()),
            _ => None,
        },
        credentials_secret: obs.credentials_secret.clone(),
        start_time,
        last_activity_time: obs.last_activity.map(|t| Time(whole_seconds(t))),
        message: Some(message),
        checkpoint_requested_at: obs.checkpointing.map(Time),
        claim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn pod_with(phase: &str, scheduled: bool, ready: bool) -> Pod {
        let cond = |type_: &str, v: bool| PodCondition {
            type_: type_.into(),
            status: if v { "True" } else { "False" }.into(),
            ..PodCondition::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("s-1".into()),
                uid: Some("pod-uid-1".into()),
                creation_timestamp: Some(Time(t("2026-01-01T00:00:01Z"))),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![cond("PodScheduled", scheduled), cond("Ready", ready)]),
                pod_ip: scheduled.then(|| "10.244.0.7".into()),
                ..PodStatus::default()
            }),
        }
    }

    fn with_memory_limit(mut p: Pod, limit: &str) -> Pod {
        use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "r".into(),
                resources: Some(ResourceRequirements {
                    limits: Some([("memory".to_owned(), Quantity(limit.into()))].into()),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        });
        p
    }

    fn terminated(mut p: Pod, exit_code: i32, reason: &str, message: Option<&str>) -> Pod {
        p.status.as_mut().expect("status").container_statuses = Some(vec![ContainerStatus {
            name: "r".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code,
                    reason: Some(reason.into()),
                    message: message.map(Into::into),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        p
    }

    fn obs<'a>(
        pod: Option<&'a Pod>,
        previous: Option<&'a RSessionStatus>,
        now: &str,
    ) -> Observed<'a> {
        Observed {
            generation: Some(1),
            previous,
            pod_name: Some("s-1".into()),
            pod,
            credentials_secret: Some("s-credentials".into()),
            now: t(now),
            ..Observed::default()
        }
    }

    fn cond<'a>(s: &'a RSessionStatus, type_: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == type_).expect(type_)
    }

    #[test]
    fn status_times_are_whole_seconds() {
        let mut o = obs(None, None, "2026-01-01T00:00:00.75Z");
        o.last_activity = Some(t("2026-01-01T00:00:00.5Z"));
        let s = compute(&o);
        assert_eq!(
            cond(&s, "Ready").last_transition_time,
            Time(t("2026-01-01T00:00:00Z"))
        );
        assert_eq!(s.last_activity_time, Some(Time(t("2026-01-01T00:00:00Z"))));
    }

    #[test]
    fn no_pod_yet_is_pending() {
        let s = compute(&obs(None, None, "2026-01-01T00:00:00Z"));
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "PodScheduled").reason, "NoPod");
        assert_eq!(s.observed_generation, Some(1));
    }

    #[test]
    fn scheduled_pod_is_starting_then_ready() {
        let starting = pod_with("Pending", true, false);
        let s1 = compute(&obs(Some(&starting), None, "2026-01-01T00:00:02Z"));
        assert_eq!(s1.phase, Some(Phase::Starting));
        let ready = pod_with("Running", true, true);
        let s2 = compute(&obs(Some(&ready), Some(&s1), "2026-01-01T00:00:05Z"));
        assert_eq!(s2.phase, Some(Phase::Ready));
        assert_eq!(cond(&s2, "Ready").status, "True");
        assert_eq!(
            cond(&s2, "Ready").last_transition_time,
            Time(t("2026-01-01T00:00:05Z"))
        );
        assert_eq!(s2.pod_uid.as_deref(), Some("pod-uid-1"));
        assert_eq!(s2.start_time, Some(Time(t("2026-01-01T00:00:01Z"))));
    }

    #[test]
    fn ready_endpoint_is_the_pod_ip_the_probe_connected_to() {
        let ready = pod_with("Running", true, true);
        let s = compute(&obs(Some(&ready), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(s.endpoint.as_deref(), Some("10.244.0.7:6311"));
    }

    #[test]
    fn ready_endpoint_puts_an_ipv6_pod_ip_in_brackets() {
        let mut ready = pod_with("Running", true, true);
        ready.status.as_mut().expect("status").pod_ip = Some("fd00:10:244::7".into());
        let s = compute(&obs(Some(&ready), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.endpoint.as_deref(), Some("[fd00:10:244::7]:6311"));
    }

    #[test]
    fn ready_pod_without_an_ip_is_not_ready() {
        let mut ready = pod_with("Running", true, true);
        ready.status.as_mut().expect("status").pod_ip = None;
        let s = compute(&obs(Some(&ready), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.phase, Some(Phase::Starting));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(s.endpoint, None);
    }

    #[test]
    fn endpoint_is_unset_unless_ready() {
        let starting = pod_with("Pending", true, false);
        assert_eq!(
            compute(&obs(Some(&starting), None, "2026-01-01T00:00:02Z")).endpoint,
            None,
            "a scheduled pod has an IP, but Rserve has not accepted the probe yet"
        );
        assert_eq!(
            compute(&obs(None, None, "2026-01-01T00:00:02Z")).endpoint,
            None
        );
        let failed = terminated(pod_with("Failed", true, false), 1, "Error", None);
        assert_eq!(
            compute(&obs(Some(&failed), None, "2026-01-01T00:00:02Z")).endpoint,
            None
        );
    }

    #[test]
    fn pod_ip_is_the_current_pods_while_it_starts_or_serves_and_gone_after() {
        let starting = pod_with("Pending", true, false);
        let s = compute(&obs(Some(&starting), None, "2026-01-01T00:00:02Z"));
        assert_eq!(s.phase, Some(Phase::Starting));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.7"), "before Ready");
        assert_eq!(s.endpoint, None);
        let ready = pod_with("Running", true, true);
        let s = compute(&obs(Some(&ready), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.7"));
        let unscheduled = pod_with("Pending", false, false);
        assert_eq!(
            compute(&obs(Some(&unscheduled), None, "2026-01-01T00:00:02Z")).pod_ip,
            None,
            "no IP before the sandbox exists"
        );
        let failed = terminated(pod_with("Failed", true, false), 1, "Error", None);
        assert_eq!(
            compute(&obs(Some(&failed), None, "2026-01-01T00:00:02Z")).pod_ip,
            None,
            "a failed pod's address is not offered"
        );
        let mut v6 = pod_with("Pending", true, false);
        v6.status.as_mut().expect("status").pod_ip = Some("fd00:10:244::7".into());
        assert_eq!(
            compute(&obs(Some(&v6), None, "2026-01-01T00:00:02Z"))
                .pod_ip
                .as_deref(),
            Some("fd00:10:244::7")
        );
    }

    #[test]
    fn a_replacement_pod_gives_a_new_endpoint() {
        let first = pod_with("Running", true, true);
        let s1 = compute(&obs(Some(&first), None, "2026-01-01T00:00:05Z"));
        let mut second = pod_with("Pending", true, false);
        second.status.as_mut().expect("status").pod_ip = Some("10.244.0.9".into());
        let mut o = obs(Some(&second), Some(&s1), "2026-01-01T00:10:00Z");
        o.replaced_pod = Some("s-1".into());
        o.pod_name = Some("s-2".into());
        let s2 = compute(&o);
        assert_eq!(s2.endpoint, None, "the lost pod's address is not kept");
        let mut second_ready = pod_with("Running", true, true);
        second_ready.status.as_mut().expect("status").pod_ip = Some("10.244.0.9".into());
        let mut o = obs(Some(&second_ready), Some(&s2), "2026-01-01T00:10:03Z");
        o.pod_name = Some("s-2".into());
        let s3 = compute(&o);
        assert_eq!(s3.phase, Some(Phase::Ready));
        assert_eq!(s3.endpoint.as_deref(), Some("10.244.0.9:6311"));
        assert_ne!(s3.endpoint, s1.endpoint);
    }

    #[test]
    fn egress_check_failure_shows_its_message() {
        let p = terminated(
            pod_with("Failed", true, false),
            1,
            "Error",
            Some(
                "egress is not denied: 10.96.0.1:443 accepted a connection; no NetworkPolicy enforcement for this pod (checked for 60 s)\n",
            ),
        );
        let s = compute(&obs(Some(&p), None, "2026-01-01T00:01:05Z"));
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(
            s.message.as_deref(),
            Some(
                "pod failed: Error: R container exited with code 1: egress is not denied: 10.96.0.1:443 accepted a connection; no NetworkPolicy enforcement for this pod (checked for 60 s)"
            )
        );
    }

    #[test]
    fn oom_killed_pod_names_the_memory_limit() {
        let p = terminated(
            with_memory_limit(pod_with("Failed", true, false), "2Gi"),
            137,
            "OOMKilled",
            None,
        );
        let s = compute(&obs(Some(&p), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(
            s.message.as_deref(),
            Some(
                "pod failed: OOMKilled: R container exited with code 137 (memory limit 2Gi exceeded)"
            )
        );
    }

    #[test]
    fn transition_time_is_kept_while_status_does_not_change() {
        let ready = pod_with("Running", true, true);
        let s1 = compute(&obs(Some(&ready), None, "2026-01-01T00:00:05Z"));
        let s2 = compute(&obs(Some(&ready), Some(&s1), "2026-01-01T05:00:00Z"));
        assert_eq!(
            cond(&s2, "Ready").last_transition_time,
            Time(t("2026-01-01T00:00:05Z"))
        );
        assert_eq!(
            cond(&s2, "PodScheduled").last_transition_time,
            Time(t("2026-01-01T00:00:05Z"))
        );
        assert_eq!(
            s1, s2,
            "an unchanged world gives an identical status (no write)"
        );
    }

    #[test]
    fn oom_killed_pod_is_failed_with_the_reason() {
        let mut p = pod_with("Failed", true, false);
        p.status.as_mut().expect("status").container_statuses = Some(vec![ContainerStatus {
            name: "r".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("OOMKilled".into()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        let s = compute(&obs(Some(&p), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(cond(&s, "Ready").reason, "PodFailed");
        assert!(
            s.message
                .as_deref()
                .is_some_and(|m| m.contains("OOMKilled") && m.contains("137")),
            "{:?}",
            s.message
        );
    }

    #[test]
    fn evicted_pod_is_failed_with_the_reason() {
        let mut p = pod_with("Failed", true, false);
        let st = p.status.as_mut().expect("status");
        st.reason = Some("Evicted".into());
        st.message = Some("The node was low on resource: memory.".into());
        let s = compute(&obs(Some(&p), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.phase, Some(Phase::Failed));
        assert!(s.message.as_deref().is_some_and(|m| m.contains("Evicted")));
    }

    #[test]
    fn image_pull_error_shows_while_starting() {
        let mut p = pod_with("Pending", true, false);
        p.status.as_mut().expect("status").container_statuses = Some(vec![ContainerStatus {
            name: "r".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ErrImagePull".into()),
                    message: None,
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        let s = compute(&obs(Some(&p), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.phase, Some(Phase::Starting));
        assert!(
            s.message
                .as_deref()
                .is_some_and(|m| m.contains("ErrImagePull"))
        );
    }

    #[test]
    fn a_failing_database_proxy_shows_with_its_message_while_starting() {
        let mut p = pod_with("Pending", true, false);
        p.status.as_mut().expect("status").init_container_statuses = Some(vec![ContainerStatus {
            name: "db-proxy".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: None,
                }),
                ..ContainerState::default()
            }),
            last_state: Some(ContainerState {
                terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                    exit_code: 1,
                    message: Some("db-proxy: the database Secret has no 'host' key\n".into()),
                    ..Default::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        let s = compute(&obs(Some(&p), None, "2026-01-01T00:00:05Z"));
        assert_eq!(s.phase, Some(Phase::Starting));
        assert_eq!(
            s.message.as_deref(),
            Some(
                "db-proxy sidecar waiting: CrashLoopBackOff: db-proxy: the database Secret has no 'host' key"
            )
        );
    }

    #[test]
    fn expiry_sets_phase_and_condition() {
        let ready = pod_with("Running", true, true);
        let s1 = compute(&obs(Some(&ready), None, "2026-01-01T00:00:05Z"));
        let mut o = obs(None, Some(&s1), "2026-01-01T01:00:05Z");
        o.expired = Some(ExpiryReason::IdleTimeout);
        let s2 = compute(&o);
        assert_eq!(s2.phase, Some(Phase::Expired));
        assert_eq!(
            (
                cond(&s2, "Expired").status.as_str(),
                cond(&s2, "Expired").reason.as_str()
            ),
            ("True", "IdleTimeout")
        );
        assert_eq!(cond(&s2, "Ready").status, "False");
        assert_eq!(
            cond(&s2, "Ready").last_transition_time,
            Time(t("2026-01-01T01:00:05Z"))
        );
        assert_eq!(s2.pod_uid, s1.pod_uid, "the last pod's uid is remembered");
    }

    #[test]
    fn suspended_session_reports_suspended() {
        let mut o = obs(None, None, "2026-01-01T00:00:05Z");
        o.suspended = true;
        assert_eq!(compute(&o).phase, Some(Phase::Suspended));
    }

    #[test]
    fn invalid_spec_is_failed_with_its_reason() {
        let mut o = obs(None, None, "2026-01-01T00:00:05Z");
        o.spec_error = Some((
            "DatabaseSecretNotFound",
            "database Secret \"db\" not found".into(),
        ));
        let s = compute(&o);
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(cond(&s, "Ready").reason, "DatabaseSecretNotFound");
    }

    #[test]
    fn replaced_pod_sets_state_reset_and_counts() {
        let p = pod_with("Pending", false, false);
        let mut o = obs(Some(&p), None, "2026-01-01T00:00:05Z");
        o.replaced_pod = Some("s-1".into());
        o.pod_name = Some("s-2".into());
        let s = compute(&o);
        let c = cond(&s, "StateReset");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "PodReplaced")
        );
        assert!(c.message.contains("s-1") && c.message.contains("s-2"));
        assert_eq!(s.state_resets, Some(1));
        let s2 = compute(&obs(Some(&p), Some(&s), "2026-01-01T00:01:00Z"));
        assert_eq!(cond(&s2, "StateReset"), c, "kept on later reconciles");
        assert_eq!(s2.state_resets, Some(1));
    }
}
