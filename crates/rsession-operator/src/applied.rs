//! What this replica applied recently, so that the reconciles that follow one another within
//! seconds (a claim's pod patch, the status write, the pod turning Ready each trigger one) do
//! not send the same server-side applies again: an RSession's four or five children, a pool's
//! NetworkPolicy. In a burst of 20 warm claims those repeats were most of the operator's API
//! calls, queued in front of the next session's claim.
//!
//! An entry is keyed by the owner's uid and holds a digest of the applied objects' JSON: a
//! changed spec, password or database address changes the digest and they are applied at once.
//! Entries expire after [`APPLIED_CHILDREN_TTL`], which is shorter than the periodic requeue
//! ([`crate::decide::MAX_REQUEUE`]), so a hand-deleted Service or NetworkPolicy still comes back
//! within one requeue period, as before.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long applied objects are trusted to be in place without applying them again.
pub const APPLIED_TTL: Duration = Duration::from_secs(60);

/// Digests of what was applied per owner uid, with when.
#[derive(Debug, Default)]
pub struct Applied {
    applied: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Applied {
    /// Whether `objects` of the owner with `uid` were applied by this replica within
    /// [`APPLIED_TTL`], exactly as they are now.
    pub fn fresh(&self, uid: &str, objects: &impl Serialize) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        matches!(applied.get(uid), Some((at, d)) if at.elapsed() < APPLIED_TTL && *d == digest(objects))
    }

    /// Records `objects` of the owner with `uid` as applied just now (and prunes expired
    /// entries, so the map holds only the owners reconciled within the TTL).
    pub fn record(&self, uid: &str, objects: &impl Serialize) {
        let d = digest(objects);
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        applied.retain(|_, (at, _)| at.elapsed() < APPLIED_TTL);
        applied.insert(uid.to_string(), (Instant::now(), d));
    }
}

/// A digest of `objects` as they would be sent (their JSON), stable within this process.
fn digest(objects: &impl Serialize) -> u64 {
    let mut h = DefaultHasher::new();
    // Serializing Kubernetes objects to JSON does not fail; if it did, the empty digest input
    // only makes a later comparison unequal, which applies again.
    h.write(&serde_json::to_vec(objects).unwrap_or_default());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::children::build_children;
    use crate::build::fixtures;

    #[test]
    fn the_same_children_are_fresh_and_changed_ones_are_not() {
        let applied = Applied::default();
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
