//! `checkpoint_session`: save a session's R state into its workspace
//! (`harness_checkpoint.R` does the work; see [`crate::harness::CHECKPOINT_DIR`]).

use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::CallToolResult;
use rserve::Sexp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Hints, Paging, RSessionServer, ToolDef, deadline, structured, tool};
use crate::errors::ToolError;
use crate::harness::{CHECKPOINT_DIR, HarnessCall};
use crate::sexp_json::to_json;

/// Default and largest size of a whole checkpoint on disk, in MiB.
const DEFAULT_MAX_MB: u64 = 1024;
const LARGEST_MAX_MB: u64 = 16 * 1024;
/// Default size, in MiB of memory, above which an object is skipped.
const DEFAULT_MAX_OBJECT_MB: u64 = 256;
/// Default time budget, seconds.
const DEFAULT_BUDGET_SECS: f64 = 60.0;

/// The tools of this group (see [`super::tool`]).
pub(super) fn routes() -> Vec<ToolRoute<RSessionServer>> {
    vec![tool(&CHECKPOINT_SESSION, checkpoint)]
}

/// Arguments of `checkpoint_session`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSession {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// Size cap of the whole checkpoint on disk (compressed), in MiB
    /// (default 1024, at most 16384). Objects past it are skipped and named.
    #[serde(default)]
    pub max_mb: Option<u64>,
    /// Objects using more memory than this, in MiB, are skipped and named
    /// (default 256).
    #[serde(default)]
    pub max_object_mb: Option<u64>,
    /// Time budget in seconds (default 60); objects not reached in time are
    /// skipped and named. Also the call's deadline, plus a margin.
    #[serde(default)]
    pub max_duration_secs: Option<f64>,
}

/// `checkpoint_session`: save the R state of a session.
const CHECKPOINT_SESSION: ToolDef = ToolDef {
    name: "checkpoint_session",
    title: "Save a session's R state",
    description: "Save the session's R state into its workspace (.rsession/checkpoint): every object of the global environment, the attached packages in order, the datasets load_data registered, selected options, the working directory and the random-number state. Objects that cannot outlive the R process (database connections, open files, objects holding C pointers) and objects over the size caps are skipped and named. Replaces the previous checkpoint only when the new one is complete. Returns the size on disk, the time taken, and what was saved and skipped.",
    hints: Hints {
        idempotent: true,
        ..Hints::ADDITIVE
    },
    paging: Paging::Whole,
    task: true,
};

async fn checkpoint(call: Call, p: CheckpointSession) -> Result<CallToolResult, ToolError> {
    let max_mb = p.max_mb.unwrap_or(DEFAULT_MAX_MB);
    if max_mb == 0 || max_mb > LARGEST_MAX_MB {
        return Err(ToolError::invalid(format!(
            "max_mb must be between 1 and {LARGEST_MAX_MB}"
        )));
    }
    let max_object_mb = p.max_object_mb.unwrap_or(DEFAULT_MAX_OBJECT_MB).max(1);
    let budget = p.max_duration_secs.unwrap_or(DEFAULT_BUDGET_SECS);
    deadline(Some(budget), "max_duration_secs")?;
    // The budget is R's own; the deadline leaves it room to finish writing.
    let limit = Some(std::time::Duration::from_secs_f64(
        budget.min(1e6) * 1.5 + 5.0,
    ));
    let harness_call = HarnessCall::Checkpoint {
        max_bytes: max_mb << 20,
        max_object_bytes: max_object_mb << 20,
        budget_secs: budget,
    };
    let reply: Sexp = call.harness(&p.session_id, harness_call, limit).await?;
    let mut v = to_json(&reply);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("session_id".into(), json!(p.session_id));
        obj.insert("path".into(), json!(CHECKPOINT_DIR));
    }
    Ok(structured(summary(&v), v))
}

/// One paragraph an agent reads: size, time, saved, skipped with reasons.
fn summary(v: &Value) -> String {
    let names = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let saved = names("saved");
    let mut text = format!(
        "Checkpoint written to {CHECKPOINT_DIR}: {} object(s), {:.1} MB, {:.2} s.",
        saved.len(),
        v["bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
        v["seconds"].as_f64().unwrap_or(0.0)
    );
    if !saved.is_empty() {
        text.push_str(&format!(" Saved: {}.", saved.join(", ")));
    }
    if let Some(skipped) = v["skipped"].as_array().filter(|a| !a.is_empty()) {
        text.push_str(" Skipped:");
        for s in skipped {
            text.push_str(&format!(
                "\n- {}: {}",
                s["name"].as_str().unwrap_or("?"),
                s["reason"].as_str().unwrap_or("")
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_what_was_saved_and_why_others_were_skipped() {
        let v = json!({"bytes": 2097152.0, "seconds": 0.25, "saved": ["df", "fit"],
                       "skipped": [{"name": "con", "reason": "a database connection"}]});
        let t = summary(&v);
        assert!(t.contains("2 object(s), 2.0 MB, 0.25 s"), "{t}");
        assert!(t.contains("Saved: df, fit."), "{t}");
        assert!(t.contains("- con: a database connection"), "{t}");
    }
}
