//! The pure decision of one pool reconcile: from the pool's pods to the pods to create and
//! delete, and the status counts. No I/O, so each rule is a unit test here.
//!
//! A pool pod is *unclaimed* while it lacks the session label; *current* when its template hash
//! is the pool's; *usable* when it is live (no deletion timestamp) and has not failed. The pool
//! keeps exactly `spec.replicas` usable, current, unclaimed pods:
//! - unclaimed pods of an older template and failed unclaimed pods are deleted at once (a
//!   template change rolls the pool; claimed pods are never touched);
//! - extra current pods (after a scale-down) are deleted, not-Ready ones and the newest first;
//! - the shortfall is created, but only so many that at most `spec.maxStarting` current,
//!   unclaimed pods are starting at once (the rest follow as those turn Ready).

use k8s_openapi::api::core::v1::Pod;
use rsession_api::well_known as wk;

use crate::status::{PodState, pod_state};

/// What to do with a pool's pods, and the counts its status reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolPlan {
    /// How many pods to create.
    pub create: usize,
    /// Unclaimed pods to delete, by name (with the resourceVersion read, so a pod claimed
    /// meanwhile is not deleted: the delete's precondition fails).
    pub delete: Vec<(String, Option<String>)>,
    /// Unclaimed, current, usable pods kept (starting or Ready): `status.replicas` once the
    /// creates are done.
    pub kept: i32,
    /// Of the kept, those Ready: `status.readyReplicas`.
    pub ready: i32,
    /// Live pods of the pool now bound to an RSession: `status.claimedReplicas`.
    pub claimed: i32,
}

fn labels(p: &Pod) -> Option<&std::collections::BTreeMap<String, String>> {
    p.metadata.labels.as_ref()
}

/// Whether pool pod `p` has been claimed by an RSession.
pub fn is_claimed(p: &Pod) -> bool {
    labels(p).is_some_and(|l| l.contains_key(wk::LABEL_SESSION))
}

fn is_live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
}

/// Whether an unclaimed pool pod can serve a claim right now: live and its readiness probe
/// connected to Rserve.
pub fn is_claimable(p: &Pod) -> bool {
    is_live(p) && !is_claimed(p) && matches!(pod_state(p), PodState::Ready(_))
}

fn has_failed(p: &Pod) -> bool {
    matches!(pod_state(p), PodState::Failed(..))
}

fn template_of(p: &Pod) -> Option<&str> {
    labels(p)?.get(wk::LABEL_POOL_TEMPLATE).map(String::as_str)
}

fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

fn doomed(p: &Pod) -> (String, Option<String>) {
    (name_of(p), p.metadata.resource_version.clone())
}

