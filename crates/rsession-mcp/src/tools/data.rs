//! Data exploration tools: `load_data`, `query_data`, `describe_data`.
//!
//! Each calls one entry point of `harness_data.R` in the session's R (so the
//! data stays in R, next to the user's objects) and turns the returned list
//! into structured content (JSON) and a text rendering. Only summaries, the
//! first rows and capped query results cross into this process.

use std::time::Duration;

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};

use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::harness::literal::check_identifier;
use crate::session::SessionManager;
use crate::sexp_json::{rows, to_json};
use crate::tools::data_params::{DescribeData, LoadData, QueryData};

/// Rows `query_data` returns when the call names no `max_rows`.
pub const DEFAULT_MAX_ROWS: u32 = 1000;
/// Most rows `query_data` returns.
pub const MAX_ROWS: u32 = 10_000;

fn duration(secs: Option<f64>) -> Result<Option<Duration>, ToolError> {
    match secs {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(ToolError::invalid(
            "max_duration_secs must be a positive number of seconds",
        )),
        Some(s) => Ok(Some(Duration::from_secs_f64(s.min(1e9)))),
        None => Ok(None),
    }
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn result(text: String, structured: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r
}

pub(super) async fn load(
    manager: &SessionManager,
    owner: &str,
    p: LoadData,
) -> Result<CallToolResult, ToolError> {
    let call = HarnessCall::Load {
        file_path: p.file_path,
        name: p.name,
        backend: p.backend.as_str(),
        options: p.options,
    };
    let reply = manager
        .call(owner, &p.session_id, call, duration(p.max_duration_secs)?)
        .await?
        .into_value()?;
    let mut v = to_json(&reply);
    let text = load_text(&v);
    if let Some(obj) = v.as_object_mut() {
        let preview = obj.remove("preview").unwrap_or(Value::Null);
        obj.remove("preview_text");
        obj.insert("preview".into(), Value::Array(rows(&preview)));
        obj.insert("session_id".into(), json!(p.session_id));
    }
    Ok(result(text, v))
}

fn load_text(v: &Value) -> String {
    let name = v["name"].as_str().unwrap_or_default();
    let mut t = format!(
        "Loaded {} ({}, {}) as `{name}` with backend {}: {} rows x {} columns",
        v["path"].as_str().unwrap_or_default(),
        v["format"].as_str().unwrap_or_default(),
        human_bytes(v["file_bytes"].as_f64().unwrap_or(0.0)),
        v["backend"].as_str().unwrap_or_default(),
        v["rows"],
        v["n_columns"],
    );
    match v["memory_bytes"].as_f64() {
        Some(m) => t.push_str(&format!(", about {} in R memory", human_bytes(m))),
        None => t.push_str(" (lazy: the data stays on disk until collected)"),
    }
    t.push_str(&format!(
        "; read in {:.2} s.\n",
        v["load_seconds"].as_f64().unwrap_or(0.0)
    ));
    for note in strings(&v["notes"]) {
        t.push_str(&format!("NOTE: {note}\n"));
    }
    for w in strings(&v["warnings"]) {
        t.push_str(&format!("Warning while reading: {w}\n"));
    }
    t.push_str("\nColumns:\n");
    let width = v["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::len))
        .max()
        .unwrap_or(4)
        .min(40);
    for c in v["columns"].as_array().into_iter().flatten() {
        let missing = match c["missing"].as_f64() {
            Some(m) => format!("{m:.0} missing"),
            None => "missing not counted (lazy)".into(),
        };
        t.push_str(&format!(
            "  {:<width$}  {:<10} {missing}\n",
            c["name"].as_str().unwrap_or_default(),
            c["type"].as_str().unwrap_or_default(),
        ));
    }
    t.push_str("\nFirst rows:\n");
    t.push_str(v["preview_text"].as_str().unwrap_or_default());
    t.push_str(&format!(
        "\n\nIn execute_in_session: `{name}` is the data; helpers {}. In query_data it is table `{name}`.\n",
        strings(&v["helpers"]).join(", ")
    ));
    t
}

pub(super) async fn query(
    manager: &SessionManager,
    owner: &str,
    p: QueryData,
) -> Result<CallToolResult, ToolError> {
    if p.sql.trim().is_empty() {
        return Err(ToolError::invalid("sql is empty"));
    }
    let max_rows = p.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
    if max_rows == 0 || max_rows > MAX_ROWS {
        return Err(ToolError::invalid(format!(
            "max_rows must be between 1 and {MAX_ROWS}"
        )));
    }
    let call = HarnessCall::Query {
        sql: p.sql,
        params: p.params,
        max_rows,
    };
    let reply = manager
        .call(owner, &p.session_id, call, duration(p.max_duration_secs)?)
        .await?
        .into_value()?;
    let v = to_json(&reply);
    let table = &v["result"];
    let names = strings(&table["columns"]);
    let types = strings(&v["column_types"]);
    let columns: Vec<Value> = names
        .iter()
        .zip(types.iter().chain(std::iter::repeat(&String::new())))
        .map(|(n, t)| json!({"name": n, "type": t}))
        .collect();
    let returned = v["returned_rows"].as_u64().unwrap_or(0);
    let total = v["row_count"].as_u64().unwrap_or(returned);
    let mut text = format!(
        "{total} row{} ({} engine, {:.1} ms)",
        if total == 1 { "" } else { "s" },
        v["engine"].as_str().unwrap_or_default(),
        v["elapsed_ms"].as_f64().unwrap_or(0.0)
    );
    if v["truncated"].as_bool() == Some(true) {
        text.push_str(&format!(
            "; showing the first {returned} (max_rows = {max_rows})"
        ));
    }
    text.push_str(":\n");
    text.push_str(v["text"].as_str().unwrap_or_default());
    text.push('\n');
    for note in strings(&v["notes"]) {
        text.push_str(&format!("NOTE: {note}\n"));
    }
    let structured = json!({
        "session_id": p.session_id,
        "engine": v["engine"],
        "row_count": total,
        "returned_rows": returned,
        "truncated": v["truncated"],
        "max_rows": max_rows,
        "elapsed_ms": v["elapsed_ms"],
        "columns": columns,
        "rows": rows(table),
        "tables": v["tables"],
        "notes": v["notes"],
    });
    Ok(result(text, structured))
}

pub(super) async fn describe(
    manager: &SessionManager,
    owner: &str,
    p: DescribeData,
) -> Result<CallToolResult, ToolError> {
    check_identifier(&p.name)?;
    let top_n = p.top_n.unwrap_or(5);
    if top_n == 0 || top_n > 50 {
        return Err(ToolError::invalid("top_n must be between 1 and 50"));
    }
    let call = HarnessCall::Describe {
        name: p.name,
        top_n,
    };
    let reply = manager
        .call(owner, &p.session_id, call, None)
        .await?
        .into_value()?;
    let mut v = to_json(&reply);
    let text = v["text"].as_str().unwrap_or_default().to_string();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("text");
        obj.insert("session_id".into(), json!(p.session_id));
    }
    Ok(result(text, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KB");
        assert_eq!(human_bytes(200.0 * 1024.0 * 1024.0), "200.0 MB");
    }
}
