//! `execute_in_session` and `install_package`: evaluation results as MCP
//! content (text in order, one image per plot) plus structured events.

use base64::Engine;
use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Hints, Paging, RSessionServer, ToolDef, deadline, tool};
use crate::errors::{ErrorCode, ToolError};
use crate::harness::{Event, ExecStatus, HarnessCall};
use crate::render::render_text;
use crate::session::ExecReport;

/// Per-call limits; each is clamped to the server's maximum.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionLimits {
    /// Wall-clock deadline in seconds. At the deadline R is interrupted
    /// (state kept, `execution_timeout`); if it does not stop within a short
    /// grace period it is killed (`session_lost`).
    pub max_duration_secs: Option<f64>,
    /// Bytes of text output to return; beyond it the head and the tail are
    /// kept and the result is flagged `truncated`.
    pub max_output_bytes: Option<u64>,
}

/// Arguments of `execute_in_session`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Execute {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// R code: one or more top-level expressions, run in order in the
    /// session's global environment (state persists across calls).
    pub code: String,
    /// Optional limits for this call.
    #[serde(default)]
    pub limits: Option<ExecutionLimits>,
}

/// Arguments of `install_package`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallPackage {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// One package name, e.g. `"janitor"`.
    #[serde(default)]
    pub package: Option<String>,
    /// Several package names.
    #[serde(default)]
    pub packages: Option<Vec<String>>,
}

/// The tools of this group (see [`super::tool`]).
pub(super) fn routes() -> Vec<ToolRoute<RSessionServer>> {
    vec![
        tool(&EXECUTE_IN_SESSION, execute),
        tool(&INSTALL_PACKAGE, install),
    ]
}

/// `execute_in_session`: run R code in a session.
const EXECUTE_IN_SESSION: ToolDef = ToolDef {
    name: "execute_in_session",
    title: "Run R code",
    description: "Run R code in a session's global environment; state persists across calls. Returns stdout, printed values, messages, warnings and errors in order (as text and as structured events), and each plot as a PNG image. An R error is a normal result with status \"error\". Optional limits {max_duration_secs, max_output_bytes}.",
    // Arbitrary R code: it can overwrite objects and files, and reach the
    // session's database (an external system).
    hints: Hints {
        open_world: true,
        ..Hints::DESTRUCTIVE
    },
    paging: Paging::Paged,
    task: true,
};

/// `install_package`: install R packages into the session library.
const INSTALL_PACKAGE: ToolDef = ToolDef {
    name: "install_package",
    title: "Install R packages",
    description: "Install R packages (and their missing dependencies) from the server's configured repository into the session's own library, then they can be loaded with library().",
    // Fetches from a package repository outside the session.
    hints: Hints {
        idempotent: true,
        open_world: true,
        ..Hints::ADDITIVE
    },
    paging: Paging::Whole,
    task: true,
};

async fn execute(call: Call, p: Execute) -> Result<CallToolResult, ToolError> {
    let limits = p.limits.unwrap_or_default();
    let duration = deadline(limits.max_duration_secs, "limits.max_duration_secs")?;
    if limits.max_output_bytes == Some(0) {
        return Err(ToolError::invalid(
            "limits.max_output_bytes must be at least 1",
        ));
    }
    let harness_call = HarnessCall::Execute {
        code: p.code,
        limits: call.manager.exec_limits(limits.max_output_bytes),
    };
    let report: ExecReport = call.harness(&p.session_id, harness_call, duration).await?;
    Ok(exec_result(&report))
}

async fn install(call: Call, p: InstallPackage) -> Result<CallToolResult, ToolError> {
    let mut packages: Vec<String> = p.packages.unwrap_or_default();
    packages.extend(p.package);
    let config = call.manager.config();
    let repository = config.package_repository.clone();
    if let Some(mode) = config.offline_sandbox
        && !repository.starts_with("file:")
    {
        return Err(ToolError::new(
            ErrorCode::Forbidden,
            format!(
                "install_package downloads from {repository}, but this server runs R in the {} sandbox with no network. Whoever runs the server can allow it by restarting it with --allow-network (R then reaches any host), or install the packages on the machine beforehand.",
                mode.as_str()
            ),
        )
        .with_details(json!({"sandbox": mode.as_str(), "repository": repository, "needs": "network"})));
    }
    let harness_call = HarnessCall::InstallPackages {
        packages,
        repository,
    };
    let report: ExecReport = call.harness(&p.session_id, harness_call, None).await?;
    let mut result = exec_result(&report);
    if report.outcome.status != ExecStatus::Ok {
        result.is_error = Some(true);
    }
    Ok(result)
}

/// Structured form of the events; plots are described here and carried as
/// image content (not duplicated as base64).
pub(crate) fn events_json(events: &[Event]) -> Vec<Value> {
    let mut plot_index = 0usize;
    events
        .iter()
        .map(|ev| match ev {
            Event::Stdout(t) => json!({"type": "stdout", "text": t}),
            Event::Value(t) => json!({"type": "value", "text": t}),
            Event::Message(t) => json!({"type": "message", "text": t}),
            Event::Warning { message, call } => {
                json!({"type": "warning", "text": message, "call": call})
            }
            Event::Error {
                message,
                call,
                traceback,
            } => {
                json!({"type": "error", "text": message, "call": call, "traceback": traceback})
            }
            Event::Plot { png, width, height } => {
                let v = json!({"type": "plot", "index": plot_index, "mime_type": "image/png",
                               "width": width, "height": height, "bytes": png.len()});
                plot_index += 1;
                v
            }
            Event::Truncated { omitted_bytes } => {
                json!({"type": "truncated", "omitted_bytes": omitted_bytes})
            }
        })
        .collect()
}

/// MCP result of an evaluation: text content first (notice, then the
/// console-like transcript), then one image content per plot; structured
/// content carries status, events and limits.
pub(crate) fn exec_result(report: &ExecReport) -> CallToolResult {
    let o = &report.outcome;
    let mut text = String::new();
    if let Some(notice) = &report.state_reset_notice {
        text.push_str("NOTE: ");
        text.push_str(notice);
        text.push_str("\n\n");
    }
    let transcript = render_text(o);
    if transcript.is_empty() {
        text.push_str("(no output)\n");
    } else {
        text.push_str(&transcript);
    }
    let mut content = vec![ContentBlock::text(text)];
    let b64 = base64::engine::general_purpose::STANDARD;
    for ev in &o.events {
        if let Event::Plot { png, .. } = ev {
            content.push(ContentBlock::image(b64.encode(png), "image/png"));
        }
    }
    let mut result = CallToolResult::success(content);
    result.structured_content = Some(json!({
        "session_id": report.session_id,
        "status": o.status.as_str(),
        "events": events_json(&o.events),
        "truncated": o.truncated,
        "omitted_bytes": o.omitted_bytes,
        "plots": o.events.iter().filter(|e| matches!(e, Event::Plot { .. })).count(),
        "elapsed_ms": report.elapsed.as_secs_f64() * 1000.0,
        "state_reset": report.state_reset_notice.is_some(),
        "state_reset_notice": report.state_reset_notice,
        "limits": {
            "max_duration_secs": report.max_duration.as_secs_f64(),
            "max_output_bytes": report.max_output_bytes,
        },
    }));
    result
}
