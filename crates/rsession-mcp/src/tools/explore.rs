//! Registration of the data-exploration tools (`load_data`, `query_data`,
//! `describe_data`, `help`, `read_output`); merged into the server's tool
//! router in [`super::RSessionServer::new`].

use rmcp::model::{CallToolResult, JsonObject};
use rmcp::{ErrorData, tool, tool_router};

use super::{RSessionServer, data, data_params, help, input_schema, pages, parse};

#[tool_router(router = data_tool_router, vis = "pub(super)")]
impl RSessionServer {
    /// Load a data file into the session as a named dataset.
    #[tool(
        name = "load_data",
        description = "Load a data file from the session workspace into R under `name`: CSV/TSV (readr), Parquet and Arrow datasets (arrow), JSON/NDJSON (jsonlite), Excel (readxl), SQLite and DuckDB database files. backend auto picks by size (tibble < 100 MB, arrow <= 1 GB, duckdb above) and falls back with a note when a package is missing. Returns rows, columns with types and missing counts, a memory estimate and the first rows. Afterwards `name` is usable in execute_in_session (with helpers name_glimpse(), name_summary(), name_slice_sample(n)) and as a table in query_data.",
        input_schema = input_schema::<data_params::LoadData>()
    )]
    async fn load_data(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<data_params::LoadData>(args)?;
            data::load(&self.manager, &self.owner, p).await
        };
        self.finish("load_data", r.await)
    }

    /// SQL over loaded datasets.
    #[tool(
        name = "query_data",
        description = "Run one SQL statement over the datasets loaded with load_data (each is a table of the same name; changes made to them in R are picked up). DuckDB when the session has it, else SQLite (dates as ISO text). Bind values with ? placeholders and params (never paste values into SQL). Returns rows as structured content and a text table, the full row count, elapsed ms; at most max_rows rows (default 1000).",
        input_schema = input_schema::<data_params::QueryData>()
    )]
    async fn query_data(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<data_params::QueryData>(args)?;
            let result = data::query(&self.manager, &self.owner, p).await?;
            Ok(pages::paginate(
                &self.pager,
                &self.owner,
                "query_data",
                result,
            ))
        };
        self.finish("query_data", r.await)
    }

    /// Profile one dataset.
    #[tool(
        name = "describe_data",
        description = "Profile a loaded dataset (or any data frame in the session), like skimr: per column the type, missing count and rate, unique values; for numbers mean, sd, quantiles (p0 p25 p50 p75 p100) and a histogram sparkline; for text/factor/logical the top values with counts; for dates min/median/max.",
        input_schema = input_schema::<data_params::DescribeData>()
    )]
    async fn describe_data(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<data_params::DescribeData>(args)?;
            let result = data::describe(&self.manager, &self.owner, p).await?;
            Ok(pages::paginate(
                &self.pager,
                &self.owner,
                "describe_data",
                result,
            ))
        };
        self.finish("describe_data", r.await)
    }

    /// R documentation as text.
    #[tool(
        name = "help",
        description = "R documentation as plain text: the help page of a topic (function, dataset), optionally from a given package, or a package's index when only package is given. Inside execute_in_session, ?topic, help() and vignette() also print text.",
        input_schema = input_schema::<data_params::Help>()
    )]
    async fn help(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let p = parse::<data_params::Help>(args)?;
            let result = help::help(&self.manager, &self.owner, p).await?;
            Ok(pages::paginate(&self.pager, &self.owner, "help", result))
        };
        self.finish("help", r.await)
    }

    /// Page through long output.
    #[tool(
        name = "read_output",
        description = "Read more of a long result that came back paged (its text ends with a handle). Without page/offset/search: the next page not yet sent. page: that page; offset: the page holding that character offset; search: the matching lines with their line and page numbers (literal text unless regex=true). Pages already sent are not sent again unless resend=true.",
        input_schema = input_schema::<data_params::ReadOutput>()
    )]
    async fn read_output(&self, args: JsonObject) -> Result<CallToolResult, ErrorData> {
        let r = parse::<data_params::ReadOutput>(args)
            .and_then(|p| pages::read(&self.pager, &self.owner, p));
        self.finish("read_output", r)
    }
}
