//! The `help` tool: an R help page (or a package index) as plain text,
//! rendered by `tools::Rd2txt` in the session's R, from the packages that
//! session can load.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::json;

use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::session::SessionManager;
use crate::sexp_json::to_json;
use crate::tools::data_params::Help;

/// Longest topic accepted, in bytes.
const MAX_TOPIC_BYTES: usize = 200;

pub(super) async fn help(
    manager: &SessionManager,
    owner: &str,
    p: Help,
) -> Result<CallToolResult, ToolError> {
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
    let call = HarnessCall::HelpText {
        topic,
        package: p.package,
    };
    let reply = manager
        .call(owner, &p.session_id, call, None)
        .await?
        .into_value()?;
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
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(json!({
        "session_id": p.session_id,
        "topic": v["topic"],
        "package": v["package"],
        "other_packages": v["other_packages"],
    }));
    Ok(r)
}
