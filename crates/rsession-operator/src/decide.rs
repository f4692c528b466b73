//! The decide step of a reconcile, pure: from the facts fetched (the RSession, its validated
//! spec, the status last written, the session's pods, the clock) to what to do — the expiry
//! timers, whether a pod is wanted, the pod plan and when to look again. No I/O, so each rule
//! is a unit test here rather than an API-call scenario.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use rsession_api::status::CONDITION_READY;
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSession, RSessionStatus};

use crate::checkpoint::{Ending, Handshake, handshake};
use crate::lifecycle::{self, Timers};
use crate::pod_plan::{PodPlan, plan_pods};
use crate::validate::Session;

/// Longest time between two reconciles of one RSession, so that DNS-resolved database
/// addresses and timers are re-checked even without watch events.
pub const MAX_REQUEUE: Duration = Duration::from_secs(300);

/// What [`decide`] reads; gathered by the fetch and validate steps.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The RSession as the controller delivered it (annotations, creation time).
    pub rs: &'a RSession,
    /// Its validated spec.
    pub session: &'a Session,
    /// The freshest status known (see `Context::current_status`).
    pub previous: Option<&'a RSessionStatus>,
    /// The pods labelled with the session's name.
    pub pods: &'a [Pod],
    /// Clock reading of this reconcile.
    pub now: Timestamp,
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<'a> {
    /// The `rsession.dev/last-activity` annotation, parsed; `None` when absent or invalid.
    pub last_activity: Option<Timestamp>,
    /// Expiry now, and the next deadline.
    pub timers: Timers,
    /// `spec.lifecycle.suspend`.
    pub suspended: bool,
    /// Whether a session pod should run: neither suspended nor expired, or ending but held for
    /// the frontend's checkpoint.
    pub want_pod: bool,
    /// Pods to delete and create.
    pub plan: PodPlan,
    /// The planned pod as listed, when it is kept rather than created (status reads it).
    pub kept_pod: Option<&'a Pod>,
    /// When to reconcile again without a watch event: the next timer deadline, at most
    /// [`MAX_REQUEUE`]; while held for a checkpoint, its timeout.
    pub requeue: Duration,
    /// The checkpoint handshake before the pod ends ([`crate::checkpoint`]).
    pub checkpoint: Handshake,
}

