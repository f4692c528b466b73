//! The MCP tools, one file per group, each holding its tool routes,
//! their argument types (whose doc comments become the tools' JSON Schema,
//! MCP spec 2025-06-18 "Tools" → "Tool") and their bodies:
//! `sessions`, `exec`, `files`, `data`, `help`, `pages`;
//! [`prompts`] for `explore_data`. Each group lists its tools in `routes()`,
//! one `tool(&DEF, body)` line each (`route.rs`): a `ToolDef` const (name,
//! title, description, behaviour hints, paging, task support) and an
//! `async fn(Call, args)` body (`call.rs`). `resources.rs`: workspace files as
//! MCP resources; `tasks.rs`: long calls as MCP tasks.
//!
//! One [`RSessionServer`] value serves one MCP connection (stdio) or one
//! HTTP request/session; all of them share the [`SessionManager`], so R
//! sessions outlive MCP connections. Each tool call first passes
//! `RSessionServer::call_context` (identity, the RSession verb of
//! [`crate::auth::TOOL_VERBS`], progress) and reaches its tool's body as a [`Call`].

mod call;
mod checkpoint;
mod data;
mod database;
mod exec;
mod files;
mod help;
mod pages;
pub mod prompts;
mod resources;
mod route;
mod sessions;
mod tasks;

pub use call::{Call, NoArgs};
pub use tasks::TaskConfig;

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, GetTaskParams, GetTaskResult,
    Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, prompt_handler, tool_handler};

use crate::auth::{Verb, caller_of};
use crate::errors::ToolError;
use crate::metrics::Metrics;
use crate::pager::{Pager, PagerConfig};
use crate::session::{Progress, SessionManager};
use call::{deadline, structured};
use route::{Hints, Paging, ToolDef, finish, tool};

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
    /// Shared by every clone: streamable HTTP clones the server for each
    /// request (rmcp's service factory), and the routes with their tool
    /// definitions and schemas need not be copied each time.
    tool_router: Arc<ToolRouter<RSessionServer>>,
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
            tool_router: Arc::new(Self::router()),
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
            checkpoint::routes(),
            exec::routes(),
            files::routes(),
            data::routes(),
            database::routes(),
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
                    return self.tasks.start(self, request, context, call);
                }
                context.extensions.insert(call);
            }
            Err(e) => return finish(&self.metrics, &tool, Err(e)).map(Into::into),
        }
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    /// Every file of the caller's connected sessions (`resources.rs`).
    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let call = self.resource_call(Verb::List, &context).await?;
        resources::list(&call).await
    }

    /// The workspace-file URI template (`resources.rs`).
    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            resources::template(),
        ]))
    }

    /// One workspace file by its URI (`resources.rs`).
    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let call = self.resource_call(Verb::Get, &context).await?;
        resources::read(&call, &request.uri).await.map(Into::into)
    }

    /// A task's state, and once it is terminal its result, delivered once
    /// (`tasks.rs`).
    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let call = self.resource_call(Verb::Get, &context).await?;
        self.tasks.get(&call.owner, &request.task_id)
    }

    /// Cancel a task: R is interrupted (`tasks.rs`).
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
    use super::call::{input_schema, parse};
    use super::*;
    use rmcp::model::JsonObject;

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
