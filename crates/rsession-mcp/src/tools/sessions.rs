//! `create_session`, `list_sessions`, `close_session`, `reset_session`.

use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::CallToolResult;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Hints, NoArgs, Paging, RSessionServer, ToolDef, structured, tool};
use crate::errors::ToolError;
use crate::session::{PoolRequest, SessionStart};

/// Arguments naming one session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    /// Session id returned by `create_session`.
    pub session_id: String,
}

/// The tools of this group (see [`super::tool`]).
pub(super) fn routes() -> Vec<ToolRoute<RSessionServer>> {
    vec![
        tool(&CREATE_SESSION, create),
        tool(&LIST_SESSIONS, list),
        tool(&CLOSE_SESSION, close),
        tool(&RESET_SESSION, reset),
    ]
}

/// `create_session`: start a new R session with its own workspace directory.
const CREATE_SESSION: ToolDef = ToolDef {
    name: "create_session",
    title: "Create an R session",
    description: "Start a new R session (a fresh R process with its own workspace directory as working directory). Returns session_id for the other tools, and how it started: warm (an R already running, taken from a pool) or cold, and the milliseconds until it was Ready. With `resume`, bring back an earlier session of yours that a server restart kept, with its R state restored from its checkpoint. On Kubernetes, `pool` names the warm pool to start from.",
    hints: Hints::ADDITIVE,
    paging: Paging::Whole,
    task: false,
};

/// `list_sessions`: list this caller's sessions.
const LIST_SESSIONS: ToolDef = ToolDef {
    name: "list_sessions",
    title: "List R sessions",
    description: "List your sessions with their state (busy, connected, executions, last activity).",
    hints: Hints::READ_ONLY,
    paging: Paging::Whole,
    task: false,
};

/// `close_session`: close a session.
const CLOSE_SESSION: ToolDef = ToolDef {
    name: "close_session",
    title: "Close an R session",
    description: "Close a session: its R process ends and its workspace is deleted.",
    hints: Hints {
        idempotent: true,
        ..Hints::DESTRUCTIVE
    },
    paging: Paging::Whole,
    task: false,
};

/// `reset_session`: restart a session's R.
const RESET_SESSION: ToolDef = ToolDef {
    name: "reset_session",
    title: "Restart the R of a session",
    description: "Replace the session's R process with a fresh one: all R objects, loaded packages and options are discarded; workspace files are kept.",
    hints: Hints {
        idempotent: true,
        ..Hints::DESTRUCTIVE
    },
    paging: Paging::Whole,
    task: false,
};

/// Arguments of `create_session`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Resume this earlier session of yours instead of starting a new one: a
    /// session kept by a server that checkpoints at shutdown (direct backend
    /// with `--workspace-root`). Its workspace and, from its checkpoint, its
    /// R objects, packages and datasets come back; the result says what did.
    #[serde(default)]
    pub resume: Option<String>,
    /// Kubernetes backend: the warm pool to start from, the name of an
    /// RSessionPool in the sessions namespace. A pool keeps R pods Ready, so
    /// the session takes one over instead of waiting for a new pod to start
    /// (when the pool is empty it starts cold). Left out: the server's
    /// default pool (`--default-pool`), if any. `""`: no pool, a cold start.
    /// Only for new sessions with an Ephemeral workspace (not with `resume`);
    /// other backends have no pools.
    #[serde(default)]
    pub pool: Option<String>,
}

/// The pool request of `create_session`'s arguments.
///
/// Errors: `invalid_argument` for a named pool with `resume` (resuming
/// brings back an existing session and its workspace; a pool only gives new
/// sessions an Ephemeral one).
fn pool_request(p: &CreateSession) -> Result<PoolRequest, ToolError> {
    let request = PoolRequest::from_argument(p.pool.as_deref());
    if let (Some(id), PoolRequest::Named(pool)) = (p.resume.as_deref(), &request) {
        return Err(ToolError::invalid(format!(
            "resume brings back the existing session {id} with its own workspace, so it cannot come from pool {pool:?} (pools give new sessions a fresh Ephemeral workspace); leave pool out to resume, or resume out for a new session from the pool"
        ))
        .with_details(json!({"resume": id, "pool": pool})));
    }
    Ok(request)
}

