//! The MCP tools. One [`RSessionServer`] value serves one MCP connection
//! (stdio) or one HTTP request/session; all of them share the
//! [`SessionManager`], so R sessions outlive MCP connections.

mod data;
pub mod data_params;
mod exec;
mod explore;
mod files;
mod help;
mod pages;
pub mod params;
pub mod prompts;
mod sessions;

use std::sync::Arc;

use rmcp::handler::server::common::schema_for_input;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, JsonObject,
    ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, prompt_handler, tool, tool_handler, tool_router};
use serde::de::DeserializeOwned;

use crate::auth::{Verb, caller_of};
use crate::errors::ToolError;
use crate::metrics::Metrics;
use crate::session::{Progress, SessionManager};

/// Shown to clients at initialisation (MCP `instructions`).
pub const INSTRUCTIONS: &str = "Run R code in persistent sessions. Call create_session once, then \
execute_in_session with its session_id as often as needed: objects, loaded packages and options persist \
between calls. Results show stdout, printed values, messages, warnings and errors in order, and plots as PNG \
images. Each session has a workspace directory (the working directory): use write_session_file / \
read_session_file / list_session_files for files, install_package for packages. Long computations are \
interrupted at the deadline (limits.max_duration_secs). Failures come back with isError and a JSON body \
{code, message, retryable, details}; on session_lost simply retry (a fresh R starts in the same workspace). \
close_session when done.\n\n\
Data exploration: put the file in the workspace (write_session_file, or R code that downloads or generates it), \
then load_data {session_id, file_path, name} (CSV/TSV, Parquet/Arrow, JSON, Excel, SQLite/DuckDB; backend auto) \
and read its columns, types, missing counts and first rows before anything else. describe_data profiles a dataset \
(distributions, top values); query_data runs SQL over loaded datasets with bound ? params and returns rows; in \
execute_in_session the dataset is an R object of that name with helpers <name>_glimpse(), <name>_summary(), \
<name>_slice_sample(n), <name>_db() (lazy dbplyr table), so use dplyr/ggplot2 on it directly. Prefer summaries and small samples over printing whole \
tables. A result longer than one page comes back as page 1 plus a handle: call read_output {handle} for the next \
page, {handle, search} to find lines (with page numbers) or {handle, page|offset} to jump; pages already sent are \
not repeated. R documentation: the help tool {topic, package?}, or ?topic / vignette() in code (plain text). The \
explore_data prompt gives a step-by-step plan.";

fn input_schema<T: schemars::JsonSchema + std::any::Any>() -> Arc<JsonObject> {
    // The argument types are fixed at compile time and covered by a unit test.
    schema_for_input::<T>().unwrap_or_else(|e| panic!("invalid input schema: {e}"))
}

/// Deserialize tool arguments, turning garbage into an `invalid_argument`
/// tool result (readable by the agent) instead of a protocol error.
fn parse<T: DeserializeOwned>(args: JsonObject) -> Result<T, ToolError> {
    serde_json::from_value(serde_json::Value::Object(args))
        .map_err(|e| ToolError::invalid(format!("invalid arguments: {e}")))
}

/// The MCP server: tools over a shared [`SessionManager`].
#[derive(Clone)]
pub struct RSessionServer {
    manager: Arc<SessionManager>,
    metrics: Arc<Metrics>,
    /// Identity sessions are owned by (`"local"` for stdio and the
    /// unauthenticated HTTP transport). Per call, replaced by the
    /// authenticated caller's user name when [`crate::auth::require_bearer`]
    /// admitted the request.
    owner: String,
    /// Where this call reports progress (the request's `progressToken`).
    progress: Progress,
    /// Long outputs kept for `read_output`, shared by every clone.
    pager: Arc<crate::pager::Pager>,
    tool_router: ToolRouter<RSessionServer>,
}

impl RSessionServer {
    /// A server acting for `owner`, paging long output by `pager`.
    pub fn new(
        manager: Arc<SessionManager>,
        metrics: Arc<Metrics>,
        pager: crate::pager::PagerConfig,
        owner: impl Into<String>,
    ) -> Self {
        let pager = Arc::new(crate::pager::Pager::new(pager));
        RSessionServer {
            manager,
            metrics,
            owner: owner.into(),
            progress: Progress::none(),
            pager,
            tool_router: Self::tool_router() + Self::data_tool_router(),
        }
    }

