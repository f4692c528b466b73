//! The Rserve passwords of the pool pods this replica created and nobody claimed yet.
//!
//! A claim needs the claimed pod's password for the session's own Secret. Remembering it when the
//! pool pod's Secret is written saves a `GET` on the way to a warm session's first result. What
//! is not here (another replica's pods, this one's after a restart) is read from the Secret, so
//! this is only ever a shortcut, never the source of truth.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Passwords by (namespace, pool pod name), with the pool each pod belongs to.
#[derive(Default)]
pub struct PoolPasswords {
    by_pod: Mutex<HashMap<(String, String), Entry>>,
}

struct Entry {
    pool: String,
    password: String,
}

impl PoolPasswords {
    /// Records the password of pod `pod` of pool `pool`, just written into the pod's Secret.
    pub fn remember(&self, namespace: &str, pool: &str, pod: &str, password: &str) {
        self.map().insert(
            (namespace.to_owned(), pod.to_owned()),
            Entry {
                pool: pool.to_owned(),
                password: password.to_owned(),
            },
        );
    }

    /// Takes the password of pod `pod` (once: a claimed pod has left the pool).
    pub fn take(&self, namespace: &str, pod: &str) -> Option<String> {
        self.map()
            .remove(&(namespace.to_owned(), pod.to_owned()))
            .map(|e| e.password)
    }

    /// Forgets the passwords of `pool`'s pods not in `live` (the pods its reconcile just listed),
    /// so pods deleted, or claimed through another replica, do not accumulate.
    pub fn retain(&self, namespace: &str, pool: &str, live: &[String]) {
        self.map()
            .retain(|(ns, pod), e| ns != namespace || e.pool != pool || live.contains(pod));
    }

    /// How many passwords are held.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> MutexGuard<'_, HashMap<(String, String), Entry>> {
        // A poisoned map holds only passwords that can be read again from their Secrets.
        self.by_pod.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_taken_once_and_only_in_its_namespace() {
        let p = PoolPasswords::default();
        p.remember("ns", "warm", "warm-abcde", "s3cret");
        assert_eq!(p.take("other", "warm-abcde"), None);
        assert_eq!(p.take("ns", "warm-abcde").as_deref(), Some("s3cret"));
        assert_eq!(
            p.take("ns", "warm-abcde"),
            None,
            "a claimed pod's password is gone"
        );
    }

    #[test]
    fn retain_drops_only_the_pools_pods_that_were_not_listed() {
        let p = PoolPasswords::default();
        p.remember("ns", "a", "a-1", "x");
        p.remember("ns", "a", "a-2", "x");
        p.remember("ns", "b", "b-1", "x");
        p.remember("other", "a", "a-9", "x");
        p.retain("ns", "a", &["a-2".to_owned()]);
        assert_eq!(p.take("ns", "a-1"), None, "deleted pod forgotten");
        assert!(p.take("ns", "a-2").is_some(), "listed pod kept");
        assert!(p.take("ns", "b-1").is_some(), "another pool untouched");
        assert!(
            p.take("other", "a-9").is_some(),
            "another namespace untouched"
        );
        assert!(p.is_empty());
    }
}
