//! Pure decision about the session pod: which pod is current, whether to create it, which pods
//! to delete, and whether R state was lost unexpectedly.
//!
//! Pod names are `<session>-<n>`; `n` grows by one whenever the recorded pod is gone (deleted by
//! hand, evicted and removed, or deleted by suspend/expiry) after it had been observed. Because
//! the name is derived from the stored status and the pods that exist, an operator restart
//! mid-reconcile recomputes the same name and server-side apply makes the create idempotent: no
//! duplicates.

use k8s_openapi::api::core::v1::Pod;
use rsession_api::{Phase, RSessionStatus};

use crate::build::{pod_incarnation, pod_name};

/// What to do with the session's pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPlan {
    /// Name of the current pod (the one status reports).
    pub pod_name: String,
    /// Create `pod_name` (it does not exist yet).
    pub create: bool,
    /// Pods to delete: every live session pod other than the current one, or all of them when
    /// no pod is wanted.
    pub delete: Vec<String>,
    /// The previous pod, when it was lost while the session was meant to be running: R state
    /// was reset.
    pub replaced: Option<String>,
}

fn is_live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
}

fn name_of(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or_default()
}

/// Plans the pods of session `session` given its stored status and the pods labelled with its
/// name. `want_pod` is false while suspended or expired.
pub fn plan_pods(
    session: &str,
    previous: Option<&RSessionStatus>,
    pods: &[Pod],
    want_pod: bool,
) -> PodPlan {
    // A pod claimed from a pool keeps its pool name (`<pool>-<suffix>`, incarnation 0): it is
    // the recorded pod, or, before status recorded it, the live pod labelled for the session.
    let recorded = previous
        .and_then(|s| s.pod_name.as_deref())
        .map(|n| (n.to_owned(), pod_incarnation(session, n).unwrap_or(0)))
        .or_else(|| {
            pods.iter()
                .filter(|p| is_live(p))
                .map(name_of)
                .find(|n| pod_incarnation(session, n).is_none())
                .map(|n| (n.to_owned(), 0))
        });
    let observed_before = previous.and_then(|s| s.pod_uid.as_ref()).is_some();
    let (mut name, incarnation) = recorded.unwrap_or_else(|| (pod_name(session, 1), 1));

    if !want_pod {
        return PodPlan {
            delete: pods
                .iter()
                .filter(|p| is_live(p))
                .map(|p| name_of(p).to_owned())
                .collect(),
            pod_name: name,
            create: false,
            replaced: None,
        };
    }

    let existing = pods.iter().find(|p| name_of(p) == name);
    let gone = match existing {
        Some(p) => !is_live(p),
        None => observed_before,
    };
    let mut replaced = None;
    if gone {
        // Losing the pod is only a surprise when it was meant to be running.
        let expected_down = matches!(
            previous.and_then(|s| s.phase),
            Some(Phase::Suspended | Phase::Expired)
        );
        if !expected_down {
            replaced = Some(name.clone());
        }
        name = pod_name(session, incarnation + 1);
    }
    let create = !pods.iter().any(|p| name_of(p) == name && is_live(p));
    let delete = pods
        .iter()
        .filter(|p| is_live(p) && name_of(p) != name)
        .map(|p| name_of(p).to_owned())
        .collect();
    PodPlan {
        pod_name: name,
        create,
        delete,
        replaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                deletion_timestamp: terminating
                    .then(|| Time("2026-01-01T00:00:00Z".parse().expect("ts"))),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn status(pod_name: &str, observed: bool, phase: Phase) -> RSessionStatus {
        RSessionStatus {
            phase: Some(phase),
            pod_name: Some(pod_name.into()),
            pod_uid: observed.then(|| format!("uid-{pod_name}")),
            ..RSessionStatus::default()
        }
    }

    #[test]
    fn first_reconcile_creates_pod_1() {
        let plan = plan_pods("s", None, &[], true);
        assert_eq!(
            plan,
            PodPlan {
                pod_name: "s-1".into(),
                create: true,
                delete: vec![],
                replaced: None
            }
        );
    }

    #[test]
    fn existing_pod_is_kept() {
        let st = status("s-1", true, Phase::Ready);
        let plan = plan_pods("s", Some(&st), &[pod("s-1", false)], true);
        assert_eq!(
            plan,
            PodPlan {
                pod_name: "s-1".into(),
                create: false,
                delete: vec![],
                replaced: None
            }
        );
    }

    #[test]
    fn restart_before_status_was_written_reuses_the_name() {
        // Crash after creating s-1 but before status recorded it: no duplicate.
        let plan = plan_pods("s", None, &[pod("s-1", false)], true);
        assert_eq!(
            plan,
            PodPlan {
                pod_name: "s-1".into(),
                create: false,
                delete: vec![],
                replaced: None
            }
        );
    }

    #[test]
    fn pod_deleted_by_hand_is_replaced_and_flagged() {
        let st = status("s-1", true, Phase::Ready);
        let plan = plan_pods("s", Some(&st), &[], true);
        assert_eq!(
            plan,
            PodPlan {
                pod_name: "s-2".into(),
                create: true,
                delete: vec![],
                replaced: Some("s-1".into())
            }
        );
    }

    #[test]
    fn terminating_pod_is_replaced_under_a_new_name() {
        let st = status("s-1", true, Phase::Ready);
        let plan = plan_pods("s", Some(&st), &[pod("s-1", true)], true);
        assert_eq!((plan.pod_name.as_str(), plan.create), ("s-2", true));
        assert!(plan.delete.is_empty(), "already terminating");
    }

    #[test]
    fn suspend_deletes_every_live_pod() {
        let st = status("s-1", true, Phase::Ready);
        let plan = plan_pods(
            "s",
            Some(&st),
            &[pod("s-1", false), pod("s-0", true)],
            false,
        );
        assert_eq!(
            plan,
            PodPlan {
                pod_name: "s-1".into(),
                create: false,
                delete: vec!["s-1".into()],
                replaced: None
            }
        );
    }

    #[test]
    fn resume_after_suspend_starts_a_new_pod_without_a_reset_flag() {
        let st = status("s-1", true, Phase::Suspended);
        let plan = plan_pods("s", Some(&st), &[], true);
        assert_eq!(
            plan,
            PodPlan {
                pod_name: "s-2".into(),
                create: true,
                delete: vec![],
                replaced: None
            }
        );
    }

    #[test]
    fn a_claimed_pool_pod_is_adopted_before_status_records_it_and_kept_after() {
        let plan = plan_pods("s", None, &[pod("web-ab1cd", false)], true);
        assert_eq!(
            (plan.pod_name.as_str(), plan.create, plan.delete.len()),
            ("web-ab1cd", false, 0)
        );
        let st = status("web-ab1cd", true, Phase::Ready);
        let plan = plan_pods("s", Some(&st), &[pod("web-ab1cd", false)], true);
        assert_eq!((plan.pod_name.as_str(), plan.create), ("web-ab1cd", false));
    }

    #[test]
    fn a_lost_claimed_pod_is_replaced_by_the_first_incarnation() {
        let st = status("web-ab1cd", true, Phase::Ready);
        let plan = plan_pods("s", Some(&st), &[], true);
        assert_eq!(
            plan,
            PodPlan {
                pod_name: "s-1".into(),
                create: true,
                delete: vec![],
                replaced: Some("web-ab1cd".into())
            }
        );
    }

    #[test]
    fn stray_session_pods_are_deleted() {
        let st = status("s-2", true, Phase::Ready);
        let plan = plan_pods(
            "s",
            Some(&st),
            &[pod("s-1", false), pod("s-2", false)],
            true,
        );
        assert_eq!(plan.delete, vec!["s-1".to_owned()]);
        assert!(!plan.create);
    }
}
