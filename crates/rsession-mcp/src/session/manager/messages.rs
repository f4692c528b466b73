//! The text callers read when a session call fails (or R was replaced):
//! what happened, whether R state survived, and what to do next.

use std::time::Duration;

use serde_json::json;

use crate::errors::{ErrorCode, ToolError};
use crate::session::conn::Stop;
use crate::session::oom::OomKill;

/// `reset_session`'s notice.
pub(super) const RESET_DONE: &str = "R state was reset: a fresh R process now serves this session; objects, loaded packages and options are gone, files in the workspace survived.";

/// Why R went away when it ignored the interrupt at the deadline.
pub(super) const KILLED_REASON: &str = "killed after it ignored an interrupt at the deadline";

/// The notice of the first result on a fresh R after the last one ended for `reason`.
pub(super) fn reset_notice(reason: &str) -> String {
    format!(
        "R state was reset: the previous R process of this session ended ({reason}). \
         This call ran in a fresh R; objects, loaded packages and options are gone, \
         but files in the workspace survived. Re-run setup code (library(), data loading) if needed."
    )
}

/// `session_busy`: another call holds session `id`.
pub(super) fn session_busy(id: &str) -> ToolError {
    ToolError::new(
        ErrorCode::SessionBusy,
        "another call is running in this session; calls on one session run one at a time. Retry when it has finished (or timed out).",
    )
    .with_details(json!({"session_id": id}))
}

/// `forbidden`: this server holds `max` sessions already.
pub(super) fn too_many_sessions(max: usize) -> ToolError {
    ToolError::new(
        ErrorCode::Forbidden,
        format!("this server already holds its maximum of {max} sessions; close one first"),
    )
}

/// `invalid_argument`: `create_session` named pool `pool` on a backend of
/// `kind` without pools.
pub(super) fn no_pools(pool: &str, kind: &str) -> ToolError {
    ToolError::invalid(format!(
        "pool {pool:?}: warm pools (RSessionPools) exist only on the kubernetes backend, and this server runs the {kind} backend; leave pool out"
    ))
    .with_details(json!({"pool": pool, "backend": kind}))
}

/// `code_too_large`: `len` bytes of code, `max` allowed.
pub(super) fn code_too_large(len: usize, max: usize) -> ToolError {
    ToolError::new(
        ErrorCode::CodeTooLarge,
        format!("code is {len} bytes; this server accepts at most {max} bytes per call. Write large inputs to a workspace file (write_session_file) and source() it."),
    )
    .with_details(json!({"code_bytes": len, "max_code_bytes": max}))
}

/// `execution_timeout`: interrupted at the deadline `after`, state kept.
pub(super) fn interrupted(after: Duration) -> ToolError {
    ToolError::new(
        ErrorCode::ExecutionTimeout,
        format!(
            "the code ran longer than {:.1} s and was interrupted; R state is kept and the session still answers",
            after.as_secs_f64()
        ),
    )
}

/// `cancelled`: the caller cancelled the call after `elapsed`; R was
/// interrupted and its state kept.
pub(super) fn cancelled(elapsed: Duration) -> ToolError {
    ToolError::new(
        ErrorCode::Cancelled,
        format!(
            "the call was cancelled after {:.1} s and R was interrupted; R state is kept and the session takes the next call",
            elapsed.as_secs_f64()
        ),
    )
}

/// `session_lost`: killed after ignoring the interrupt sent at the deadline
/// `after` or on cancellation (`stop`).
pub(super) fn killed(after: Duration, stop: Stop) -> ToolError {
    let why = match stop {
        Stop::Deadline => format!("the code ran longer than {:.1} s", after.as_secs_f64()),
        Stop::Cancelled => "the call was cancelled".to_string(),
    };
    ToolError::new(
        ErrorCode::SessionLost,
        format!(
            "{why} and R did not stop on interrupt, so its R process was killed. Retry: the next call starts a fresh R in the same workspace (R state lost, files kept)."
        ),
    )
}

/// `session_lost`: R ended during the call (not by the OOM killer).
pub(super) fn lost() -> ToolError {
    ToolError::new(
        ErrorCode::SessionLost,
        "the R process of this session ended during the call (quit(), a crash, or it was killed). Retry: the next call starts a fresh R in the same workspace (R state lost, files kept).",
    )
}

/// `session_lost`: the out-of-memory killer ended R.
pub(super) fn oom_killed(kill: &OomKill) -> ToolError {
    ToolError::new(ErrorCode::SessionLost, kill.message())
}

/// Why a session adopted from the backend starts on a fresh R.
pub(super) const ADOPTED_REASON: &str =
    "this MCP server held no connection to it, e.g. after a restart of the server";

/// The notice of a session restored from its checkpoint after a server
/// restart: from when, what came back, and what did not (from
/// `.rsession_checkpoint$restore()`'s report).
pub(super) fn restored_notice(report: &serde_json::Value) -> String {
    let list = |key: &str| -> String {
        let names: Vec<&str> = report[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    };
    let age = report["age_secs"].as_f64().unwrap_or(0.0);
    let mut text = format!(
        "R state was restored from this session's checkpoint of {} ({:.0} s old): a new R process holds the objects {}; packages attached: {}; datasets registered: {}.",
        report["created_at"].as_str().unwrap_or("?"),
        age,
        list("restored"),
        list("packages"),
        list("datasets"),
    );
    for (key, what) in [
        ("skipped", "Not in the checkpoint"),
        ("failed", "Could not be restored"),
    ] {
        if let Some(items) = report[key].as_array().filter(|a| !a.is_empty()) {
            let parts: Vec<String> = items
                .iter()
                .map(|i| {
                    format!(
                        "{} ({})",
                        i["name"].as_str().unwrap_or("?"),
                        i["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            text.push_str(&format!(" {what}: {}.", parts.join("; ")));
        }
    }
    text.push_str(" Changes made after the checkpoint are gone; workspace files are as they were.");
    text
}
