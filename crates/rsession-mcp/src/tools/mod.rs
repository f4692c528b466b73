//! The MCP tools, one file per group, each holding its tool routes,
//! their argument types (whose doc comments become the tools' JSON Schema,
//! MCP spec 2025-06-18 "Tools" → "Tool") and their bodies:
//! `sessions`, `exec`, `files`, `data`, `help`, `pages`;
//! [`prompts`] for `explore_data`. Each group lists its tools in `routes()`,
//! one [`tool`] line each: a [`ToolDef`] const (name, title, description,
//! behaviour hints, paging) and an `async fn(Call, args)` body.
//!
//! One [`RSessionServer`] value serves one MCP connection (stdio) or one
//! HTTP request/session; all of them share the [`SessionManager`], so R
//! sessions outlive MCP connections. Each tool call first passes
//! `RSessionServer::call_context` (identity, the RSession verb of
//! [`crate::auth::TOOL_VERBS`], progress) and reaches its tool's body as a [`Call`].

mod data;
mod exec;
mod files;
mod help;
mod pages;
pub mod prompts;
mod resources;
mod sessions;
mod tasks;

pub use tasks::TaskConfig;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rmcp::handler::server::common::schema_for_input;
use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock,
    GetTaskParams, GetTaskResult, Implementation, JsonObject, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ProgressNotificationParam,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, prompt_handler, tool_handler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::auth::{Verb, caller_of};
use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::metrics::Metrics;
use crate::pager::{Pager, PagerConfig};
use crate::session::{Progress, Reply, SessionManager, Watch};

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
    async fn harness<T: TryFrom<Reply, Error = ToolError>>(
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

/// A deadline argument in seconds (`name` as the caller spelt it): positive
/// and finite, else `invalid_argument`.
fn deadline(secs: Option<f64>, name: &str) -> Result<Option<Duration>, ToolError> {
    match secs {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(ToolError::invalid(format!(
            "{name} must be a positive number of seconds"
        ))),
        Some(s) => Ok(Some(Duration::from_secs_f64(s.min(1e9)))),
        None => Ok(None),
    }
}

/// A successful result: `text` as content, `value` as structured content.
fn structured(text: String, value: serde_json::Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(value);
    r
}

/// Whether a tool's text result is paged for `read_output` when it is
/// longer than one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paging {
    /// Returned whole (short by construction, or bounded by its own limits).
    Whole,
    /// First page plus a `read_output` handle (see [`pages::paginate`]).
    Paged,
}

/// What a tool does to its environment: the behaviour hints of MCP tool
/// annotations (MCP spec 2025-06-18, "Tools" → "Tool annotations"). All
/// four are always sent, never left to the spec's defaults (which assume
/// a destructive, open-world tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hints {
    /// `readOnlyHint`: changes nothing.
    read_only: bool,
    /// `destructiveHint`: may overwrite or remove (R objects, files, a session).
    destructive: bool,
    /// `idempotentHint`: a repeat with the same arguments changes nothing more.
    idempotent: bool,
    /// `openWorldHint`: reaches systems outside the session (a package
    /// repository, a database).
    open_world: bool,
}

impl Hints {
    /// Reads and changes nothing.
    const READ_ONLY: Hints = Hints {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };
    /// Adds (a session, packages) without overwriting anything.
    const ADDITIVE: Hints = Hints {
        read_only: false,
        destructive: false,
        idempotent: false,
        open_world: false,
    };
    /// May overwrite or remove what is there.
    const DESTRUCTIVE: Hints = Hints {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: false,
    };
}

/// One tool as `tools/list` shows it, apart from its input schema (MCP
/// spec 2025-06-18, "Tools" → "Tool"), and how its result is returned.
#[derive(Debug)]
struct ToolDef {
    /// `name`, as agents call it.
    name: &'static str,
    /// `title` (and `annotations.title`, read by older clients): for people.
    title: &'static str,
    /// `description`: for the model; what it does, returns and refuses.
    description: &'static str,
    /// `annotations`' behaviour hints.
    hints: Hints,
    /// Whether a long text result is paged.
    paging: Paging,
    /// Whether the call may run as an MCP task ([`tasks`]), declared in
    /// the tool's `_meta`.
    task: bool,
}

impl ToolDef {
    /// The MCP `Tool` of this definition with `P`'s JSON Schema as `inputSchema`.
    fn tool<P: JsonSchema + 'static>(&self) -> Tool {
        let h = self.hints;
        let annotations = ToolAnnotations::with_title(self.title)
            .read_only(h.read_only)
            .destructive(h.destructive)
            .idempotent(h.idempotent)
            .open_world(h.open_world);
        let tool = Tool::new(self.name, self.description, input_schema::<P>())
            .with_title(self.title)
            .with_annotations(annotations);
        if self.task {
            tool.with_meta(tasks::task_support_meta())
        } else {
            tool
        }
    }
}