/// Decides one reconcile from `facts`.
///
/// Idle time counts from the latest of the RSession's creation, the activity annotation, the
/// recorded pod's creation (else the recorded `startTime`), when the session last became Ready
/// and, while it has not been Ready yet (Pending, Starting) or was just resumed, now.
pub fn decide<'a>(facts: &Facts<'a>) -> Decision<'a> {
    let Facts {
        rs,
        session,
        previous,
        pods,
        now,
    } = *facts;
    let recorded_pod = previous
        .and_then(|s| s.pod_name.as_deref())
        .and_then(|n| pods.iter().find(|p| p.metadata.name.as_deref() == Some(n)));
    let last_activity = lifecycle::parse_activity(
        rs.annotations()
            .get(wk::ANNOTATION_LAST_ACTIVITY)
            .map(String::as_str),
    );
    let created = rs.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let pod_started = recorded_pod
        .and_then(|p| p.metadata.creation_timestamp.as_ref())
        .or_else(|| previous.and_then(|s| s.start_time.as_ref()))
        .map(|t| t.0);
    let suspended = session.lifecycle.suspend;
    // Resuming counts as activity: the new pod must not expire for idleness accrued while
    // suspended.
    let resumed = !suspended && previous.and_then(|s| s.phase) == Some(Phase::Suspended);
    // A session is idle only while it can be used: not before its pod is first Ready (a slow
    // start must not use up the idle timeout), and counting from when it became Ready.
    let phase = previous.and_then(|s| s.phase);
    let starting = matches!(phase, None | Some(Phase::Pending | Phase::Starting));
    let ready_since = previous
        .and_then(|s| s.condition(CONDITION_READY))
        .filter(|c| c.status == "True")
        .map(|c| c.last_transition_time.0);
    let active_since = [
        Some(created),
        last_activity,
        pod_started,
        ready_since,
        (resumed || starting).then_some(now),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(created);
    let timers = lifecycle::evaluate(now, created, active_since, &session.lifecycle, suspended);
    let pod_running = recorded_pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none());
    let ending = if suspended {
        Some(Ending::Suspended)
    } else {
        timers.expired.map(Ending::Expired)
    };
    let checkpoint = handshake(
        ending,
        session,
        previous,
        pod_running,
        rs.annotations(),
        now,
    );
    let holding = matches!(checkpoint, Handshake::Waiting { .. });
    let want_pod = holding || (!suspended && timers.expired.is_none());
    let plan = plan_pods(&session.name, previous, pods, want_pod);
    let kept_pod = (want_pod && !plan.create)
        .then(|| {
            pods.iter()
                .find(|p| p.metadata.name.as_deref() == Some(plan.pod_name.as_str()))
        })
        .flatten();
    let deadline = match &checkpoint {
        Handshake::Waiting { left, .. } => Some(*left),
        _ => timers.next_deadline,
    };
    let requeue = deadline.map_or(MAX_REQUEUE, |d| d.min(MAX_REQUEUE));
    Decision {
        last_activity,
        timers,
        suspended,
        want_pod,
        plan,
        kept_pod,
        requeue,
        checkpoint,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::build::fixtures::{rsession, session_of};
    use crate::lifecycle::ExpiryReason;

    const CREATED: &str = "2026-01-01T00:00:00Z";

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    /// The facts of one reconcile of RSession `s`, created at [`CREATED`] with a one-day
    /// maximum lifetime.
    struct Case {
        rs: RSession,
        session: Session,
        previous: Option<RSessionStatus>,
        pods: Vec<Pod>,
    }

    impl Case {
        /// Idle timeout `idle_secs`, no activity stamp, not suspended, no status, no pods.
        fn new(idle_secs: u64) -> Self {
            let mut rs = rsession("s");
            rs.metadata.creation_timestamp = Some(Time(t(CREATED)));
            rs.spec.lifecycle.idle_timeout = Duration::from_secs(idle_secs).into();
            Case {
                session: session_of(&rs),
                rs,
                previous: None,
                pods: Vec::new(),
            }
        }

        fn activity(mut self, at: &str) -> Self {
            self.rs.metadata.annotations = Some(BTreeMap::from([(
                wk::ANNOTATION_LAST_ACTIVITY.to_owned(),
                at.to_owned(),
            )]));
            self
        }

        fn suspended(mut self) -> Self {
            self.rs.spec.lifecycle.suspend = true;
            self.session = session_of(&self.rs);
            self
        }

        /// A stored status in `phase` that records (and had observed) pod `pod_name`.
        fn recorded(mut self, phase: Phase, pod_name: &str) -> Self {
            self.previous = Some(RSessionStatus {
                phase: Some(phase),
                pod_name: Some(pod_name.into()),
                pod_uid: Some(format!("uid-{pod_name}")),
                ..RSessionStatus::default()
            });
            self
        }

        /// A listed pod `name` created at `created`.
        fn pod(mut self, name: &str, created: &str) -> Self {
            self.pods.push(Pod {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    uid: Some(format!("uid-{name}")),
                    creation_timestamp: Some(Time(t(created))),
                    ..ObjectMeta::default()
                },
                ..Pod::default()
            });
            self
        }

        fn at(&self, now: &str) -> Decision<'_> {
            decide(&Facts {
                rs: &self.rs,
                session: &self.session,
                previous: self.previous.as_ref(),
                pods: &self.pods,
                now: t(now),
            })
        }
    }

    #[test]
    fn new_session_wants_its_first_pod_and_requeues_at_most_every_five_minutes() {
        let case = Case::new(3_600);
        let d = case.at("2026-01-01T00:00:10Z");
        assert!(d.want_pod);
        assert_eq!(d.timers.expired, None);
        assert_eq!((d.plan.pod_name.as_str(), d.plan.create), ("s-1", true));
        assert_eq!(d.kept_pod, None, "a pod to create is not a kept pod");
        assert_eq!(d.requeue, MAX_REQUEUE);
    }

    #[test]
    fn requeue_follows_a_deadline_nearer_than_the_maximum() {
        let case = Case::new(60)
            .recorded(Phase::Ready, "s-1")
            .pod("s-1", CREATED);
        let d = case.at("2026-01-01T00:00:10Z");
        assert_eq!(d.requeue, Duration::from_secs(50));
    }

    #[test]
    fn running_pod_is_kept_and_handed_to_status() {
        let case = Case::new(3_600)
            .recorded(Phase::Ready, "s-1")
            .pod("s-1", CREATED);
        let d = case.at("2026-01-01T00:10:00Z");
        assert!(!d.plan.create);
        assert!(d.plan.delete.is_empty());
        assert_eq!(d.kept_pod, Some(&case.pods[0]));
    }

    #[test]
    fn idle_session_expires_and_its_pod_is_deleted() {
        let case = Case::new(600)
            .activity("2026-01-01T00:05:00Z")
            .recorded(Phase::Ready, "s-1")
            .pod("s-1", CREATED);
        let d = case.at("2026-01-01T00:16:00Z");
        assert_eq!(d.timers.expired, Some(ExpiryReason::IdleTimeout));
        assert!(!d.want_pod);
        assert_eq!(d.plan.delete, vec!["s-1".to_owned()]);
        assert_eq!(d.kept_pod, None);
        assert_eq!(d.last_activity, Some(t("2026-01-01T00:05:00Z")));
    }

    #[test]
    fn activity_stamp_keeps_the_session_alive() {
        let case = Case::new(600)
            .activity("2026-01-01T00:15:00Z")
            .recorded(Phase::Ready, "s-1")
            .pod("s-1", CREATED);
        let d = case.at("2026-01-01T00:24:00Z");
        assert_eq!(d.timers.expired, None);
        assert!(d.want_pod);
        assert_eq!(d.requeue, Duration::from_secs(60));
    }

    #[test]
    fn a_new_pod_counts_as_activity() {
        // The replacement pod started at 00:14; without it the session would be idle since
        // its creation.
        let case = Case::new(600)
            .recorded(Phase::Ready, "s-2")
            .pod("s-2", "2026-01-01T00:14:00Z");
        assert_eq!(case.at("2026-01-01T00:16:00Z").timers.expired, None);
    }

    #[test]
    fn recorded_start_time_counts_when_the_pod_is_not_listed() {
        let mut case = Case::new(600);
        case.previous = Some(RSessionStatus {
            phase: Some(Phase::Starting),
            pod_name: Some("s-1".into()),
            start_time: Some(Time(t("2026-01-01T00:14:00Z"))),
            ..RSessionStatus::default()
        });
        assert_eq!(case.at("2026-01-01T00:16:00Z").timers.expired, None);
    }

    #[test]
    fn a_slow_start_does_not_use_up_the_idle_timeout() {
        // Starting for 15 minutes with a 10 minute idle timeout: not expired.
        let case = Case::new(600)
            .recorded(Phase::Starting, "s-1")
            .pod("s-1", CREATED);
        assert_eq!(case.at("2026-01-01T00:15:00Z").timers.expired, None);
    }

    #[test]
    fn idle_time_counts_from_when_the_session_became_ready() {
        let mut case = Case::new(600)
            .recorded(Phase::Ready, "s-1")
            .pod("s-1", CREATED);
        let status = case.previous.as_mut().expect("status");
        status
            .conditions
            .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: CONDITION_READY.into(),
                status: "True".into(),
                last_transition_time: Time(t("2026-01-01T00:12:00Z")),
                message: String::new(),
                reason: "RserveReady".into(),
                observed_generation: None,
            });
        assert_eq!(case.at("2026-01-01T00:21:00Z").timers.expired, None);
        assert_eq!(
            case.at("2026-01-01T00:23:00Z").timers.expired,
            Some(ExpiryReason::IdleTimeout)
        );
    }

    #[test]
    fn suspended_session_wants_no_pod_and_deletes_the_running_one() {
        let case = Case::new(600)
            .suspended()
            .recorded(Phase::Ready, "s-1")
            .pod("s-1", CREATED);
        let d = case.at("2026-01-01T00:05:00Z");
        assert!(d.suspended);
        assert!(!d.want_pod);
        assert_eq!(d.timers.expired, None);
        assert_eq!(d.plan.delete, vec!["s-1".to_owned()]);
        assert!(!d.plan.create);
    }

    #[test]
    fn resuming_counts_as_activity() {
        // Suspended for longer than the idle timeout; resuming starts a pod that must not
        // expire at once.
        let case = Case::new(600).recorded(Phase::Suspended, "s-1");
        let d = case.at("2026-01-01T02:00:00Z");
        assert_eq!(d.timers.expired, None);
        assert!(d.want_pod);
        assert_eq!((d.plan.pod_name.as_str(), d.plan.create), ("s-2", true));
        assert_eq!(d.plan.replaced, None, "resuming is not a state reset");
    }

    #[test]
    fn lost_pod_is_planned_as_a_replacement() {
        let case = Case::new(3_600).recorded(Phase::Ready, "s-1");
        let d = case.at("2026-01-01T00:10:00Z");
        assert_eq!(d.plan.replaced.as_deref(), Some("s-1"));
        assert_eq!((d.plan.pod_name.as_str(), d.plan.create), ("s-2", true));
    }

    #[test]
    fn an_expiring_persistent_session_keeps_its_pod_until_the_checkpoint_timeout() {
        let mut case = Case::new(60)
            .recorded(Phase::Ready, "s-1")
            .pod("s-1", CREATED);
        case.rs.spec.workspace.kind = rsession_api::WorkspaceKind::Persistent;
        case.session = session_of(&case.rs);
        let d = case.at("2026-01-01T00:10:00Z");
        assert_eq!(d.timers.expired, Some(ExpiryReason::IdleTimeout));
        assert!(
            matches!(d.checkpoint, Handshake::Waiting { .. }),
            "{:?}",
            d.checkpoint
        );
        assert!(d.want_pod, "the pod is held for the checkpoint");
        assert!(d.plan.delete.is_empty() && !d.plan.create);
        assert_eq!(
            d.requeue,
            Duration::from_secs(60),
            "requeued at the checkpoint timeout"
        );
    }
}
