//! The frontend's side of the checkpoint handshake (`rsession_api::CheckpointSpec`): one watch
//! over this namespace's RSessions that
//! - passes each checkpoint request (phase `Checkpointing` with a
//!   `status.checkpointRequestedAt` not yet answered) to the session manager, once;
//! - remembers each session's `spec.lifecycle.checkpoint.interval` for periodic checkpoints.
//!
//! The answer is a merge patch of two annotations, [`wk::ANNOTATION_CHECKPOINTED_AT`] (the
//! request's time, echoed) and [`wk::ANNOTATION_CHECKPOINT_REPORT`]. Only the frontend holding
//! the session's R can save it, so a replica that does not hold the session leaves the request
//! alone and the operator's timeout decides.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSession};
use serde_json::json;
use tokio::sync::mpsc;

use crate::session::CheckpointRequest;

/// Longest report line stored in the annotation (annotations share a 256 KiB budget).
const REPORT_MAX_CHARS: usize = 1000;

/// What the watch learned, shared with the backend.
#[derive(Default)]
pub(super) struct Checkpoints {
    /// `spec.lifecycle.checkpoint.interval` by session id (only sessions that set one).
    intervals: Mutex<HashMap<String, Duration>>,
    /// The receiver, until the session manager takes it.
    requests: Mutex<Option<mpsc::UnboundedReceiver<CheckpointRequest>>>,
}

impl Checkpoints {
    /// Start the watch over `rsessions` (labelled part of RSession) in the background and
    /// return the shared state. Must be called inside a Tokio runtime.
    pub(super) fn start(rsessions: Api<RSession>) -> Arc<Checkpoints> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Checkpoints {
            intervals: Mutex::default(),
            requests: Mutex::new(Some(rx)),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let config = watcher::Config::default().labels(&format!(
                "{}={}",
                wk::LABEL_PART_OF,
                wk::APP_NAME
            ));
            let stream = watcher(rsessions, config)
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            // Requests already passed on, so a re-list or another status write does not
            // checkpoint twice.
            let mut sent: HashSet<(String, String)> = HashSet::new();
            while let Some(event) = stream.next().await {
                let Some(shared) = weak.upgrade() else { break };
                let rs = match event {
                    Ok(rs) => rs,
                    Err(e) => {
                        tracing::warn!(error = %e, "watching RSessions for checkpoint requests");
                        continue;
                    }
                };
                shared.note_interval(&rs);
                if let Some(request) = pending_request(&rs)
                    && sent.insert((request.session_id.clone(), request.requested_at.clone()))
                {
                    tracing::info!(session_id = %request.session_id, requested_at = %request.requested_at, "checkpoint requested before expiry");
                    if tx.send(request).is_err() {
                        break;
                    }
                }
            }
        });
        shared
    }

    fn note_interval(&self, rs: &RSession) {
        let interval = rs.spec.lifecycle.checkpoint.interval.map(Duration::from);
        let mut map = self.intervals.lock().unwrap_or_else(|p| p.into_inner());
        match interval {
            Some(d) => map.insert(rs.name_any(), d),
            None => map.remove(&rs.name_any()),
        };
    }

    /// The receiver of checkpoint requests, once.
    pub(super) fn take_requests(&self) -> Option<mpsc::UnboundedReceiver<CheckpointRequest>> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// `spec.lifecycle.checkpoint.interval` of session `id`, as last seen.
    pub(super) fn interval(&self, id: &str) -> Option<Duration> {
        self.intervals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }
}

/// The unanswered checkpoint request of `rs`, if it has one.
pub(super) fn pending_request(rs: &RSession) -> Option<CheckpointRequest> {
    let status = rs.status.as_ref()?;
    if status.phase != Some(Phase::Checkpointing) {
        return None;
    }
    let requested = status.checkpoint_requested_at.as_ref()?.0;
    let answered = rs
        .annotations()
        .get(wk::ANNOTATION_CHECKPOINTED_AT)
        .and_then(|v| v.trim().parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t == requested);
    (!answered).then(|| CheckpointRequest {
        session_id: rs.name_any(),
        requested_at: requested.to_string(),
    })
}

/// Answer `request` on the RSession with `report` (shortened to one line).
pub(super) async fn answer(rsessions: &Api<RSession>, request: &CheckpointRequest, report: &str) {
    let mut line: String = report.replace('\n', " ");
    if line.chars().count() > REPORT_MAX_CHARS {
        line = line.chars().take(REPORT_MAX_CHARS).collect::<String>() + "…";
    }
    let patch = json!({"metadata": {"annotations": {
        wk::ANNOTATION_CHECKPOINTED_AT: request.requested_at,
        wk::ANNOTATION_CHECKPOINT_REPORT: line,
    }}});
    match rsessions
        .patch(
            &request.session_id,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => tracing::info!(session_id = %request.session_id, "checkpoint answered"),
        Err(e) => {
            tracing::warn!(session_id = %request.session_id, error = %e, "could not answer the checkpoint request; the operator ends the pod at its timeout")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use rsession_api::{RSessionSpec, RSessionStatus};

    use super::*;

    fn checkpointing(requested: &str, answered: Option<&str>) -> RSession {
        let mut rs = RSession::new("rs-1", RSessionSpec::default());
        rs.status = Some(RSessionStatus {
            phase: Some(Phase::Checkpointing),
            checkpoint_requested_at: Some(Time(requested.parse().expect("time"))),
            ..RSessionStatus::default()
        });
        if let Some(a) = answered {
            rs.metadata.annotations = Some(BTreeMap::from([(
                wk::ANNOTATION_CHECKPOINTED_AT.to_string(),
                a.to_string(),
            )]));
        }
        rs
    }

    #[test]
    fn an_unanswered_request_is_pending_and_an_answered_one_is_not() {
        let rs = checkpointing("2026-01-01T00:00:05Z", None);
        assert_eq!(
            pending_request(&rs),
            Some(CheckpointRequest {
                session_id: "rs-1".into(),
                requested_at: "2026-01-01T00:00:05Z".into()
            })
        );
        let older = checkpointing("2026-01-01T00:00:05Z", Some("2026-01-01T00:00:01Z"));
        assert!(
            pending_request(&older).is_some(),
            "an older answer is not this one"
        );
        let done = checkpointing("2026-01-01T00:00:05Z", Some("2026-01-01T00:00:05Z"));
        assert_eq!(pending_request(&done), None);
        let mut ready = checkpointing("2026-01-01T00:00:05Z", None);
        ready.status.as_mut().expect("status").phase = Some(Phase::Ready);
        assert_eq!(pending_request(&ready), None);
    }
}
