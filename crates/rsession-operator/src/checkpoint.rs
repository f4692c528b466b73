//! The checkpoint handshake before a pod ends (pure).
//!
//! R state lives only in the R process behind the MCP frontend's QAP1 connection (Rserve forks
//! one R per connection), so only that frontend can save it. Before the pod of a Persistent
//! session is deleted for its idle timeout, its maximum lifetime or `spec.lifecycle.suspend`,
//! the operator holds the pod and asks: phase Checkpointing with `status.checkpointRequestedAt`. The frontend writes the
//! checkpoint into the workspace (which outlives the pod) and answers with the annotation
//! [`wk::ANNOTATION_CHECKPOINTED_AT`] set to the requested time. The pod is deleted on the
//! answer or after `spec.lifecycle.checkpoint.timeout`, whichever comes first; a frontend that
//! never answers (none holds the session, or it is down) delays expiry by at most that timeout.

use std::time::Duration;

use jiff::Timestamp;
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSessionStatus, WorkspaceKind};

use crate::lifecycle::ExpiryReason;
use crate::status::whole_seconds;
use crate::validate::Session;

/// Why the pod of a session is about to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The idle timeout or maximum lifetime passed.
    Expired(ExpiryReason),
    /// `spec.lifecycle.suspend` was set.
    Suspended,
}

impl Ending {
    /// What ends the pod, for status messages.
    pub fn describe(self) -> &'static str {
        match self {
            Ending::Expired(ExpiryReason::IdleTimeout) => "idle timeout passed",
            Ending::Expired(ExpiryReason::MaxLifetime) => "maximum lifetime passed",
            Ending::Suspended => "spec.lifecycle.suspend is true",
        }
    }
}

/// Where the handshake stands for one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Not needed: the pod is not ending, an Ephemeral workspace, no running pod, or switched
    /// off.
    NotNeeded,
    /// Asked at `requested_at` (now, or in an earlier reconcile); keep the pod for `left`.
    Waiting {
        /// Value of `status.checkpointRequestedAt`.
        requested_at: Timestamp,
        /// Until the timeout.
        left: Duration,
    },
    /// The frontend answered; expire now.
    Answered {
        /// The frontend's one-line report (annotation [`wk::ANNOTATION_CHECKPOINT_REPORT`]).
        report: String,
    },
    /// No answer within the timeout; expire now without a checkpoint.
    TimedOut {
        /// The timeout that passed.
        timeout: Duration,
    },
}

