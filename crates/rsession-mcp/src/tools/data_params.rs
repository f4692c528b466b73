//! Arguments of the data-exploration tools (`load_data`, `query_data`,
//! `describe_data`), `help` and `read_output`. Doc comments become the
//! tools' JSON Schema (`inputSchema`, MCP spec 2025-06-18 "Tools").

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

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

/// Arguments of `read_output`: one of `page`, `offset`, `search`; none means the next unsent page.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadOutput {
    /// Handle from a paged result (`pager.handle`).
    pub handle: String,
    /// 1-based page number.
    #[serde(default)]
    pub page: Option<usize>,
    /// Character offset in the whole output; returns the page holding it.
    #[serde(default)]
    pub offset: Option<usize>,
    /// Return the lines matching this pattern, with line and page numbers.
    #[serde(default)]
    pub search: Option<String>,
    /// Treat `search` as a regular expression (default: literal text).
    #[serde(default)]
    pub regex: Option<bool>,
    /// Match case in `search` (default false).
    #[serde(default)]
    pub case_sensitive: Option<bool>,
    /// Send a page again even if it was sent before (default false).
    #[serde(default)]
    pub resend: Option<bool>,
}

/// Arguments of the `explore_data` prompt (all strings, as MCP prompt arguments are).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExploreData {
    /// Data file relative to the session workspace, e.g. `sales.csv`.
    pub file_path: String,
    /// The question or theme to explore, e.g. `"what drives late deliveries"`.
    #[serde(default)]
    pub topic: Option<String>,
    /// `report` (default: findings as a written report) or `notebook` (an R Markdown file in the workspace).
    #[serde(default)]
    pub output_format: Option<String>,
}