/// Plans a pool of `replicas` whose template hashes to `hash`, with at most `max_starting` pods
/// starting at once, from `pods` (every pod labelled with the pool's name).
pub fn plan_pool(replicas: i32, max_starting: i32, hash: &str, pods: &[Pod]) -> PoolPlan {
    let want = usize::try_from(replicas).unwrap_or(0);
    let claimed = pods.iter().filter(|p| is_live(p) && is_claimed(p)).count();
    let mut delete = Vec::new();
    let mut current: Vec<&Pod> = Vec::new();
    for p in pods.iter().filter(|p| is_live(p) && !is_claimed(p)) {
        if template_of(p) != Some(hash) || has_failed(p) {
            delete.push(doomed(p));
        } else {
            current.push(p);
        }
    }
    if current.len() > want {
        // Keep Ready pods, then the oldest: delete from the front of not-Ready newest first,
        // then Ready newest first.
        current.sort_by_key(|p| {
            (
                !is_claimable(p),
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        });
        current.reverse();
        let extra = current.len() - want;
        delete.extend(current.drain(..extra).map(doomed));
    }
    let ready = current.iter().filter(|p| is_claimable(p)).count();
    let starting = current.len() - ready;
    let may_start = usize::try_from(max_starting.max(1))
        .unwrap_or(1)
        .saturating_sub(starting);
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    PoolPlan {
        create: want.saturating_sub(current.len()).min(may_start),
        delete,
        kept: count(current.len()),
        ready: count(ready),
        claimed: count(claimed),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    #[derive(Clone, Copy)]
    enum S {
        Starting,
        Ready,
        Failed,
    }

    fn pod(name: &str, hash: &str, state: S, claimed_by: Option<&str>, created: &str) -> Pod {
        let mut labels = BTreeMap::from([
            (wk::LABEL_POOL.to_owned(), "web".to_owned()),
            (wk::LABEL_POOL_TEMPLATE.to_owned(), hash.to_owned()),
        ]);
        if let Some(s) = claimed_by {
            labels.insert(wk::LABEL_SESSION.to_owned(), s.to_owned());
        }
        let status = match state {
            S::Starting => PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            },
            S::Ready => PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some("10.0.0.9".into()),
                conditions: Some(vec![
                    PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..PodCondition::default()
                    },
                    PodCondition {
                        type_: "PodScheduled".into(),
                        status: "True".into(),
                        ..PodCondition::default()
                    },
                ]),
                ..PodStatus::default()
            },
            S::Failed => PodStatus {
                phase: Some("Failed".into()),
                reason: Some("Evicted".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "rserve".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            reason: Some("Error".into()),
                            exit_code: 1,
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            },
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some(format!("rv-{name}")),
                labels: Some(labels),
                creation_timestamp: Some(Time(created.parse().expect("ts"))),
                ..ObjectMeta::default()
            },
            status: Some(status),
            ..Pod::default()
        }
    }

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";

    #[test]
    fn at_most_max_starting_pods_start_at_once() {
        let plan = plan_pool(10, 3, "h", &[]);
        assert_eq!(plan.create, 3, "an empty pool of 10 starts 3 first");
        let pods = [
            pod("web-a", "h", S::Ready, None, T0),
            pod("web-b", "h", S::Starting, None, T0),
            pod("web-c", "h", S::Starting, None, T1),
            pod("web-d", "h", S::Ready, Some("s1"), T0),
        ];
        let plan = plan_pool(10, 3, "h", &pods);
        assert_eq!(
            plan.create, 1,
            "two are starting; a claimed pod does not count"
        );
        let plan = plan_pool(3, 3, "h", &pods);
        assert_eq!(plan.create, 0, "the shortfall caps it too");
        assert_eq!(plan_pool(10, 0, "h", &[]).create, 1, "never below one");
    }

    #[test]
    fn an_empty_pool_creates_every_replica() {
        let plan = plan_pool(3, 200, "h", &[]);
        assert_eq!((plan.create, plan.kept, plan.ready), (3, 0, 0));
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn a_claimed_pod_is_replaced_and_counted_but_never_deleted() {
        let pods = [
            pod("web-a", "h", S::Ready, Some("s1"), T0),
            pod("web-b", "h", S::Ready, None, T0),
        ];
        let plan = plan_pool(2, 200, "h", &pods);
        assert_eq!(
            (plan.create, plan.kept, plan.ready, plan.claimed),
            (1, 1, 1, 1)
        );
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn a_template_change_rolls_unclaimed_pods_only() {
        let pods = [
            pod("web-a", "old", S::Ready, Some("s1"), T0),
            pod("web-b", "old", S::Ready, None, T0),
            pod("web-c", "old", S::Starting, None, T0),
        ];
        let plan = plan_pool(2, 200, "new", &pods);
        assert_eq!(
            plan.delete,
            vec![
                ("web-b".to_owned(), Some("rv-web-b".to_owned())),
                ("web-c".to_owned(), Some("rv-web-c".to_owned()))
            ]
        );
        assert_eq!((plan.create, plan.claimed), (2, 1));
    }

    #[test]
    fn a_failed_unclaimed_pod_is_replaced() {
        let pods = [pod("web-a", "h", S::Failed, None, T0)];
        let plan = plan_pool(1, 200, "h", &pods);
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.create, 1);
    }

    #[test]
    fn scale_down_deletes_starting_pods_first_then_the_newest() {
        let pods = [
            pod("web-old", "h", S::Ready, None, T0),
            pod("web-new", "h", S::Ready, None, T1),
            pod("web-starting", "h", S::Starting, None, T0),
        ];
        let plan = plan_pool(1, 200, "h", &pods);
        let names: Vec<&str> = plan.delete.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["web-starting", "web-new"]);
        assert_eq!((plan.create, plan.kept, plan.ready), (0, 1, 1));
    }

    #[test]
    fn terminating_pods_count_for_nothing() {
        let mut gone = pod("web-a", "h", S::Ready, None, T0);
        gone.metadata.deletion_timestamp = Some(Time(T1.parse().expect("ts")));
        let plan = plan_pool(1, 200, "h", &[gone]);
        assert_eq!((plan.create, plan.kept), (1, 0));
        assert!(plan.delete.is_empty());
    }
}
