//! What this replica applied recently, so that the reconciles that follow one another within
//! seconds (a claim's pod patch, the status write, the pod turning Ready each trigger one) do
//! not send the same server-side applies again: an RSession's four or five children, a pool's
//! NetworkPolicy. In a burst of 20 warm claims those repeats were most of the operator's API
//! calls, queued in front of the next session's claim.
//!
//! An entry is keyed by the owner's uid and holds a digest of the applied objects' JSON: a
//! changed spec, password or database address changes the digest and they are applied at once.
//! Entries expire after [`APPLIED_TTL`], which is shorter than the periodic requeue
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
    /// Runs `apply` (the server-side apply of `objects`, owned by the object with `uid`) unless
    /// this replica applied exactly these objects within [`APPLIED_TTL`]; records them once
    /// `apply` succeeded. Errors: those of `apply` (nothing is recorded then).
    pub async fn apply_unless_fresh<E>(
        &self,
        uid: &str,
        objects: &impl Serialize,
        apply: impl Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let d = digest(objects);
        if self.fresh(uid, d) {
            return Ok(());
        }
        apply.await?;
        self.record(uid, d);
        Ok(())
    }

    /// Whether digest `d` of the owner with `uid` was applied within [`APPLIED_TTL`].
    fn fresh(&self, uid: &str, d: u64) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        matches!(applied.get(uid), Some((at, seen)) if at.elapsed() < APPLIED_TTL && *seen == d)
    }

    /// Records digest `d` of the owner with `uid` as applied just now (and prunes expired
    /// entries, so the map holds only the owners reconciled within the TTL).
    fn record(&self, uid: &str, d: u64) {
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

    /// Whether `apply_unless_fresh` ran its apply for `objects` of `uid`.
    async fn applies(applied: &Applied, uid: &str, objects: &impl Serialize) -> bool {
        let mut ran = false;
        applied
            .apply_unless_fresh(uid, objects, async {
                ran = true;
                Ok::<(), ()>(())
            })
            .await
            .expect("apply");
        ran
    }

    #[tokio::test]
    async fn the_same_children_are_applied_once_and_changed_ones_again() {
        let applied = Applied::default();
        let s = fixtures::session_of(&fixtures::rsession("s"));
        let config = crate::config::OperatorConfig::default();
        let children = build_children(&s, &config, "pw", &[]);
        assert!(applies(&applied, "uid-1", &children).await, "never applied");
        assert!(
            !applies(&applied, "uid-1", &children).await,
            "applied just now"
        );
        assert!(
            applies(&applied, "uid-2", &children).await,
            "another RSession"
        );
        let new_password = build_children(&s, &config, "other", &[]);
        assert!(
            applies(&applied, "uid-1", &new_password).await,
            "a changed Secret"
        );
        let mut rs = fixtures::rsession("s");
        rs.spec.network = Some(rsession_api::NetworkSpec {
            egress: vec![rsession_api::EgressRule {
                cidr: "10.20.0.0/16".into(),
                ports: vec![443],
            }],
        });
        let more_egress = build_children(&fixtures::session_of(&rs), &config, "pw", &[]);
        assert!(
            applies(&applied, "uid-1", &more_egress).await,
            "a changed NetworkPolicy"
        );
    }

    #[tokio::test]
    async fn a_failed_apply_is_not_recorded() {
        let applied = Applied::default();
        let failed = applied
            .apply_unless_fresh("uid-1", &"objects", async { Err::<(), &str>("refused") })
            .await;
        assert_eq!(failed, Err("refused"));
        assert!(applies(&applied, "uid-1", &"objects").await, "tried again");
    }
}
