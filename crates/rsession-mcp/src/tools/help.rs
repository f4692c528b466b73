//! The `help` tool: an R help page (or a package index) as plain text,
//! rendered by `tools::Rd2txt` in the session's R, from the packages that
//! session can load.

use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::CallToolResult;
use rserve::Sexp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{Call, Hints, Paging, RSessionServer, ToolDef, structured, tool};
use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::sexp_json::to_json;

/// Arguments of `help`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Help {
    /// Session id returned by `create_session` (help comes from that session's installed packages).
    pub session_id: String,
    /// Topic: a function, dataset or concept, e.g. `"read_csv"`. Omit with
    /// `package` for the package index.
    #[serde(default)]
    pub topic: Option<String>,
    /// Package to look in, e.g. `"readr"`.
    #[serde(default)]
    pub package: Option<String>,
}

/// The tools of this group (see [`super::tool`]).
pub(super) fn routes() -> Vec<ToolRoute<RSessionServer>> {
    vec![tool(&HELP, help)]
}

/// `help`: r documentation as text.
const HELP: ToolDef = ToolDef {
    name: "help",
    title: "R documentation",
    description: "R documentation as plain text: the help page of a topic (function, dataset), optionally from a given package, or a package's index when only package is given. Inside execute_in_session, ?topic, help() and vignette() also print text.",
    hints: Hints::READ_ONLY,
    paging: Paging::Paged,
    task: false,
};

/// Longest topic accepted, in bytes.
const MAX_TOPIC_BYTES: usize = 200;

async fn help(call: Call, p: Help) -> Result<CallToolResult, ToolError> {
    let topic = match p.topic.as_deref().map(str::trim) {
        Some("") => return Err(ToolError::invalid("topic is empty")),
        Some(t) if t.len() > MAX_TOPIC_BYTES => {
            return Err(ToolError::invalid(format!(
                "topic is longer than {MAX_TOPIC_BYTES} bytes"
            )));
        }
        t => t.map(str::to_string),
    };
    if topic.is_none() && p.package.is_none() {
        return Err(ToolError::invalid(
            "give a topic (e.g. \"read_csv\"), a package (its index), or both",
        ));
    }
    let harness_call = HarnessCall::HelpText {
        topic,
        package: p.package,
    };
    let reply: Sexp = call.harness(&p.session_id, harness_call, None).await?;
    let v = to_json(&reply);
    let mut text = v["text"].as_str().unwrap_or_default().to_string();
    let others: Vec<&str> = v["other_packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .collect();
    if !others.is_empty() {
        text.push_str(&format!(
            "\n\n[also documented in: {}; pass package to choose]\n",
            others.join(", ")
        ));
    }
    let value = json!({
        "session_id": p.session_id,
        "topic": v["topic"],
        "package": v["package"],
        "other_packages": v["other_packages"],
    });
    Ok(structured(text, value))
}
