//! What a tool body gets and gives back: the per-call [`Call`] (owner,
//! progress, cancellation, the shared manager and pager), argument parsing
//! and checks, and the successful-result shape.

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::common::schema_for_input;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::pager::Pager;
use crate::session::{Progress, Reply, SessionManager, Watch};

/// One tool call: who it acts for, where it reports progress, and the
/// shared state its body works on. Built by `RSessionServer::call_context`
/// before the tool runs and handed to the tool's body with its arguments.
#[derive(Clone)]
pub struct Call {
    /// Identity sessions are owned by: the authenticated caller's user name,
    /// else the server's owner (`"local"` for stdio and unauthenticated HTTP).
    pub owner: String,
    /// The request's `progressToken` sink (MCP spec 2025-06-18, "Utilities"
    /// → "Progress").
    pub progress: Progress,
    /// Fires when the client cancels the request (`notifications/cancelled`,
    /// "Utilities" → "Cancellation"); a running evaluation is interrupted.
    pub cancel: CancellationToken,
    /// The session manager shared by every connection.
    pub manager: Arc<SessionManager>,
    /// Long outputs kept for `read_output`.
    pub pager: Arc<Pager>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("owner", &self.owner)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// [`SessionManager::call`] for this call's owner: one harness entry
    /// point in session `session_id`, within `max_duration` (clamped
    /// there), answering an R value ([`rserve::Sexp`]) or, for
    /// [`HarnessCall::Execute`] and [`HarnessCall::InstallPackages`], an
    /// [`crate::session::ExecReport`].
    ///
    /// Errors: those of [`SessionManager::call`]; `internal` when the entry
    /// point answers the other kind.
    pub(super) async fn harness<T: TryFrom<Reply, Error = ToolError>>(
        &self,
        session_id: &str,
        harness_call: HarnessCall,
        max_duration: Option<Duration>,
    ) -> Result<T, ToolError> {
        let watch = Watch {
            cancel: self.cancel.clone(),
            progress: self.progress.clone(),
        };
        let reply = self
            .manager
            .call(&self.owner, session_id, harness_call, max_duration, &watch);
        reply.await?.try_into()
    }
}

/// Arguments of a tool that takes none (`create_session`, `list_sessions`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

pub(super) fn input_schema<T: schemars::JsonSchema + std::any::Any>() -> Arc<JsonObject> {
    // The argument types are fixed at compile time and covered by a unit test.
    schema_for_input::<T>().unwrap_or_else(|e| panic!("invalid input schema: {e}"))
}

/// Deserialize tool arguments, turning garbage into an `invalid_argument`
/// tool result (readable by the agent) instead of a protocol error.
pub(super) fn parse<T: DeserializeOwned>(args: JsonObject) -> Result<T, ToolError> {
    serde_json::from_value(serde_json::Value::Object(args))
        .map_err(|e| ToolError::invalid(format!("invalid arguments: {e}")))
}

/// A deadline argument in seconds (`name` as the caller spelt it): positive
/// and finite, else `invalid_argument`.
pub(super) fn deadline(secs: Option<f64>, name: &str) -> Result<Option<Duration>, ToolError> {
    match secs {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(ToolError::invalid(format!(
            "{name} must be a positive number of seconds"
        ))),
        Some(s) => Ok(Some(Duration::from_secs_f64(s.min(1e9)))),
        None => Ok(None),
    }
}

/// A successful result: `text` as content, `value` as structured content.
pub(super) fn structured(text: String, value: serde_json::Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(value);
    r
}
