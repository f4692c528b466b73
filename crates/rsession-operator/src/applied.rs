//! The children this replica applied recently, so that the reconciles that follow one another
//! within seconds (a claim's pod patch, the status write, the pod turning Ready each trigger one)
//! do not send the same four or five server-side applies again. In a burst of 20 warm claims
//! those repeats were most of the operator's API calls, queued in front of the next session's
//! claim.
//!
//! An entry is keyed by the RSession's uid and holds a digest of the children's JSON: a changed
//! spec, password or database address changes the digest and the children are applied at once.
//! Entries expire after [`APPLIED_CHILDREN_TTL`], which is shorter than the periodic requeue
//! ([`crate::decide::MAX_REQUEUE`]), so a hand-deleted Service or NetworkPolicy still comes back
//! within one requeue period, as before.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::build::children::Children;

/// How long an applied set of children is trusted to be in place without applying it again.
pub const APPLIED_CHILDREN_TTL: Duration = Duration::from_secs(60);

/// Digests of the children applied per RSession uid, with when.
#[derive(Debug, Default)]
pub struct AppliedChildren {
    applied: Mutex<HashMap<String, (Instant, u64)>>,
}

impl AppliedChildren {
    /// Whether `children` of the RSession with `uid` were applied by this replica within
    /// [`APPLIED_CHILDREN_TTL`], exactly as they are now.
    pub fn fresh(&self, uid: &str, children: &Children) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        matches!(applied.get(uid), Some((at, d)) if at.elapsed() < APPLIED_CHILDREN_TTL && *d == digest(children))
    }

    /// Records `children` of the RSession with `uid` as applied just now (and prunes expired
    /// entries, so the map holds only the sessions reconciled within the TTL).
    pub fn record(&self, uid: &str, children: &Children) {
        let d = digest(children);
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied.retain(|_, (at, _)| at.elapsed() < APPLIED_CHILDREN_TTL);
        applied.insert(uid.to_string(), (Instant::now(), d));
    }
}

/// A digest of the children as they would be sent (their JSON), stable within this process.
fn digest(children: &Children) -> u64 {
    let mut h = DefaultHasher::new();
    let mut add = |v: serde_json::Result<Vec<u8>>| {
        // Serializing Kubernetes objects to JSON does not fail; if it did, an empty part only
        // makes a later comparison unequal, which applies again.
        h.write(&v.unwrap_or_default());
        h.write_u8(0);
    };
    add(serde_json::to_vec(&children.secret));
    add(serde_json::to_vec(&children.config_map));
    add(serde_json::to_vec(&children.service));
    add(serde_json::to_vec(&children.network_policy));
    add(serde_json::to_vec(&children.pvc));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::children::build_children;
    use crate::build::fixtures;

    #[test]
    fn the_same_children_are_fresh_and_changed_ones_are_not() {
        let applied = AppliedChildren::default();
        let s = fixtures::session_of(&fixtures::rsession("s"));
        let config = crate::config::OperatorConfig::default();
        let children = build_children(&s, &config, "pw", &[]);
        assert!(!applied.fresh("uid-1", &children), "never applied");
        applied.record("uid-1", &children);
        assert!(applied.fresh("uid-1", &children));
        assert!(!applied.fresh("uid-2", &children), "another RSession");
        let new_password = build_children(&s, &config, "other", &[]);
        assert!(!applied.fresh("uid-1", &new_password), "a changed Secret");
        let mut rs = fixtures::rsession("s");
        rs.spec.network = Some(rsession_api::NetworkSpec {
            egress: vec![rsession_api::EgressRule {
                cidr: "10.20.0.0/16".into(),
                ports: vec![443],
            }],
        });
        let more_egress = build_children(&fixtures::session_of(&rs), &config, "pw", &[]);
        assert!(
            !applied.fresh("uid-1", &more_egress),
            "a changed NetworkPolicy"
        );
    }
}
