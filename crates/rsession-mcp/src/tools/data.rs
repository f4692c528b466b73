//! Data exploration tools: `load_data`, `query_data`, `describe_data`.
//!
//! Each calls one entry point of `harness_data.R` in the session's R (so the
//! data stays in R, next to the user's objects) and turns the returned list
//! into structured content (JSON) and a text rendering. Only summaries, the
//! first rows and capped query results cross into this process.

use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::CallToolResult;
use rserve::Sexp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Call, Hints, Paging, RSessionServer, ToolDef, deadline, structured, tool};
use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::harness::literal::check_identifier;
use crate::sexp_json::{rows, to_json};

/// Where a loaded dataset lives in R.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataBackend {
    /// By file size: tibble under 100 MB, arrow up to 1 GB, duckdb above;
    /// falls back (with a note) when the image lacks the package.
    #[default]
    Auto,
    /// An in-memory tibble (readr, readxl, jsonlite, DBI).
    Tibble,
    /// A lazy Arrow Dataset (R package `arrow`).
    Arrow,
    /// A DuckDB view over the file (R package `duckdb`).
    Duckdb,
}

impl DataBackend {
    /// The name R receives.
    pub fn as_str(self) -> &'static str {
        match self {
            DataBackend::Auto => "auto",
            DataBackend::Tibble => "tibble",
            DataBackend::Arrow => "arrow",
            DataBackend::Duckdb => "duckdb",
        }
    }
}

/// Arguments of `load_data`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadData {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// File (or, for Arrow datasets, directory) relative to the workspace:
    /// .csv, .tsv, .txt (with options.delim), .parquet, .feather/.arrow,
    /// .json, .ndjson/.jsonl, .xlsx/.xls, .sqlite/.db, .duckdb; .gz etc. allowed for text.
    pub file_path: String,
    /// Name of the R object the data is bound to (a plain R name); helpers
    /// `<name>_glimpse()`, `<name>_summary()`, `<name>_slice_sample(n)` and
    /// `<name>_db()` (a lazy dbplyr table on the query_data connection) are
    /// defined next to it, and query_data sees it as table `<name>`.
    pub name: String,
    /// `auto` (default), `tibble`, `arrow` or `duckdb`.
    #[serde(default)]
    pub backend: DataBackend,
    /// Reader options: `format` (override detection), `delim`, `na` (strings
    /// read as missing), `skip`, `n_max`, `col_types` (readr compact string,
    /// e.g. "icDn"), `factors` (column names to make factors), `sheet` and
    /// `range` (Excel), `table` or `query` (SQLite), `field` and `flatten`
    /// (JSON), `preview_rows` (default 5).
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    /// Deadline in seconds (default: the server's default evaluation deadline).
    #[serde(default)]
    pub max_duration_secs: Option<f64>,
}

/// Arguments of `query_data`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryData {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// One SQL statement over the loaded datasets (each is a table named like
    /// its dataset). SQLite dialect unless the result says engine "duckdb".
    /// Use `?` placeholders (or `:name` with named params) for values.
    pub sql: String,
    /// Values bound to the placeholders: an array for `?`, an object for
    /// `:name`. Never paste values into the SQL text.
    #[serde(default)]
    pub params: Option<Value>,
    /// Most rows returned (default 1000, at most 10000); the full row count
    /// is still reported.
    #[serde(default)]
    pub max_rows: Option<u32>,
    /// Deadline in seconds (default: the server's default evaluation deadline).
    #[serde(default)]
    pub max_duration_secs: Option<f64>,
    /// `datasets` (default): the datasets loaded with load_data. `database`:
    /// the session's own database (the RSession's `spec.database`, PostgreSQL
    /// dialect, `$1`, `$2` placeholders with `params` as an array; see
    /// describe_database).
    #[serde(default)]
    pub target: QueryTarget,
}

/// What `query_data` runs against.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueryTarget {
    /// The datasets loaded with `load_data` (DuckDB or SQLite).
    #[default]
    Datasets,
    /// The session's database (PostgreSQL).
    Database,
}

/// Arguments of `describe_data`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeData {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// A dataset name from `load_data` (or any data frame in the session).
    pub name: String,
    /// Most frequent values listed per character/factor column (default 5, at most 50).
    #[serde(default)]
    pub top_n: Option<u32>,
}

/// The tools of this group (see [`super::tool`]).
pub(super) fn routes() -> Vec<ToolRoute<RSessionServer>> {
    vec![
        tool(&LOAD_DATA, load),
        tool(&QUERY_DATA, query),
        tool(&DESCRIBE_DATA, describe),
    ]
}

