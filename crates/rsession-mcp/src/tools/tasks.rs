//! Long tool calls as MCP tasks: the tasks extension
//! (`io.modelcontextprotocol/tasks`, SEP-2663, protocol 2026-07-28), run by
//! rmcp's [`TaskManager`]. A tool whose definition declares task support
//! (`_meta["io.modelcontextprotocol/tasks"].taskSupport = "optional"`:
//! `execute_in_session`, `install_package`, `load_data`, `query_data`)
//! becomes a task when the request declares the extension; other clients get
//! the plain result as before.
//!
//! While it runs, the task's status message is the progress line (seconds
//! running and the last line R printed); `tasks/cancel` interrupts R as
//! `notifications/cancelled` does; a finished task's result is delivered by
//! `tasks/get` once, to the owner who started it. The store is bounded: at
//! most [`TaskConfig::max_tasks`] running (a further one is refused with the
//! retryable tool error `too_many_tasks`), each kept for
//! [`TaskConfig::ttl`] (rmcp marks a task still running then `failed`).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use rmcp::ErrorData;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CreateTaskResult, GetTaskResult, JsonObject,
    MetaObject, TASKS_EXTENSION_ID, Tool,
};
use rmcp::service::RequestContext;
use rmcp::task_manager::{TaskExit, TaskManager, TaskOptions};
use rmcp::{RoleServer, task_manager::TaskContext};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::{Call, RSessionServer, finish};
use crate::errors::{ErrorCode, ToolError};
use crate::session::Progress;

/// Task store bounds (flags `--max-tasks`, `--task-ttl-secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskConfig {
    /// Most tasks running at once.
    pub max_tasks: usize,
    /// How long a task (and then its result) is kept.
    pub ttl: Duration,
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            max_tasks: 32,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// How often clients are told to poll `tasks/get`, in milliseconds.
const POLL_INTERVAL_MS: u64 = 1000;

/// Task ids remembered (with their owner) at most; older ones are unknown.
const REMEMBERED: usize = 4096;

/// The `_meta` a task-capable tool carries in `tools/list`.
pub fn task_support_meta() -> MetaObject {
    let mut meta = JsonObject::new();
    meta.insert(
        TASKS_EXTENSION_ID.to_string(),
        json!({"taskSupport": "optional"}),
    );
    MetaObject(meta)
}

/// Whether `tool`'s definition declares task support.
fn supports_tasks(tool: &Tool) -> bool {
    tool.meta
        .as_ref()
        .and_then(|m| m.get(TASKS_EXTENSION_ID))
        .and_then(|t| t.get("taskSupport"))
        .and_then(|s| s.as_str())
        .is_some_and(|s| s != "forbidden")
}

/// The tasks of one server (shared by every clone, so by every MCP session).
#[derive(Clone)]
pub struct Tasks {
    manager: TaskManager,
    config: TaskConfig,
    /// Task id → owner, until its result is delivered.
    owners: Arc<Mutex<LruCache<String, String>>>,
}