    /// The shared session manager.
    pub fn manager(&self) -> &Arc<SessionManager> {
        &self.manager
    }

    /// The shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// This server as it serves one call: acting for the authenticated caller
    /// (after the SubjectAccessReview for the tool's RSession verb, see
    /// [`Verb::for_tool`]) and reporting progress to the request's
    /// `progressToken` (MCP spec 2025-06-18, "Utilities" → "Progress").
    ///
    /// Errors: `forbidden`, `backend_unavailable` (review failed).
    async fn for_call(
        &self,
        tool: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<RSessionServer, ToolError> {
        let mut this = self.clone();
        if let Some(caller) = caller_of(&context.extensions) {
            caller.authorize(Verb::for_tool(tool)).await?;
            this.owner = caller.identity.username.clone();
        }
        if let Some(token) = context.meta.get_progress_token() {
            let peer = context.peer.clone();
            this.progress = Progress::new(move |update| {
                let peer = peer.clone();
                let mut param = ProgressNotificationParam::new(token.clone(), update.progress)
                    .with_message(update.message);
                param.total = update.total;
                Box::pin(async move {
                    if let Err(e) = peer.notify_progress(param).await {
                        tracing::debug!(error = %e, "progress notification not delivered");
                    }
                })
            });
        }
        Ok(this)
    }

    /// Record the outcome and turn a failure into an `isError` result.
    fn finish(
        &self,
        tool: &str,
        result: Result<CallToolResult, ToolError>,
    ) -> Result<CallToolResult, ErrorData> {
        match result {
            Ok(r) => {
                self.metrics.tool_call(tool, "ok");
                Ok(r)
            }
            Err(e) => {
                self.metrics.tool_call(tool, e.code.as_str());
                tracing::info!(tool, code = e.code.as_str(), message = %e.message, "tool failed");
                Ok(e.into_call_result())
            }
        }
    }
}

#[tool_router]
impl RSessionServer {
    /// Start a new R session with its own workspace directory.
    #[tool(
        name = "create_session",
        description = "Start a new R session (a fresh R process with its own workspace directory as working directory). Returns session_id for the other tools.",
        input_schema = input_schema::<params::CreateSession>()
    )]
    async fn create_session(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            parse::<params::CreateSession>(args)?;
            sessions::create(&self.manager, &self.owner, &self.progress).await
        };
        self.finish("create_session", r.await)
    }

    /// Run R code in a session.
    #[tool(
        name = "execute_in_session",
        description = "Run R code in a session's global environment; state persists across calls. Returns stdout, printed values, messages, warnings and errors in order (as text and as structured events), and each plot as a PNG image. An R error is a normal result with status \"error\". Optional limits {max_duration_secs, max_output_bytes}.",
        input_schema = input_schema::<params::Execute>()
    )]
    async fn execute_in_session(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<params::Execute>(args)?;
            let result = exec::execute(&self.manager, &self.owner, p).await?;
            Ok(pages::paginate(
                &self.pager,
                &self.owner,
                "execute_in_session",
                result,
            ))
        };
        self.finish("execute_in_session", r.await)
    }

    /// List this caller's sessions.
    #[tool(
        name = "list_sessions",
        description = "List your sessions with their state (busy, connected, executions, last activity).",
        input_schema = input_schema::<params::CreateSession>()
    )]
    async fn list_sessions(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            parse::<params::CreateSession>(args)?;
            sessions::list(&self.manager, &self.owner).await
        };
        self.finish("list_sessions", r.await)
    }

    /// Close a session.
    #[tool(
        name = "close_session",
        description = "Close a session: its R process ends and its workspace is deleted.",
        input_schema = input_schema::<params::SessionRef>()
    )]
    async fn close_session(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<params::SessionRef>(args)?;
            sessions::close(&self.manager, &self.owner, &p.session_id).await
        };
        self.finish("close_session", r.await)
    }

    /// Restart a session's R.
    #[tool(
        name = "reset_session",
        description = "Replace the session's R process with a fresh one: all R objects, loaded packages and options are discarded; workspace files are kept.",
        input_schema = input_schema::<params::SessionRef>()
    )]
    async fn reset_session(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<params::SessionRef>(args)?;
            sessions::reset(&self.manager, &self.owner, &p.session_id).await
        };
        self.finish("reset_session", r.await)
    }

    /// List workspace files.
    #[tool(
        name = "list_session_files",
        description = "List files in the session workspace (or a subdirectory of it): name, size in bytes, directory flag, modification time.",
        input_schema = input_schema::<params::ListFiles>()
    )]
    async fn list_session_files(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<params::ListFiles>(args)?;
            files::list(&self.manager, &self.owner, p).await
        };
        self.finish("list_session_files", r.await)
    }

    /// Read a workspace file.
    #[tool(
        name = "read_session_file",
        description = "Read a file from the session workspace. UTF-8 files come back as text, other files as base64 (images also as image content). Paths are relative to the workspace; '..', absolute paths and symlinks leading out are refused.",
        input_schema = input_schema::<params::ReadFile>()
    )]
    async fn read_session_file(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<params::ReadFile>(args)?;
            files::read(&self.manager, &self.owner, p).await
        };
        self.finish("read_session_file", r.await)
    }

    /// Write a workspace file.
    #[tool(
        name = "write_session_file",
        description = "Write a file into the session workspace (text, or base64 with encoding=\"base64\"); parent directories are created. Paths are relative to the workspace.",
        input_schema = input_schema::<params::WriteFile>()
    )]
    async fn write_session_file(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<params::WriteFile>(args)?;
            files::write(&self.manager, &self.owner, p).await
        };
        self.finish("write_session_file", r.await)
    }

    /// Install R packages into the session library.
    #[tool(
        name = "install_package",
        description = "Install R packages (and their missing dependencies) from the server's configured repository into the session's own library, then they can be loaded with library().",
        input_schema = input_schema::<params::InstallPackage>()
    )]
    async fn install_package(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<params::InstallPackage>(args)?;
            exec::install(&self.manager, &self.owner, p).await
        };
        self.finish("install_package", r.await)
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler]
impl ServerHandler for RSessionServer {
    /// Every tool call goes through [`RSessionServer::for_call`] (identity,
    /// RSession rights, progress) before the tool runs.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let this = match self.for_call(&tool, &context).await {
            Ok(this) => this,
            Err(e) => return self.finish(&tool, Err(e)).map(Into::into),
        };
        let call = ToolCallContext::new(&this, request, context);
        this.tool_router.call(call).await
    }

    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .build(),
        )
        .with_instructions(INSTRUCTIONS);
        info.server_info = Implementation::new("rsession-mcp", env!("CARGO_PKG_VERSION"));
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_schema_is_an_object() {
        for schema in [
            input_schema::<params::CreateSession>(),
            input_schema::<params::Execute>(),
            input_schema::<params::SessionRef>(),
            input_schema::<params::ListFiles>(),
            input_schema::<params::ReadFile>(),
            input_schema::<params::WriteFile>(),
            input_schema::<params::InstallPackage>(),
        ] {
            assert_eq!(schema.get("type").and_then(|t| t.as_str()), Some("object"));
        }
        let exec = input_schema::<params::Execute>();
        let props = exec
            .get("properties")
            .and_then(|p| p.as_object())
            .expect("properties");
        assert!(
            props.contains_key("session_id")
                && props.contains_key("code")
                && props.contains_key("limits")
        );
    }

    #[test]
    fn garbage_arguments_are_invalid_argument() {
        let mut args = JsonObject::new();
        args.insert("session_id".into(), serde_json::json!(42));
        let e = parse::<params::Execute>(args).unwrap_err();
        assert_eq!(e.code, crate::errors::ErrorCode::InvalidArgument);
        let mut args = JsonObject::new();
        args.insert("session_id".into(), serde_json::json!("s"));
        args.insert("code".into(), serde_json::json!("1"));
        args.insert("limits".into(), serde_json::json!({"max_duration": 3}));
        assert!(
            parse::<params::Execute>(args).is_err(),
            "unknown limit field must be refused"
        );
    }
}
