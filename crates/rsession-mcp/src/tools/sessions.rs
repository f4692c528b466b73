//! `create_session`, `list_sessions`, `close_session`, `reset_session`.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::json;

use crate::errors::ToolError;
use crate::session::{Progress, SessionManager};

fn structured(text: String, value: serde_json::Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(value);
    r
}

pub(super) async fn create(
    manager: &SessionManager,
    owner: &str,
    progress: &Progress,
) -> Result<CallToolResult, ToolError> {
    let info = manager.create(owner, progress).await?;
    let text = format!(
        "Created session {} ({}). Working directory: {}. Use execute_in_session with session_id \"{}\".",
        info.session_id,
        info.r_version.as_deref().unwrap_or("R"),
        info.workspace.as_deref().unwrap_or("?"),
        info.session_id
    );
    let value = serde_json::to_value(&info).map_err(|e| ToolError::internal(e.to_string()))?;
    Ok(structured(text, value))
}

pub(super) async fn list(
    manager: &SessionManager,
    owner: &str,
) -> Result<CallToolResult, ToolError> {
    let sessions = manager.list(owner).await?;
    let mut text = if sessions.is_empty() {
        "No sessions. Create one with create_session.\n".to_string()
    } else {
        format!("{} session(s):\n", sessions.len())
    };
    for s in &sessions {
        text.push_str(&format!(
            "- {}{}: created {}, {} execution(s){}{}\n",
            s.session_id,
            s.phase
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            s.created_at,
            s.executions,
            if s.busy { ", busy" } else { "" },
            if s.connected {
                ""
            } else {
                ", R not connected (next call starts one)"
            },
        ));
    }
    Ok(structured(text, json!({ "sessions": sessions })))
}

pub(super) async fn close(
    manager: &SessionManager,
    owner: &str,
    id: &str,
) -> Result<CallToolResult, ToolError> {
    manager.close(owner, id).await?;
    Ok(structured(
        format!("Closed session {id}."),
        json!({"session_id": id, "closed": true}),
    ))
}

pub(super) async fn reset(
    manager: &SessionManager,
    owner: &str,
    id: &str,
) -> Result<CallToolResult, ToolError> {
    let notice = manager.reset(owner, id).await?;
    Ok(structured(
        notice.clone(),
        json!({"session_id": id, "state_reset": true, "state_reset_notice": notice}),
    ))
}
