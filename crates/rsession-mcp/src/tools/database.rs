//! `describe_database`: what the session's own database holds (the RSession's
//! `spec.database`; `harness_db.R` does the work in R, where the connection
//! lives). SQL over that database is `query_data` with `target: "database"`.

use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::CallToolResult;
use rserve::Sexp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, Hints, Paging, RSessionServer, ToolDef, structured, tool};
use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::sexp_json::to_json;

/// Tables per page when the call names no `max_tables`, and the most it may name.
const DEFAULT_MAX_TABLES: u32 = 50;
const LARGEST_MAX_TABLES: u32 = 500;

/// The tools of this group (see [`super::tool`]).
pub(super) fn routes() -> Vec<ToolRoute<RSessionServer>> {
    vec![tool(&DESCRIBE_DATABASE, describe)]
}

/// Arguments of `describe_database`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeDatabase {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// Only tables of this schema (for an OMOP CDM, e.g. the CDM or vocabulary schema).
    #[serde(default)]
    pub schema: Option<String>,
    /// Tables per page (default 50, at most 500).
    #[serde(default)]
    pub max_tables: Option<u32>,
    /// Tables to skip: the previous page's `next_offset`.
    #[serde(default)]
    pub offset: Option<u32>,
}

/// `describe_database`: schemas, tables, columns and row estimates.
const DESCRIBE_DATABASE: ToolDef = ToolDef {
    name: "describe_database",
    title: "Describe the session's database",
    description: "List what the session's own database holds (the RSession's spec.database, PostgreSQL, e.g. an OMOP CDM): its schemas, then its tables and views with their columns (name, type, nullable) and the planner's approximate row count, a page at a time (max_tables, offset; the result names next_offset while more remain). Query it with query_data and target \"database\".",
    hints: Hints {
        open_world: true,
        ..Hints::READ_ONLY
    },
    paging: Paging::Paged,
    task: false,
};

async fn describe(call: Call, p: DescribeDatabase) -> Result<CallToolResult, ToolError> {
    let max_tables = p.max_tables.unwrap_or(DEFAULT_MAX_TABLES);
    if max_tables == 0 || max_tables > LARGEST_MAX_TABLES {
        return Err(ToolError::invalid(format!(
            "max_tables must be between 1 and {LARGEST_MAX_TABLES}"
        )));
    }
    let harness_call = HarnessCall::DescribeDatabase {
        schema: p.schema.filter(|s| !s.trim().is_empty()),
        max_tables,
        offset: p.offset.unwrap_or(0),
    };
    let reply: Sexp = call.harness(&p.session_id, harness_call, None).await?;
    let mut v = to_json(&reply);
    let text = render(&v);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("session_id".into(), json!(p.session_id));
    }
    Ok(structured(text, v))
}

/// The description as an agent reads it: schemas, then one block per table.
fn render(v: &Value) -> String {
    let names = |a: &Value| -> Vec<String> {
        a.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let tables = v["tables"].as_array().cloned().unwrap_or_default();
    let offset = v["offset"].as_u64().unwrap_or(0);
    let mut text = format!(
        "Schemas: {}\nTables {}-{} of {}:\n",
        names(&v["schemas"]).join(", "),
        if tables.is_empty() {
            offset
        } else {
            offset + 1
        },
        offset + tables.len() as u64,
        v["total_tables"].as_u64().unwrap_or(0)
    );
    for t in &tables {
        let rows = match t["approx_rows"].as_f64() {
            Some(r) => format!("about {r:.0} rows"),
            None => "rows not estimated yet".into(),
        };
        text.push_str(&format!(
            "\n{}.{} ({}, {rows})\n",
            t["schema"].as_str().unwrap_or("?"),
            t["name"].as_str().unwrap_or("?"),
            t["kind"].as_str().unwrap_or("table"),
        ));
        for c in t["columns"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "  {} {}{}\n",
                c["name"].as_str().unwrap_or("?"),
                c["type"].as_str().unwrap_or("?"),
                if c["nullable"].as_bool() == Some(false) {
                    " not null"
                } else {
                    ""
                }
            ));
        }
    }
    if let Some(next) = v["next_offset"].as_u64() {
        text.push_str(&format!("\nMore tables: call again with offset {next}.\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_lists_tables_columns_and_the_next_page() {
        let v = json!({"schemas": ["cdm", "results"], "total_tables": 3, "offset": 0, "next_offset": 2,
            "tables": [
                {"schema": "cdm", "name": "person", "kind": "table", "approx_rows": 1000.0,
                 "columns": [{"name": "person_id", "type": "bigint", "nullable": false},
                             {"name": "year_of_birth", "type": "integer", "nullable": true}]},
                {"schema": "cdm", "name": "v", "kind": "view", "approx_rows": null, "columns": []}]});
        let t = render(&v);
        assert!(
            t.starts_with("Schemas: cdm, results\nTables 1-2 of 3:"),
            "{t}"
        );
        assert!(t.contains("cdm.person (table, about 1000 rows)\n  person_id bigint not null\n  year_of_birth integer\n"), "{t}");
        assert!(t.contains("cdm.v (view, rows not estimated yet)"), "{t}");
        assert!(t.contains("call again with offset 2"), "{t}");
    }
}