/// What an agent reads about how a session started, e.g. `Started warm from
/// pool warm (pod warm-x7k2q); Ready in 180 ms.`
fn start_sentence(start: &SessionStart) -> String {
    let how = match (start.warm, &start.pool, &start.pod_name, &start.note) {
        (true, Some(pool), Some(pod), _) => format!("warm from pool {pool} (pod {pod})"),
        (true, Some(pool), None, _) => format!("warm from pool {pool}"),
        (warm, _, _, note) => format!(
            "{}{}",
            if warm { "warm" } else { "cold" },
            note.as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
    };
    format!("Started {how}; Ready in {} ms.", start.ready_ms)
}

async fn create(call: Call, p: CreateSession) -> Result<CallToolResult, ToolError> {
    let pool = pool_request(&p)?;
    if let Some(id) = p.resume.as_deref() {
        let (info, notice) = call.manager.resume(&call.owner, id).await?;
        let restored = notice
            .as_deref()
            .unwrap_or("Resumed: its R was still running, nothing to restore.");
        let text = format!("Resumed session {id}. {restored}");
        let mut value =
            serde_json::to_value(&info).map_err(|e| ToolError::internal(e.to_string()))?;
        value["resumed"] = json!(true);
        value["restore_notice"] = json!(notice);
        return Ok(structured(text, value));
    }
    let info = call
        .manager
        .create_with_pool(&call.owner, &pool, &call.progress)
        .await?;
    let mut text = format!(
        "Created session {} ({}). Working directory: {}. Use execute_in_session with session_id \"{}\".",
        info.session_id,
        info.r_version.as_deref().unwrap_or("R"),
        info.workspace.as_deref().unwrap_or("?"),
        info.session_id
    );
    if let Some(start) = &info.start {
        text.push(' ');
        text.push_str(&start_sentence(start));
    }
    if let Some(cdm) = &info.cdm {
        text.push(' ');
        text.push_str(&cdm_sentence(cdm));
    }
    let value = serde_json::to_value(&info).map_err(|e| ToolError::internal(e.to_string()))?;
    Ok(structured(text, value))
}

/// What an agent reads about the session's `cdm` handle (see
/// [`crate::session::SessionInfo::cdm`]).
fn cdm_sentence(cdm: &Value) -> String {
    if let Some(error) = cdm["error"].as_str() {
        return format!(
            "The database is an OMOP CDM (schema {}), but no `cdm` handle could be made: {error}",
            cdm["schema"].as_str().unwrap_or("?")
        );
    }
    let tables = cdm["tables"].as_array().map_or(0, Vec::len);
    let kind = match cdm["handle"].as_str() {
        Some("CDMConnector") => "a CDMConnector cdm reference (CDMConnector::cdm_from_con)",
        _ => "a named list of lazy dbplyr tables (cdm$person, cdm$condition_occurrence, ...)",
    };
    format!(
        "`cdm` is {kind} over the OMOP CDM in schema {} ({tables} tables, CDM version {}, {} persons).",
        cdm["schema"].as_str().unwrap_or("?"),
        cdm["cdm_version"].as_str().unwrap_or("unknown"),
        cdm["persons"]
            .as_f64()
            .map_or("?".to_string(), |n| format!("{n:.0}"))
    )
}

async fn list(call: Call, _: NoArgs) -> Result<CallToolResult, ToolError> {
    let sessions = call.manager.list(&call.owner).await?;
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

async fn close(call: Call, p: SessionRef) -> Result<CallToolResult, ToolError> {
    let id = p.session_id.as_str();
    call.manager.close(&call.owner, id).await?;
    Ok(structured(
        format!("Closed session {id}."),
        json!({"session_id": id, "closed": true}),
    ))
}

async fn reset(call: Call, p: SessionRef) -> Result<CallToolResult, ToolError> {
    let id = p.session_id.as_str();
    let notice = call.manager.reset(&call.owner, id).await?;
    Ok(structured(
        notice.clone(),
        json!({"session_id": id, "state_reset": true, "state_reset_notice": notice}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(resume: Option<&str>, pool: Option<&str>) -> CreateSession {
        CreateSession {
            resume: resume.map(Into::into),
            pool: pool.map(Into::into),
        }
    }

    #[test]
    fn the_pool_argument_is_default_cold_or_named() {
        assert_eq!(pool_request(&args(None, None)), Ok(PoolRequest::Default));
        assert_eq!(pool_request(&args(None, Some(""))), Ok(PoolRequest::Cold));
        assert_eq!(
            pool_request(&args(None, Some("warm"))),
            Ok(PoolRequest::Named("warm".into()))
        );
        assert_eq!(
            pool_request(&args(Some("rs-1"), Some(""))),
            Ok(PoolRequest::Cold),
            "resume without a pool"
        );
    }

    #[test]
    fn resume_with_a_named_pool_is_an_invalid_argument_naming_both() {
        let e = pool_request(&args(Some("rs-1"), Some("warm"))).unwrap_err();
        assert_eq!(e.code, crate::errors::ErrorCode::InvalidArgument);
        assert!(
            e.message.contains("rs-1") && e.message.contains("\"warm\""),
            "{}",
            e.message
        );
        assert_eq!(e.details, json!({"resume": "rs-1", "pool": "warm"}));
    }

    #[test]
    fn the_pool_argument_is_in_the_schema_with_a_description() {
        let schema = super::super::call::input_schema::<CreateSession>();
        let pool = &schema["properties"]["pool"];
        let description = pool["description"].as_str().unwrap_or_default();
        assert!(
            description.contains("RSessionPool") && description.contains("--default-pool"),
            "{pool}"
        );
    }

    #[test]
    fn the_start_sentence_says_warm_or_cold_the_pool_and_the_milliseconds() {
        let warm = SessionStart {
            warm: true,
            pool: Some("warm".into()),
            pod_name: Some("warm-x7k2q".into()),
            ready_ms: 180,
            note: None,
        };
        assert_eq!(
            start_sentence(&warm),
            "Started warm from pool warm (pod warm-x7k2q); Ready in 180 ms."
        );
        let empty = SessionStart {
            warm: false,
            pool: Some("warm".into()),
            pod_name: Some("rs-1".into()),
            ready_ms: 9321,
            note: Some("pool warm had no Ready pod, so a new pod was started".into()),
        };
        assert_eq!(
            start_sentence(&empty),
            "Started cold (pool warm had no Ready pod, so a new pod was started); Ready in 9321 ms."
        );
        let spare = SessionStart::without_pool(
            true,
            std::time::Duration::from_millis(4),
            "the spare sandbox started in advance",
        );
        assert_eq!(
            start_sentence(&spare),
            "Started warm (the spare sandbox started in advance); Ready in 4 ms."
        );
    }

    #[test]
    fn the_cdm_sentence_names_the_handle_version_and_persons_or_the_error() {
        let ok = json!({"handle": "dbplyr", "schema": "cdm", "tables": ["person", "concept"],
                        "cdm_version": "5.4", "persons": 1000.0});
        let t = cdm_sentence(&ok);
        assert!(t.contains("lazy dbplyr tables"), "{t}");
        assert!(
            t.contains("schema cdm (2 tables, CDM version 5.4, 1000 persons)"),
            "{t}"
        );
        let failed =
            json!({"handle": null, "schema": "cdm", "error": "no person table in schema cdm"});
        let t = cdm_sentence(&failed);
        assert!(
            t.contains("no `cdm` handle could be made: no person table"),
            "{t}"
        );
    }
}
