//! What an RSession's status means to a caller waiting for it: the progress
//! step it has reached, and why it cannot be used when it is not Ready.

use kube::ResourceExt;
use rsession_api::{Phase, RSession};
use serde_json::json;

use crate::errors::{ErrorCode, ToolError};

/// Steps this backend reports while a session starts: submitted, Pending,
/// Starting, Ready; the session manager reports the last one (connected) at
/// this total ([`crate::session::Progress::finish`]).
pub const PROGRESS_TOTAL: f64 = 4.0;

/// Progress step and readable text for an RSession as last seen.
pub fn progress_step(rs: &RSession) -> (f64, String) {
    let detail = rs
        .status
        .as_ref()
        .and_then(|s| s.message.as_deref())
        .filter(|m| !m.is_empty())
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    match rs.phase() {
        _ if rs.is_ready() => (
            3.0,
            "Ready: Rserve accepts connections; connecting to R".to_string(),
        ),
        None => (
            1.0,
            "Pending: waiting for the operator to pick up the session".to_string(),
        ),
        Some(Phase::Pending) => (
            1.0,
            format!("Pending: the session pod is being created and scheduled{detail}"),
        ),
        Some(Phase::Starting) => (
            2.0,
            format!("Starting: the session pod is scheduled and Rserve is starting{detail}"),
        ),
        Some(p) => (2.0, format!("{p}{detail}")),
    }
}

/// Why a session that is not Ready cannot be used now, if waiting cannot help.
pub(super) fn terminal_state(rs: &RSession) -> Option<ToolError> {
    let id = rs.name_any();
    let message = rs
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    let phase = rs.phase()?;
    let (code, text) = match phase {
        Phase::Failed => (
            ErrorCode::BackendUnavailable,
            format!("session {id} failed: {message}. Close it and create a new one."),
        ),
        Phase::Suspended => (
            ErrorCode::SessionNotReady,
            format!("session {id} is suspended (spec.lifecycle.suspend); resume it to use it"),
        ),
        Phase::Checkpointing => (
            ErrorCode::SessionNotReady,
            format!(
                "session {id} is being checkpointed before its pod ends ({message}); call it again to resume it"
            ),
        ),
        Phase::Expired => (
            ErrorCode::SessionNotReady,
            format!(
                "session {id} expired ({message}); its pod is gone. Create a new session (a Persistent workspace is kept)."
            ),
        ),
        Phase::Pending | Phase::Starting | Phase::Ready => return None,
    };
    Some(
        ToolError::new(code, text).with_details(json!({"session_id": id, "phase": phase.as_str()})),
    )
}

pub(super) fn not_ready(rs: &RSession) -> ToolError {
    if let Some(e) = terminal_state(rs) {
        return e;
    }
    let id = rs.name_any();
    let phase = rs.phase().map(|p| p.as_str()).unwrap_or("Pending");
    ToolError::new(
        ErrorCode::SessionNotReady,
        format!("session {id} is not ready yet (phase {phase}); retry shortly"),
    )
    .with_details(json!({"session_id": id, "phase": phase}))
}

/// Whether `rs` ended (or is ending) for idleness, so a new activity stamp
/// brings it back: phase Checkpointing, or Expired with the Expired
/// condition's reason IdleTimeout (a maximum lifetime cannot be revived).
pub(super) fn idled_out(rs: &RSession) -> bool {
    let Some(status) = rs.status.as_ref() else {
        return false;
    };
    match status.phase {
        Some(Phase::Checkpointing) => true,
        Some(Phase::Expired) => status
            .condition(rsession_api::status::CONDITION_EXPIRED)
            .is_some_and(|c| c.reason == "IdleTimeout"),
        _ => false,
    }
}
