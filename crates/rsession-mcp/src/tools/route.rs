//! The one path every tool call takes: a tool's definition ([`ToolDef`]:
//! name, title, description, behaviour hints, paging, task support) and its
//! body become an rmcp route ([`tool`]) that parses the arguments, runs the
//! body, pages and fits the result, and records the outcome.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use rmcp::ErrorData;
use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::call::{Call, input_schema, parse};
use super::{RSessionServer, pages, tasks};
use crate::errors::ToolError;
use crate::metrics::Metrics;

/// Whether a tool's text result is paged for `read_output` when it is
/// longer than one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Paging {
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
pub(super) struct Hints {
    /// `readOnlyHint`: changes nothing.
    pub(super) read_only: bool,
    /// `destructiveHint`: may overwrite or remove (R objects, files, a session).
    pub(super) destructive: bool,
    /// `idempotentHint`: a repeat with the same arguments changes nothing more.
    pub(super) idempotent: bool,
    /// `openWorldHint`: reaches systems outside the session (a package
    /// repository, a database).
    pub(super) open_world: bool,
}

impl Hints {
    /// Reads and changes nothing.
    pub(super) const READ_ONLY: Hints = Hints {
        read_only: true,
        destructive: false,
        idempotent: true,
        open_world: false,
    };
    /// Adds (a session, packages) without overwriting anything.
    pub(super) const ADDITIVE: Hints = Hints {
        read_only: false,
        destructive: false,
        idempotent: false,
        open_world: false,
    };
    /// May overwrite or remove what is there.
    pub(super) const DESTRUCTIVE: Hints = Hints {
        read_only: false,
        destructive: true,
        idempotent: false,
        open_world: false,
    };
}

/// One tool as `tools/list` shows it, apart from its input schema (MCP
/// spec 2025-06-18, "Tools" → "Tool"), and how its result is returned.
#[derive(Debug)]
pub(super) struct ToolDef {
    /// `name`, as agents call it.
    pub(super) name: &'static str,
    /// `title` (and `annotations.title`, read by older clients): for people.
    pub(super) title: &'static str,
    /// `description`: for the model; what it does, returns and refuses.
    pub(super) description: &'static str,
    /// `annotations`' behaviour hints.
    pub(super) hints: Hints,
    /// Whether a long text result is paged.
    pub(super) paging: Paging,
    /// Whether the call may run as an MCP task ([`tasks`]), declared in
    /// the tool's `_meta`.
    pub(super) task: bool,
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
pub(super) fn tool<P, F, Fut>(def: &'static ToolDef, body: F) -> ToolRoute<RSessionServer>
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
                let started = std::time::Instant::now();
                let result = match call {
                    // `call_tool` puts it there before routing; a route reached
                    // another way is a bug, not the caller's fault.
                    None => Err(ToolError::internal("tool called without its call context")),
                    Some(call) => {
                        let caller = call.owner.clone();
                        let audited = args.clone();
                        let result = run(def.name, def.paging, call, args, body.as_ref()).await;
                        crate::audit::record(
                            &caller,
                            def.name,
                            &audited,
                            started.elapsed(),
                            result.as_ref().map(|(r, bytes)| (r, *bytes)),
                        );
                        result.map(|(r, _)| r)
                    }
                };
                finish(&metrics, def.name, result).map(Into::into)
            }
            .boxed()
        },
    )
}

/// Parse, run and (when `paging` says so) page one tool call, then keep
/// its result within the result size limit ([`pages::fit`]); the result
/// comes with its JSON size in bytes.
async fn run<P, F, Fut>(
    name: &'static str,
    paging: Paging,
    call: Call,
    args: JsonObject,
    body: &F,
) -> Result<(CallToolResult, usize), ToolError>
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
pub(super) fn finish(
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
