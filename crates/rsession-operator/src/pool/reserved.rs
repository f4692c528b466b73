//! The pool pods this replica's reconciles are claiming or have just claimed.
//!
//! Why: concurrent claims pick their candidates from the same watch-fed cache. Without this, two
//! reconciles of one replica often patch the same pod, and the loser pays a refused `PATCH`
//! (409 Conflict) and a second try on a loaded API server: a burst of 20 claims against a pool
//! of 20 sent 21 refused patches. Reserving a candidate before its patch steers this replica's
//! reconciles to different pods. It is only a hint: across replicas (and against a stale cache)
//! the patch's `resourceVersion` precondition still decides who wins.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a successful claim keeps its pod reserved: until the cache's watch event shows the
/// pod claimed (milliseconds, normally), with room for a slow watch.
pub const CLAIMED_HOLD: Duration = Duration::from_secs(10);

/// Reserved pool pods by (namespace, pod name), with when a hold ends (`None`: a claim in flight).
#[derive(Default)]
pub struct Reserved {
    pods: Mutex<HashMap<(String, String), Option<Instant>>>,
}

impl Reserved {
    /// Reserves pod `pod` for a claim about to be sent. `false` when another claim of this
    /// replica holds it.
    pub fn try_reserve(&self, namespace: &str, pod: &str) -> bool {
        let mut pods = self.map();
        let now = Instant::now();
        pods.retain(|_, until| until.is_none_or(|t| t > now));
        let key = (namespace.to_owned(), pod.to_owned());
        if pods.contains_key(&key) {
            return false;
        }
        pods.insert(key, None);
        true
    }

    /// Ends the claim of `pod`: `won` keeps it reserved for [`CLAIMED_HOLD`] (the cache still
    /// shows it claimable for a moment); a refused claim releases it (the pod may have changed
    /// without being taken, and a fresh list may offer it again).
    pub fn finish(&self, namespace: &str, pod: &str, won: bool) {
        let key = (namespace.to_owned(), pod.to_owned());
        let mut pods = self.map();
        if won {
            pods.insert(key, Some(Instant::now() + CLAIMED_HOLD));
        } else {
            pods.remove(&key);
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<(String, String), Option<Instant>>> {
        // Poisoned only by a panic while holding it; the map stays usable.
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_in_flight_or_just_claimed_is_not_offered_again() {
        let r = Reserved::default();
        assert!(r.try_reserve("ns", "p-1"));
        assert!(!r.try_reserve("ns", "p-1"), "in flight");
        assert!(r.try_reserve("other", "p-1"), "another namespace's pod");
        r.finish("ns", "p-1", true);
        assert!(!r.try_reserve("ns", "p-1"), "held after the claim");
    }

    #[test]
    fn a_refused_claim_releases_its_pod() {
        let r = Reserved::default();
        assert!(r.try_reserve("ns", "p-1"));
        r.finish("ns", "p-1", false);
        assert!(r.try_reserve("ns", "p-1"));
    }

    #[test]
    fn a_hold_ends() {
        let r = Reserved::default();
        r.pods
            .lock()
            .unwrap()
            .insert(("ns".into(), "p-1".into()), Some(Instant::now()));
        assert!(r.try_reserve("ns", "p-1"), "an ended hold is pruned");
    }
}
