//! Pure lifecycle timers: idle expiry and maximum lifetime.
//!
//! Expiry policy (both workspace kinds): the pod is deleted (R state ends) and the phase becomes
//! Expired; the Secret, Service, NetworkPolicy and a Persistent workspace PVC stay
//! until the RSession is deleted. Idle expiry is measured from the latest of the
//! `rsession.dev/last-activity` annotation, the current pod's creation and the RSession's
//! creation, so a newer activity stamp revives an idle-expired session (with fresh R state).
//! Maximum lifetime is measured from the RSession's creation; raising `maxLifetime` revives it.
//! Suspended sessions have no pod, so only the maximum lifetime applies to them.

use std::time::Duration;

use jiff::Timestamp;
use rsession_api::LifecycleSpec;

/// Why a session expired; also the reason of the `Expired` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryReason {
    /// No evaluation for longer than `spec.lifecycle.idleTimeout`.
    IdleTimeout,
    /// Older than `spec.lifecycle.maxLifetime`.
    MaxLifetime,
}

impl ExpiryReason {
    /// Condition reason spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdleTimeout => "IdleTimeout",
            Self::MaxLifetime => "MaxLifetime",
        }
    }
}

/// Result of [`evaluate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Set when the session is expired now.
    pub expired: Option<ExpiryReason>,
    /// Time until the next deadline passes (the reconciler requeues after it), `None` when no
    /// deadline lies ahead.
    pub next_deadline: Option<Duration>,
}

/// Evaluates the timers at `now` for a session created at `created` whose latest activity
/// (annotation, pod creation or RSession creation, whichever is latest) is `active_since`.
pub fn evaluate(
    now: Timestamp,
    created: Timestamp,
    active_since: Timestamp,
    lifecycle: &LifecycleSpec,
    suspended: bool,
) -> Timers {
    let max_lifetime: Duration = lifecycle.max_lifetime.into();
    let idle_timeout: Duration = lifecycle.idle_timeout.into();
    let remaining = |since: Timestamp, limit: Duration| -> Option<Duration> {
        let elapsed = now.duration_since(since);
        let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
        limit.checked_sub(elapsed).filter(|d| !d.is_zero())
    };
    let Some(lifetime_left) = remaining(created, max_lifetime) else {
        return Timers {
            expired: Some(ExpiryReason::MaxLifetime),
            next_deadline: None,
        };
    };
    if suspended {
        return Timers {
            expired: None,
            next_deadline: Some(lifetime_left),
        };
    }
    let since = active_since.max(created);
    match remaining(since, idle_timeout) {
        // Expired for idleness, but the lifetime deadline still lies ahead: a later check
        // turns IdleTimeout into MaxLifetime.
        None => Timers {
            expired: Some(ExpiryReason::IdleTimeout),
            next_deadline: Some(lifetime_left),
        },
        Some(idle_left) => Timers {
            expired: None,
            next_deadline: Some(idle_left.min(lifetime_left)),
        },
    }
}

/// Parses the `rsession.dev/last-activity` annotation (RFC 3339); `None` when absent or invalid.
pub fn parse_activity(value: Option<&str>) -> Option<Timestamp> {
    value?.trim().parse::<Timestamp>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn lifecycle(idle_secs: u64, max_secs: u64) -> LifecycleSpec {
        LifecycleSpec {
            idle_timeout: Duration::from_secs(idle_secs).into(),
            max_lifetime: Duration::from_secs(max_secs).into(),
            suspend: false,
            checkpoint: Default::default(),
        }
    }

    const CREATED: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn active_session_requeues_at_the_idle_deadline() {
        let timers = evaluate(
            t("2026-01-01T00:10:00Z"),
            t(CREATED),
            t("2026-01-01T00:09:00Z"),
            &lifecycle(600, 86_400),
            false,
        );
        assert_eq!(timers.expired, None);
        assert_eq!(timers.next_deadline, Some(Duration::from_secs(540)));
    }

    #[test]
    fn idle_session_expires_after_idle_timeout() {
        let timers = evaluate(
            t("2026-01-01T00:20:00Z"),
            t(CREATED),
            t("2026-01-01T00:09:00Z"),
            &lifecycle(600, 86_400),
            false,
        );
        assert_eq!(timers.expired, Some(ExpiryReason::IdleTimeout));
    }

    #[test]
    fn idle_timeout_counts_from_creation_without_activity() {
        let timers = evaluate(
            t("2026-01-01T00:10:01Z"),
            t(CREATED),
            t(CREATED),
            &lifecycle(600, 86_400),
            false,
        );
        assert_eq!(timers.expired, Some(ExpiryReason::IdleTimeout));
    }

    #[test]
    fn newer_activity_revives_an_idle_session() {
        let timers = evaluate(
            t("2026-01-01T01:00:00Z"),
            t(CREATED),
            t("2026-01-01T00:59:00Z"),
            &lifecycle(600, 86_400),
            false,
        );
        assert_eq!(timers.expired, None);
    }

    #[test]
    fn max_lifetime_wins_over_activity() {
        let timers = evaluate(
            t("2026-01-01T02:00:00Z"),
            t(CREATED),
            t("2026-01-01T01:59:59Z"),
            &lifecycle(600, 3_600),
            false,
        );
        assert_eq!(
            timers,
            Timers {
                expired: Some(ExpiryReason::MaxLifetime),
                next_deadline: None
            }
        );
    }

    #[test]
    fn suspended_session_is_not_idle_but_still_ages() {
        let timers = evaluate(
            t("2026-01-01T00:30:00Z"),
            t(CREATED),
            t(CREATED),
            &lifecycle(600, 3_600),
            true,
        );
        assert_eq!(timers.expired, None);
        assert_eq!(timers.next_deadline, Some(Duration::from_secs(1_800)));
    }

    #[test]
    fn activity_annotation_parses_rfc3339_and_ignores_garbage() {
        assert_eq!(
            parse_activity(Some("2026-01-01T00:00:05Z")),
            Some(t("2026-01-01T00:00:05Z"))
        );
        assert_eq!(
            parse_activity(Some("2026-01-01T01:00:05+01:00")),
            Some(t("2026-01-01T00:00:05Z"))
        );
        assert_eq!(parse_activity(Some("yesterday")), None);
        assert_eq!(parse_activity(None), None);
    }
}