/// The route of one tool: its MCP definition ([`ToolDef`], with the JSON
/// Schema of `P` as `inputSchema`) and its body, an `async fn(Call, P)`.
///
/// Every call parses the arguments as `P` (garbage → `invalid_argument`),
/// runs the body, pages the result when the definition says so, counts it
/// in the metrics and turns a [`ToolError`] into an `isError` result.
fn tool<P, F, Fut>(def: &'static ToolDef, body: F) -> ToolRoute<RSessionServer>
where
    P: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(Call, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CallToolResult, ToolError>> + Send + 'static,
{
    let body = Arc::new(body);
    ToolRoute::new_dyn(
        def.tool::<P>(),
        move |context: ToolCallContext<'_, RSessionServer>| {
            let metrics = context.service.metrics.clone();
            let call = context.request_context.extensions.get::<Call>().cloned();
            let args = context.arguments.unwrap_or_default();
            let body = body.clone();
            async move {
                let result = match call {
                    // `call_tool` puts it there before routing; a route reached
                    // another way is a bug, not the caller's fault.
                    None => Err(ToolError::internal("tool called without its call context")),
                    Some(call) => run(def.name, def.paging, call, args, body.as_ref()).await,
                };
                finish(&metrics, def.name, result).map(Into::into)
            }
            .boxed()
        },
    )
}

/// Parse, run and (when `paging` says so) page one tool call, then keep
/// its result within the result size limit ([`pages::fit`]).
async fn run<P, F, Fut>(
    name: &'static str,
    paging: Paging,
    call: Call,
    args: JsonObject,
    body: &F,
) -> Result<CallToolResult, ToolError>
where
    P: DeserializeOwned,
    F: Fn(Call, P) -> Fut,
    Fut: Future<Output = Result<CallToolResult, ToolError>>,
{
    let (pager, owner) = (call.pager.clone(), call.owner.clone());
    let result = body(call, parse::<P>(args)?).await?;
    let result = match paging {
        Paging::Whole => result,
        Paging::Paged => pages::paginate(&pager, &owner, name, result),
    };
    Ok(pages::fit(result, pager.config().max_result_bytes))
}

/// Record the outcome and turn a failure into an `isError` result.
fn finish(
    metrics: &Metrics,
    tool: &str,
    result: Result<CallToolResult, ToolError>,
) -> Result<CallToolResult, ErrorData> {
    match result {
        Ok(r) => {
            metrics.tool_call(tool, "ok");
            Ok(r)
        }
        Err(e) => {
            metrics.tool_call(tool, e.code.as_str());
            tracing::info!(tool, code = e.code.as_str(), message = %e.message, "tool failed");
            Ok(e.into_call_result())
        }
    }
}

/// The MCP server: tools over a shared [`SessionManager`].
#[derive(Clone)]
pub struct RSessionServer {
    manager: Arc<SessionManager>,
    metrics: Arc<Metrics>,
    /// Owner of calls that carry no authenticated caller.
    owner: String,
    /// Long outputs kept for `read_output`, shared by every clone.
    pager: Arc<Pager>,
    /// Tool calls running as MCP tasks, shared by every clone.
    tasks: tasks::Tasks,
    tool_router: ToolRouter<RSessionServer>,
}

impl RSessionServer {
    /// A server acting for `owner`, paging long output by `pager`.
    pub fn new(
        manager: Arc<SessionManager>,
        metrics: Arc<Metrics>,
        pager: PagerConfig,
        owner: impl Into<String>,
    ) -> Self {
        RSessionServer {
            manager,
            metrics,
            owner: owner.into(),
            pager: Arc::new(Pager::new(pager)),
            tasks: tasks::Tasks::new(TaskConfig::default()),
            tool_router: Self::router(),
        }
    }

    /// This server with its task store bounded by `config`.
    pub fn with_task_config(mut self, config: TaskConfig) -> Self {
        self.tasks = tasks::Tasks::new(config);
        self
    }

    /// Every tool of every group.
    fn router() -> ToolRouter<RSessionServer> {
        [
            sessions::routes(),
            exec::routes(),
            files::routes(),
            data::routes(),
            help::routes(),
            pages::routes(),
        ]
        .into_iter()
        .flatten()
        .fold(ToolRouter::new(), ToolRouter::with_route)
    }

    /// The shared session manager.
    pub fn manager(&self) -> &Arc<SessionManager> {
        &self.manager
    }

    /// The shared metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The [`Call`] of one tool call: acting for the authenticated caller
    /// (after the SubjectAccessReview for the tool's verb in
    /// [`crate::auth::TOOL_VERBS`])
    /// and reporting progress to the request's `progressToken`.
    ///
    /// Errors: `forbidden`, `backend_unavailable` (review failed).
    async fn call_context(
        &self,
        verb: Verb,
        context: &RequestContext<RoleServer>,
    ) -> Result<Call, ToolError> {
        let mut owner = self.owner.clone();
        if let Some(caller) = caller_of(&context.extensions) {
            caller.authorize(verb).await?;
            owner = caller.identity.username.clone();
        }
        let mut progress = Progress::none();
        if let Some(token) = context.meta.get_progress_token() {
            let peer = context.peer.clone();
            progress = Progress::new(move |update| {
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
        Ok(Call {
            owner,
            progress,
            cancel: context.ct.clone(),
            manager: self.manager.clone(),
            pager: self.pager.clone(),
        })
    }

    /// [`RSessionServer::call_context`] for a resources request: a refusal
    /// is a JSON-RPC error (resources have no `isError` result), with the
    /// tool error's body as data.
    async fn resource_call(
        &self,
        verb: Verb,
        context: &RequestContext<RoleServer>,
    ) -> Result<Call, ErrorData> {
        self.call_context(verb, context)
            .await
            .map_err(resources::rpc_error)
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler]
impl ServerHandler for RSessionServer {
    /// Every tool call goes through `RSessionServer::call_context`
    /// (identity, RSession rights, progress) before the tool runs.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        match self.call_context(Verb::for_tool(&tool), &context).await {
            Ok(call) => {
                let def = self.tool_router.map.get(tool.as_str()).map(|r| &r.attr);
                if self.tasks.applies(def, &context) {
                    return Ok(self.tasks.start(self, request, context, call));
                }
                context.extensions.insert(call);
            }
            Err(e) => return finish(&self.metrics, &tool, Err(e)).map(Into::into),
        }
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    /// Every file of the caller's connected sessions ([`resources`]).
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let call = self.resource_call(Verb::List, &context).await?;
        resources::list(&call).await
    }

    /// The workspace-file URI template ([`resources::TEMPLATE`]).
    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            resources::template(),
        ]))
    }

    /// One workspace file by its URI ([`resources::read`]).
    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let call = self.resource_call(Verb::Get, &context).await?;
        resources::read(&call, &request.uri).await.map(Into::into)
    }

    /// A task's state, and once it is terminal its result, delivered once
    /// ([`tasks`]).
    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let call = self.resource_call(Verb::Get, &context).await?;
        self.tasks.get(&call.owner, &request.task_id)
    }

    /// Cancel a task: R is interrupted ([`tasks`]).
    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let call = self.resource_call(Verb::Get, &context).await?;
        self.tasks.cancel(&call.owner, &request.task_id)
    }

    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_tasks()
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
            input_schema::<NoArgs>(),
            input_schema::<exec::Execute>(),
            input_schema::<sessions::SessionRef>(),
            input_schema::<files::ListFiles>(),
            input_schema::<files::ReadFile>(),
            input_schema::<files::WriteFile>(),
            input_schema::<exec::InstallPackage>(),
        ] {
            assert_eq!(schema.get("type").and_then(|t| t.as_str()), Some("object"));
        }
        let exec = input_schema::<exec::Execute>();
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
        let e = parse::<exec::Execute>(args).unwrap_err();
        assert_eq!(e.code, crate::errors::ErrorCode::InvalidArgument);
        let mut args = JsonObject::new();
        args.insert("session_id".into(), serde_json::json!("s"));
        args.insert("code".into(), serde_json::json!("1"));
        args.insert("limits".into(), serde_json::json!({"max_duration": 3}));
        assert!(
            parse::<exec::Execute>(args).is_err(),
            "unknown limit field must be refused"
        );
    }

    #[test]
    fn every_routed_tool_has_its_rsession_verb() {
        use crate::auth::TOOL_VERBS;
        let routed: Vec<String> = RSessionServer::router()
            .list_all()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        for name in &routed {
            assert!(
                TOOL_VERBS.iter().any(|(tool, _)| tool == name),
                "tool {name} is routed but not in TOOL_VERBS"
            );
        }
        for (tool, _) in TOOL_VERBS {
            assert!(
                routed.iter().any(|name| name == tool),
                "TOOL_VERBS names {tool}, which is not routed"
            );
        }
    }

    #[test]
    fn every_tool_has_a_title_and_all_four_hints() {
        let tools = RSessionServer::router().list_all();
        for t in &tools {
            let a = t.annotations.as_ref().expect("annotations");
            assert!(
                t.title.as_deref().is_some_and(|s| !s.is_empty()),
                "{} title",
                t.name
            );
            assert_eq!(
                a.title, t.title,
                "{}: annotations.title is the title",
                t.name
            );
            for (hint, value) in [
                ("readOnlyHint", a.read_only_hint),
                ("destructiveHint", a.destructive_hint),
                ("idempotentHint", a.idempotent_hint),
                ("openWorldHint", a.open_world_hint),
            ] {
                assert!(value.is_some(), "{} sets {hint}", t.name);
            }
            if a.read_only_hint == Some(true) {
                assert_eq!(
                    a.destructive_hint,
                    Some(false),
                    "{}: read-only is not destructive",
                    t.name
                );
            }
        }
        let hint = |name: &str| {
            let t = tools.iter().find(|t| t.name == name).expect(name);
            t.annotations.clone().expect("annotations")
        };
        assert_eq!(hint("close_session").destructive_hint, Some(true));
        assert_eq!(hint("list_sessions").read_only_hint, Some(true));
        assert_eq!(hint("read_session_file").read_only_hint, Some(true));
        assert_eq!(hint("install_package").open_world_hint, Some(true));
        assert_eq!(hint("execute_in_session").read_only_hint, Some(false));
        assert_eq!(hint("write_session_file").destructive_hint, Some(true));
    }
}
