//! `create_session`, `list_sessions`, `close_session`, `reset_session`.

use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::CallToolResult;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Hints, NoArgs, Paging, RSessionServer, ToolDef, structured, tool};
use crate::errors::ToolError;

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
    description: "Start a new R session (a fresh R process with its own workspace directory as working directory). Returns session_id for the other tools. With `resume`, bring back an earlier session of yours that a server restart kept, with its R state restored from its checkpoint.",
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
}

async fn create(call: Call, p: CreateSession) -> Result<CallToolResult, ToolError> {
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
    let info = call.manager.create(&call.owner, &call.progress).await?;
    let mut text = format!(
        "Created session {} ({}). Working directory: {}. Use execute_in_session with session_id \"{}\".",
        info.session_id,
        info.r_version.as_deref().unwrap_or("R"),
        info.workspace.as_deref().unwrap_or("?"),
        info.session_id
    );
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
