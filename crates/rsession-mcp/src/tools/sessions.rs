//! `create_session`, `list_sessions`, `close_session`, `reset_session`.

use rmcp::handler::server::common::Extension;
use rmcp::model::{CallToolResult, JsonObject};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{Call, NoArgs, RSessionServer, ToolResult, input_schema, structured};
use crate::errors::ToolError;
use crate::session::SessionManager;

/// Arguments naming one session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    /// Session id returned by `create_session`.
    pub session_id: String,
}

#[tool_router(router = sessions_router, vis = "pub(super)")]
impl RSessionServer {
    /// Start a new R session with its own workspace directory.
    #[tool(
        name = "create_session",
        description = "Start a new R session (a fresh R process with its own workspace directory as working directory). Returns session_id for the other tools.",
        input_schema = input_schema::<NoArgs>()
    )]
    async fn create_session(
        &self,
        Extension(call): Extension<Call>,
        args: JsonObject,
    ) -> ToolResult {
        self.run("create_session", args, |_: NoArgs| {
            create(&self.manager, &call)
        })
        .await
    }

    /// List this caller's sessions.
    #[tool(
        name = "list_sessions",
        description = "List your sessions with their state (busy, connected, executions, last activity).",
        input_schema = input_schema::<NoArgs>()
    )]
    async fn list_sessions(
        &self,
        Extension(call): Extension<Call>,
        args: JsonObject,
    ) -> ToolResult {
        self.run("list_sessions", args, |_: NoArgs| {
            list(&self.manager, &call)
        })
        .await
    }

    /// Close a session.
    #[tool(
        name = "close_session",
        description = "Close a session: its R process ends and its workspace is deleted.",
        input_schema = input_schema::<SessionRef>()
    )]
    async fn close_session(
        &self,
        Extension(call): Extension<Call>,
        args: JsonObject,
    ) -> ToolResult {
        self.run("close_session", args, |p: SessionRef| {
            close(&self.manager, &call, p)
        })
        .await
    }

    /// Restart a session's R.
    #[tool(
        name = "reset_session",
        description = "Replace the session's R process with a fresh one: all R objects, loaded packages and options are discarded; workspace files are kept.",
        input_schema = input_schema::<SessionRef>()
    )]
    async fn reset_session(
        &self,
        Extension(call): Extension<Call>,
        args: JsonObject,
    ) -> ToolResult {
        self.run("reset_session", args, |p: SessionRef| {
            reset(&self.manager, &call, p)
        })
        .await
    }
}

async fn create(manager: &SessionManager, call: &Call) -> Result<CallToolResult, ToolError> {
    let info = manager.create(&call.owner, &call.progress).await?;
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

async fn list(manager: &SessionManager, call: &Call) -> Result<CallToolResult, ToolError> {
    let sessions = manager.list(&call.owner).await?;
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

async fn close(
    manager: &SessionManager,
    call: &Call,
    p: SessionRef,
) -> Result<CallToolResult, ToolError> {
    let id = p.session_id.as_str();
    manager.close(&call.owner, id).await?;
    Ok(structured(
        format!("Closed session {id}."),
        json!({"session_id": id, "closed": true}),
    ))
}

async fn reset(
    manager: &SessionManager,
    call: &Call,
    p: SessionRef,
) -> Result<CallToolResult, ToolError> {
    let id = p.session_id.as_str();
    let notice = manager.reset(&call.owner, id).await?;
    Ok(structured(
        notice.clone(),
        json!({"session_id": id, "state_reset": true, "state_reset_notice": notice}),
    ))
}
