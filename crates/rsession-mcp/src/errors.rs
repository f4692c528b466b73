//! Tool failures the agent reads: a stable `code`, a message, whether retrying
//! can help, and details.
//!
//! They reach the client as an MCP tool result with `isError: true` whose
//! structured content (and text content, as JSON) is
//! `{"code": "...", "message": "...", "retryable": bool, "details": {...}}`
//! (MCP spec 2025-06-18, "Tools" → "Error Handling": tool execution errors
//! are reported in the result, protocol errors only for malformed requests).

use rmcp::model::{CallToolResult, ContentBlock};
use serde::Serialize;
use serde_json::{Value, json};

/// Stable snake_case failure codes (ARCHITECTURE.md, "Executing code").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No session with that id (never created, closed, or owned by someone else).
    SessionNotFound,
    /// The session exists but its R is not reachable yet.
    SessionNotReady,
    /// The RSessionPool named in `create_session`'s `pool` does not exist in
    /// the sessions namespace (kubernetes backend).
    PoolNotFound,
    /// Another call is running in this session; calls are serialised, a
    /// concurrent one is refused at once instead of queued.
    SessionBusy,
    /// The R process went away (killed after a timeout, `quit()`, crash); the
    /// next call starts a fresh R in the same workspace.
    SessionLost,
    /// The deadline passed; R was interrupted (state kept) or killed.
    ExecutionTimeout,
    /// The caller cancelled the call (MCP `notifications/cancelled`); R was
    /// interrupted (state kept). Clients that cancel do not wait for this
    /// answer; it is what the metrics and logs record.
    Cancelled,
    /// The code is larger than the server's `--max-code-bytes`.
    CodeTooLarge,
    /// An argument is malformed or out of range (including paths leaving the workspace).
    InvalidArgument,
    /// The caller is not authenticated.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// The backend (Rserve endpoint, Kubernetes API) cannot be reached.
    BackendUnavailable,
    /// The server runs its maximum of tasks already (`--max-tasks`); retry
    /// when one has finished.
    TooManyTasks,
    /// A bug or an unexpected answer; see the message.
    Internal,
}

impl ErrorCode {
    /// The wire name, e.g. `"session_busy"`; also the `code` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SessionNotFound => "session_not_found",
            ErrorCode::SessionNotReady => "session_not_ready",
            ErrorCode::PoolNotFound => "pool_not_found",
            ErrorCode::SessionBusy => "session_busy",
            ErrorCode::SessionLost => "session_lost",
            ErrorCode::ExecutionTimeout => "execution_timeout",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::CodeTooLarge => "code_too_large",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::TooManyTasks => "too_many_tasks",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the same call may succeed if simply tried again.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::SessionNotReady
                | ErrorCode::SessionBusy
                | ErrorCode::SessionLost
                | ErrorCode::BackendUnavailable
                | ErrorCode::TooManyTasks
        )
    }
}

/// A failure of a tool call, shaped for the agent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ToolError {
    /// Stable code.
    pub code: ErrorCode,
    /// One or two sentences saying what happened and what to do.
    pub message: String,
    /// Free-form details (ids, limits, partial output).
    pub details: Value,
}

impl ToolError {
    /// A failure without details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ToolError {
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// Attach details (replaces any earlier ones).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// `session_not_found` for `id`: unknown here, or another owner's (never
    /// revealed as such).
    pub fn session_not_found(id: &str) -> Self {
        ToolError::new(
            ErrorCode::SessionNotFound,
            format!(
                "no session with id {id:?}; list_sessions shows yours, create_session makes one"
            ),
        )
        .with_details(serde_json::json!({"session_id": id}))
    }

    /// Shorthand for [`ErrorCode::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        ToolError::new(ErrorCode::InvalidArgument, message)
    }

    /// Shorthand for [`ErrorCode::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        ToolError::new(ErrorCode::Internal, message)
    }

    /// The JSON body `{code, message, retryable, details}`.
    pub fn body(&self) -> Value {
        json!({
            "code": self.code.as_str(),
            "message": self.message,
            "retryable": self.code.retryable(),
            "details": self.details,
        })
    }

    /// The MCP tool result: `isError: true`, the body as structured content
    /// and as JSON text (for clients that show only text).
    pub fn into_call_result(self) -> CallToolResult {
        let body = self.body();
        let mut result = CallToolResult::error(vec![ContentBlock::text(body.to_string())]);
        result.structured_content = Some(body);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_four_fields() {
        let e = ToolError::new(ErrorCode::SessionBusy, "busy")
            .with_details(json!({"session_id": "s1"}));
        let b = e.body();
        assert_eq!(b["code"], "session_busy");
        assert_eq!(b["message"], "busy");
        assert_eq!(b["retryable"], true);
        assert_eq!(b["details"]["session_id"], "s1");
    }

    #[test]
    fn call_result_is_error_with_structured_body() {
        let r = ToolError::invalid("bad path").into_call_result();
        assert_eq!(r.is_error, Some(true));
        let s = r.structured_content.expect("structured");
        assert_eq!(s["code"], "invalid_argument");
        assert_eq!(s["retryable"], false);
    }

    #[test]
    fn codes_serialise_as_their_wire_names() {
        for code in [
            ErrorCode::SessionNotFound,
            ErrorCode::SessionNotReady,
            ErrorCode::PoolNotFound,
            ErrorCode::SessionBusy,
            ErrorCode::SessionLost,
            ErrorCode::ExecutionTimeout,
            ErrorCode::Cancelled,
            ErrorCode::CodeTooLarge,
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::BackendUnavailable,
            ErrorCode::TooManyTasks,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }
}
