//! Checkpoints the server takes on its own, not asked by a tool call:
//! - before expiry, when the backend passes on the platform's request
//!   ([`crate::session::Backend::checkpoint_requests`]; Kubernetes: the RSession's phase
//!   `Checkpointing`), answered with [`crate::session::Backend::answer_checkpoint`];
//! - periodically, for sessions with an interval
//!   ([`crate::session::Backend::checkpoint_interval`]): when a session was used since its
//!   last checkpoint and that is older than the interval.
//!
//! Neither counts as activity (no `record_activity`): a checkpoint must not keep an idle
//! session alive. Both skip a session whose R is not connected here: only the holder of the
//! QAP1 connection can reach that R's state.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{Session, SessionManager, Slot};
use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::session::{CheckpointRequest, Watch};
use crate::sexp_json::to_json;

/// Time budget R gets for a checkpoint the server takes on its own; the call's deadline is
/// twice that. Kept under the operator's default checkpoint timeout (60 s).
const BUDGET: Duration = Duration::from_secs(20);
/// Longest time a checkpoint the server takes on its own holds a session
/// (the call deadline), which a call arriving meanwhile waits at most.
pub(super) const LONGEST: Duration = Duration::from_secs(BUDGET.as_secs() * 2 + 5);
/// How long a request waits for a running call on the session to finish.
const WAIT_FOR_SLOT: Duration = Duration::from_secs(20);
/// How often sessions are checked for a periodic checkpoint.
const PERIODIC_TICK: Duration = Duration::from_secs(1);
/// Caps of a checkpoint the server takes on its own (the tool's defaults).
const MAX_BYTES: u64 = 1 << 30;
const MAX_OBJECT_BYTES: u64 = 256 << 20;

/// Why the R of a session checkpointed before expiry went away (what the
/// next result says before the restore report).
pub(super) const STOPPED_REASON: &str = "the session's pod was stopped (idle timeout, maximum lifetime or suspend); its R state was checkpointed first";

impl SessionManager {
    /// Start answering checkpoint requests and taking periodic checkpoints in
    /// the background, for as long as the manager lives. Needs a Tokio
    /// runtime; a backend with neither feature starts nothing but a cheap tick.
    pub fn start_checkpoints(self: &Arc<Self>) {
        if let Some(mut requests) = self.backend.checkpoint_requests() {
            let manager = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(request) = requests.recv().await {
                    let Some(m) = manager.upgrade() else { break };
                    tokio::spawn(async move { m.answer_request(request).await });
                }
            });
            let manager = Arc::downgrade(self);
            tokio::spawn(periodic(manager));
        }
    }

    /// Checkpoint the session of `request` if its R is connected here, then
    /// answer; the R is then let go, as its pod is about to end.
    async fn answer_request(&self, request: CheckpointRequest) {
        let id = &request.session_id;
        let Some(session) = self.map().get(id).cloned() else {
            tracing::debug!(session_id = %id, "checkpoint request for a session not held here");
            return;
        };
        let Ok(mut slot) = tokio::time::timeout(WAIT_FOR_SLOT, session.slot.lock()).await else {
            tracing::warn!(session_id = %id, "the session stayed busy; checkpoint request not answered");
            return;
        };
        if slot.conn.is_none() {
            tracing::debug!(session_id = %id, "no R connected here; checkpoint request left to the operator's timeout");
            return;
        }
        let report = match self.checkpoint_slot(&session, &mut slot).await {
            Ok(v) => {
                if let Some(conn) = slot.conn.take() {
                    conn.close().await;
                }
                slot.lost = Some(STOPPED_REASON.into());
                one_line(&v)
            }
            Err(e) => format!("checkpoint failed: {}", e.message),
        };
        self.backend.answer_checkpoint(&request, &report).await;
    }

    /// Run a checkpoint on the slot's R (which must be connected) and note
    /// when. Returns the harness's report as JSON.
    async fn checkpoint_slot(
        &self,
        session: &Session,
        slot: &mut Slot,
    ) -> Result<Value, ToolError> {
        let conn = slot
            .conn
            .as_mut()
            .ok_or_else(|| ToolError::internal("no R connected"))?;
        let expr = HarnessCall::Checkpoint {
            max_bytes: MAX_BYTES,
            max_object_bytes: MAX_OBJECT_BYTES,
            budget_secs: BUDGET.as_secs_f64(),
        }
        .render()?;
        let started = Instant::now();
        session.checkpointing.store(true, Ordering::Release);
        let reply = conn
            .call(
                &expr,
                started + BUDGET * 2,
                self.config.limits.grace,
                &Watch::default(),
            )
            .await;
        session.checkpointing.store(false, Ordering::Release);
        match reply {
            Ok(v) => {
                slot.checkpointed_at = Some(jiff::Timestamp::now());
                let v = to_json(&v);
                tracing::info!(session_id = %session.id, elapsed_ms = started.elapsed().as_millis() as u64, report = %one_line(&v), "checkpointed");
                Ok(v)
            }
            Err(e) => {
                tracing::warn!(session_id = %session.id, error = %e.message, "checkpoint failed; the previous one, if any, is kept");
                Err(e)
            }
        }
    }

    /// One pass of periodic checkpoints: each held, idle-now session with an
    /// interval, used since its last checkpoint, whose last checkpoint (or
    /// connection) is older than the interval.
    async fn periodic_pass(&self) {
        let sessions: Vec<Arc<Session>> = self.map().values().cloned().collect();
        let now = jiff::Timestamp::now();
        for session in sessions {
            let Some(interval) = self.backend.checkpoint_interval(&session.id) else {
                continue;
            };
            let Some(last_used) = *session
                .last_activity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
            else {
                continue;
            };
            // A busy session is checked again on the next tick.
            let Ok(mut slot) = session.slot.clone().try_lock_owned() else {
                continue;
            };
            if slot.conn.is_none() {
                continue;
            }
            let since = slot.checkpointed_at.unwrap_or(session.created_at);
            let due =
                Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO) >= interval;
            if due && last_used > since {
                let _ = self.checkpoint_slot(&session, &mut slot).await;
            }
        }
    }
}

/// Periodic checkpoints until the manager is dropped.
async fn periodic(manager: Weak<SessionManager>) {
    let mut tick = tokio::time::interval(PERIODIC_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(m) = manager.upgrade() else { break };
        m.periodic_pass().await;
    }
}

/// A checkpoint report as one line: objects, size, time, skipped names.
fn one_line(v: &Value) -> String {
    let saved = v["saved"].as_array().map_or(0, Vec::len);
    let skipped: Vec<&str> = v["skipped"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    let mut line = format!(
        "{saved} object(s), {:.1} MB, {:.2} s",
        v["bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        v["seconds"].as_f64().unwrap_or(0.0)
    );
    if !skipped.is_empty() {
        line.push_str(&format!("; skipped: {}", skipped.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_report_line_counts_objects_and_names_the_skipped() {
        let v = json!({"saved": ["a", "b"], "bytes": 1048576.0, "seconds": 0.5,
                       "skipped": [{"name": "con", "reason": "a database connection"}]});
        assert_eq!(one_line(&v), "2 object(s), 1.0 MB, 0.50 s; skipped: con");
    }
}