impl Tasks {
    /// An empty store bounded by `config`.
    pub fn new(config: TaskConfig) -> Self {
        let cap = NonZeroUsize::new(REMEMBERED).unwrap_or(NonZeroUsize::MIN);
        Tasks {
            manager: TaskManager::new(),
            config,
            owners: Arc::new(Mutex::new(LruCache::new(cap))),
        }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, LruCache<String, String>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this call becomes a task: the tool supports it and the
    /// request declared the extension.
    pub fn applies(&self, tool: Option<&Tool>, context: &RequestContext<RoleServer>) -> bool {
        tool.is_some_and(supports_tasks)
            && context
                .client_capabilities()
                .is_some_and(|caps| caps.supports_tasks())
    }

    /// Start the tool call as a task acting as `call` and answer its
    /// `CreateTaskResult`, or the retryable `too_many_tasks` tool error when
    /// the store is full.
    pub fn start(
        &self,
        server: &RSessionServer,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
        mut call: Call,
    ) -> Result<CallToolResponse, ErrorData> {
        let running = self.manager.running_task_count();
        if running >= self.config.max_tasks {
            let refusal = ToolError::new(
                ErrorCode::TooManyTasks,
                format!(
                    "this server runs at most {} tasks at once; retry when one has finished",
                    self.config.max_tasks
                ),
            )
            .with_details(json!({"running_tasks": running}));
            // Counted and logged like every other tool failure.
            return finish(&server.metrics, &request.name, Err(refusal)).map(Into::into);
        }
        let owner = call.owner.clone();
        let server = server.clone();
        let options = TaskOptions::new()
            .with_ttl_ms(u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX))
            .with_poll_interval_ms(POLL_INTERVAL_MS)
            .with_status_message("started");
        let task = self.manager.spawn(options, move |task: TaskContext| {
            // The task outlives the request: its own cancellation (from
            // tasks/cancel) and its status message as the progress sink.
            let cancel = CancellationToken::new();
            let status = task.clone();
            call.cancel = cancel.clone();
            call.progress = Progress::new(move |update| {
                status.set_status_message(update.message);
                Box::pin(std::future::ready(()))
            });
            context.extensions.insert(call);
            Box::pin(async move {
                // Ends with this future, also when rmcp aborts it at the TTL.
                let on_cancel = {
                    let (task, cancel) = (task.clone(), cancel.clone());
                    AbortOnDropHandle::new(tokio::spawn(async move {
                        task.cancelled().await;
                        cancel.cancel();
                    }))
                };
                let routed = ToolCallContext::new(&server, request, context);
                let response = server.tool_router.call(routed).await;
                drop(on_cancel);
                if task.is_cancel_requested() {
                    return Err(TaskExit::Cancelled);
                }
                match response {
                    Ok(CallToolResponse::Complete(result)) => Ok(result),
                    Ok(_) => Err(TaskExit::Error(ErrorData::internal_error(
                        "the tool answered neither a result nor an error",
                        None,
                    ))),
                    Err(e) => Err(TaskExit::Error(e)),
                }
            })
        });
        self.owners().put(task.task_id.clone(), owner);
        Ok(CallToolResponse::Task(CreateTaskResult::new(task)))
    }

    /// `tasks/get` for `owner`: the task's state; once it is terminal, its
    /// result (or error) is delivered this one time and the id forgotten.
    ///
    /// Errors: invalid params for an id unknown to this owner (never
    /// created, another owner's, or already delivered).
    pub fn get(&self, owner: &str, task_id: &str) -> Result<GetTaskResult, ErrorData> {
        self.check_owner(owner, task_id)?;
        let task = self.manager.get_task(task_id)?;
        if task.status().is_terminal() {
            self.owners().pop(task_id);
        }
        Ok(GetTaskResult::new(task))
    }

    /// `tasks/cancel` for `owner`: R is interrupted; the task settles as
    /// `cancelled` (or `completed` if R had just finished).
    pub fn cancel(&self, owner: &str, task_id: &str) -> Result<(), ErrorData> {
        self.check_owner(owner, task_id)?;
        self.manager.cancel_task(task_id)
    }

    fn check_owner(&self, owner: &str, task_id: &str) -> Result<(), ErrorData> {
        match self.owners().get(task_id) {
            Some(o) if o == owner => Ok(()),
            _ => Err(ErrorData::invalid_params(
                format!(
                    "no task {task_id:?} of yours: unknown, expired, or its result was already delivered (once)"
                ),
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_owner_can_neither_see_nor_cancel_a_task() {
        let tasks = Tasks::new(TaskConfig::default());
        tasks.owners().put("t-1".into(), "alice".into());
        for e in [
            tasks.get("bob", "t-1").unwrap_err(),
            tasks.cancel("bob", "t-1").unwrap_err(),
            tasks.get("alice", "t-unknown").unwrap_err(),
        ] {
            assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{e:?}");
            assert!(e.message.contains("no task"), "{}", e.message);
        }
        // the owner passes the check (rmcp then answers for the id itself)
        assert!(tasks.check_owner("alice", "t-1").is_ok());
    }
}