/// `load_data`: load a data file into the session as a named dataset.
const LOAD_DATA: ToolDef = ToolDef {
    name: "load_data",
    title: "Load a data file as a dataset",
    description: "Load a data file from the session workspace into R under `name`: CSV/TSV (readr), Parquet and Arrow datasets (arrow), JSON/NDJSON (jsonlite), Excel (readxl), SQLite and DuckDB database files. backend auto picks by size (tibble < 100 MB, arrow <= 1 GB, duckdb above) and falls back with a note when a package is missing. Returns rows, columns with types and missing counts, a memory estimate and the first rows. Afterwards `name` is usable in execute_in_session (with helpers name_glimpse(), name_summary(), name_slice_sample(n)) and as a table in query_data.",
    // Replaces an existing R object of the same name.
    hints: Hints {
        idempotent: true,
        ..Hints::DESTRUCTIVE
    },
    paging: Paging::Whole,
    task: true,
};

/// `query_data`: sQL over loaded datasets.
const QUERY_DATA: ToolDef = ToolDef {
    name: "query_data",
    title: "Query datasets with SQL",
    description: "Run one SQL statement over the datasets loaded with load_data (each is a table of the same name; changes made to them in R are picked up). DuckDB when the session has it, else SQLite (dates as ISO text). Bind values with ? placeholders and params (never paste values into SQL). With target \"database\": over the session's own database instead (PostgreSQL, e.g. an OMOP CDM; $1, $2 placeholders; describe_database lists its tables). Returns rows as structured content and a text table, the full row count, elapsed ms; at most max_rows rows (default 1000).",
    // One SQL statement of any kind: an UPDATE on a loaded database file
    // changes that file; target "database" reaches the session's database.
    hints: Hints {
        open_world: true,
        ..Hints::DESTRUCTIVE
    },
    paging: Paging::Paged,
    task: true,
};

/// `describe_data`: profile one dataset.
const DESCRIBE_DATA: ToolDef = ToolDef {
    name: "describe_data",
    title: "Profile a dataset",
    description: "Profile a loaded dataset (or any data frame in the session), like skimr: per column the type, missing count and rate, unique values; for numbers mean, sd, quantiles (p0 p25 p50 p75 p100) and a histogram sparkline; for text/factor/logical the top values with counts; for dates min/median/max.",
    hints: Hints::READ_ONLY,
    paging: Paging::Paged,
    task: false,
};

/// Rows `query_data` returns when the call names no `max_rows`.
pub const DEFAULT_MAX_ROWS: u32 = 1000;
/// Most rows `query_data` returns.
pub const MAX_ROWS: u32 = 10_000;

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

async fn load(call: Call, p: LoadData) -> Result<CallToolResult, ToolError> {
    let harness_call = HarnessCall::Load {
        file_path: p.file_path,
        name: p.name,
        backend: p.backend.as_str(),
        options: p.options,
    };
    let max_duration = deadline(p.max_duration_secs, "max_duration_secs")?;
    let reply: Sexp = call
        .harness(&p.session_id, harness_call, max_duration)
        .await?;
    let mut v = to_json(&reply);
    let text = load_text(&v);
    if let Some(obj) = v.as_object_mut() {
        let preview = obj.remove("preview").unwrap_or(Value::Null);
        obj.remove("preview_text");
        obj.insert("preview".into(), Value::Array(rows(&preview)));
        obj.insert("session_id".into(), json!(p.session_id));
    }
    Ok(structured(text, v))
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

async fn query(call: Call, p: QueryData) -> Result<CallToolResult, ToolError> {
    if p.sql.trim().is_empty() {
        return Err(ToolError::invalid("sql is empty"));
    }
    let max_rows = p.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
    if max_rows == 0 || max_rows > MAX_ROWS {
        return Err(ToolError::invalid(format!(
            "max_rows must be between 1 and {MAX_ROWS}"
        )));
    }
    let harness_call = match p.target {
        QueryTarget::Datasets => HarnessCall::Query {
            sql: p.sql,
            params: p.params,
            max_rows,
        },
        QueryTarget::Database => {
            if p.params
                .as_ref()
                .is_some_and(|v| !v.is_array() && !v.is_null())
            {
                return Err(ToolError::invalid(
                    "params for target database must be an array, bound to $1, $2, ... in order",
                ));
            }
            HarnessCall::DatabaseQuery {
                sql: p.sql,
                params: p.params,
                max_rows,
            }
        }
    };
    let max_duration = deadline(p.max_duration_secs, "max_duration_secs")?;
    let reply: Sexp = call
        .harness(&p.session_id, harness_call, max_duration)
        .await?;
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
    let structured_content = json!({
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
    Ok(structured(text, structured_content))
}

async fn describe(call: Call, p: DescribeData) -> Result<CallToolResult, ToolError> {
    check_identifier(&p.name)?;
    let top_n = p.top_n.unwrap_or(5);
    if top_n == 0 || top_n > 50 {
        return Err(ToolError::invalid("top_n must be between 1 and 50"));
    }
    let harness_call = HarnessCall::Describe {
        name: p.name,
        top_n,
    };
    let reply: Sexp = call.harness(&p.session_id, harness_call, None).await?;
    let mut v = to_json(&reply);
    let text = v["text"].as_str().unwrap_or_default().to_string();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("text");
        obj.insert("session_id".into(), json!(p.session_id));
    }
    Ok(structured(text, v))
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