/// The handshake for a session whose pod is `ending` (or not), given the stored status,
/// whether its pod still runs, and the RSession's annotations.
pub fn handshake(
    ending: Option<Ending>,
    session: &Session,
    previous: Option<&RSessionStatus>,
    pod_running: bool,
    annotations: &std::collections::BTreeMap<String, String>,
    now: Timestamp,
) -> Handshake {
    let spec = &session.lifecycle.checkpoint;
    let persistent = session.workspace.kind == WorkspaceKind::Persistent;
    let was = previous.and_then(|s| s.phase);
    // Only a session that was serving (Ready, or already waiting) has R state to save.
    let serving = matches!(was, Some(Phase::Ready | Phase::Checkpointing));
    if ending.is_none() || !persistent || !spec.before_stop || !pod_running || !serving {
        return Handshake::NotNeeded;
    }
    let timeout: Duration = spec.timeout.into();
    let requested_at = previous
        .filter(|s| s.phase == Some(Phase::Checkpointing))
        .and_then(|s| s.checkpoint_requested_at.as_ref())
        // Whole seconds: the stored status and the frontend's echo carry no fraction.
        .map_or_else(|| whole_seconds(now), |t| t.0);
    let answered = annotations
        .get(wk::ANNOTATION_CHECKPOINTED_AT)
        .and_then(|v| v.trim().parse::<Timestamp>().ok())
        .is_some_and(|t| t == requested_at);
    if answered {
        let report = annotations
            .get(wk::ANNOTATION_CHECKPOINT_REPORT)
            .cloned()
            .unwrap_or_default();
        return Handshake::Answered { report };
    }
    let waited = Duration::try_from(now.duration_since(requested_at)).unwrap_or(Duration::ZERO);
    match timeout.checked_sub(waited).filter(|d| !d.is_zero()) {
        Some(left) => Handshake::Waiting { requested_at, left },
        None => Handshake::TimedOut { timeout },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use rsession_api::WorkspaceSpec;

    use super::*;
    use crate::build::fixtures::{rsession, session_of};

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn persistent() -> Session {
        let mut rs = rsession("s");
        rs.spec.workspace = WorkspaceSpec {
            kind: WorkspaceKind::Persistent,
            ..WorkspaceSpec::default()
        };
        session_of(&rs)
    }

    fn status(phase: Phase, requested: Option<&str>) -> RSessionStatus {
        RSessionStatus {
            phase: Some(phase),
            checkpoint_requested_at: requested.map(|r| Time(t(r))),
            ..RSessionStatus::default()
        }
    }

    const NOW: &str = "2026-01-01T01:00:00Z";
    const IDLE: Option<Ending> = Some(Ending::Expired(ExpiryReason::IdleTimeout));

    #[test]
    fn a_ready_persistent_session_that_expires_is_asked_first() {
        let hs = handshake(
            IDLE,
            &persistent(),
            Some(&status(Phase::Ready, None)),
            true,
            &BTreeMap::new(),
            t(NOW),
        );
        assert_eq!(
            hs,
            Handshake::Waiting {
                requested_at: t(NOW),
                left: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn the_request_time_is_kept_and_the_wait_shrinks() {
        let hs = handshake(
            IDLE,
            &persistent(),
            Some(&status(Phase::Checkpointing, Some("2026-01-01T00:59:40Z"))),
            true,
            &BTreeMap::new(),
            t(NOW),
        );
        assert_eq!(
            hs,
            Handshake::Waiting {
                requested_at: t("2026-01-01T00:59:40Z"),
                left: Duration::from_secs(40)
            }
        );
    }

    #[test]
    fn an_answer_for_this_request_ends_the_wait_and_an_older_one_does_not() {
        let stored = status(Phase::Checkpointing, Some("2026-01-01T00:59:40Z"));
        let answer = |at: &str| {
            BTreeMap::from([
                (wk::ANNOTATION_CHECKPOINTED_AT.to_owned(), at.to_owned()),
                (
                    wk::ANNOTATION_CHECKPOINT_REPORT.to_owned(),
                    "3 objects".to_owned(),
                ),
            ])
        };
        let this = handshake(
            IDLE,
            &persistent(),
            Some(&stored),
            true,
            &answer("2026-01-01T00:59:40Z"),
            t(NOW),
        );
        assert_eq!(
            this,
            Handshake::Answered {
                report: "3 objects".into()
            }
        );
        let older = handshake(
            IDLE,
            &persistent(),
            Some(&stored),
            true,
            &answer("2026-01-01T00:10:00Z"),
            t(NOW),
        );
        assert!(matches!(older, Handshake::Waiting { .. }), "{older:?}");
    }

    #[test]
    fn no_answer_within_the_timeout_expires_anyway() {
        let hs = handshake(
            IDLE,
            &persistent(),
            Some(&status(Phase::Checkpointing, Some("2026-01-01T00:59:00Z"))),
            true,
            &BTreeMap::new(),
            t(NOW),
        );
        assert_eq!(
            hs,
            Handshake::TimedOut {
                timeout: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn ephemeral_switched_off_not_serving_or_not_expiring_need_nothing() {
        let ready = status(Phase::Ready, None);
        let none = BTreeMap::new();
        let ephemeral = session_of(&rsession("s"));
        assert_eq!(
            handshake(IDLE, &ephemeral, Some(&ready), true, &none, t(NOW)),
            Handshake::NotNeeded
        );
        let mut off = persistent();
        off.lifecycle.checkpoint.before_stop = false;
        assert_eq!(
            handshake(IDLE, &off, Some(&ready), true, &none, t(NOW)),
            Handshake::NotNeeded
        );
        let expired = status(Phase::Expired, None);
        assert_eq!(
            handshake(IDLE, &persistent(), Some(&expired), true, &none, t(NOW)),
            Handshake::NotNeeded
        );
        assert_eq!(
            handshake(IDLE, &persistent(), Some(&ready), false, &none, t(NOW)),
            Handshake::NotNeeded
        );
        assert_eq!(
            handshake(None, &persistent(), Some(&ready), true, &none, t(NOW)),
            Handshake::NotNeeded
        );
    }

    #[test]
    fn a_suspend_is_held_for_a_checkpoint_too() {
        let ready = status(Phase::Ready, None);
        let hs = handshake(
            Some(Ending::Suspended),
            &persistent(),
            Some(&ready),
            true,
            &BTreeMap::new(),
            t(NOW),
        );
        assert!(matches!(hs, Handshake::Waiting { .. }), "{hs:?}");
    }
}
