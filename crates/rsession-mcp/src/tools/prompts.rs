//! MCP prompts (MCP spec 2025-06-18, "Prompts"): `explore_data`, a guided
//! exploration of one data file with the data tools.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{PromptMessage, Role};
use rmcp::{prompt, prompt_router};

use super::RSessionServer;
use schemars::JsonSchema;
use serde::Deserialize;

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

/// The `explore_data` messages for `args` (a pure function, unit-tested).
pub fn explore_data_messages(args: &ExploreData) -> Vec<PromptMessage> {
    let topic = args
        .topic
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or("what the data holds and what stands out");
    let notebook = args.output_format.as_deref() == Some("notebook");
    let deliver = if notebook {
        "7. Deliver a notebook: write an R Markdown file `analysis.Rmd` with write_session_file whose chunks \
         reproduce every step (loading with the same reader, checks, summaries, plots) with short prose between \
         them, then list_session_files to confirm it is there and summarise the findings in your reply."
    } else {
        "7. Deliver a report: a short written report in your reply with sections Data, Quality, Findings \
         (each finding with the number or plot that supports it) and Caveats / next steps."
    };
    let file = &args.file_path;
    let text = format!(
        "Explore the data file `{file}` in an R session, about: {topic}.\n\n\
         Work step by step with the rsession tools, and look at every result before the next step:\n\
         1. Session: create_session (or reuse one you already have).\n\
         2. Load: load_data with file_path \"{file}\", a short snake_case name and backend \"auto\". Read the \
         NOTE lines (backend fallbacks) and reader warnings; reload with options (delim, sheet, col_types, na, \
         factors) if columns came out wrong.\n\
         3. Inspect: describe_data on the dataset: types, missing rates, ranges, top values. In \
         execute_in_session use <name>_glimpse() and <name>_slice_sample(10) to see real rows.\n\
         4. Quality checks: duplicated rows or keys, impossible values (negative amounts, dates in the future), \
         inconsistent categories (case, spelling), unexpected missingness; quantify each problem with query_data \
         (bound ? parameters, never values pasted into SQL) or dplyr, and decide how to handle it, saying so.\n\
         5. Analysis: answer the question with grouped summaries (dplyr or query_data), comparisons and, where \
         it fits, a simple model; keep the code small and re-runnable.\n\
         6. Plots: draw ggplot2 charts in execute_in_session (they come back as images); label axes and titles; \
         one idea per plot.\n\
         {deliver}\n\n\
         If a result is long it comes back paged: use read_output (next page, page number, or search) rather \
         than printing again. Use help (or ?topic in code) when unsure of a function's arguments."
    );
    vec![PromptMessage::new_text(Role::User, text)]
}

#[prompt_router(vis = "pub(super)")]
impl RSessionServer {
    /// Guided exploration of one data file.
    #[prompt(
        name = "explore_data",
        description = "Guide an exploration of a data file in the session workspace: load, inspect, quality checks, analysis, plots and findings, as a report or an R Markdown notebook."
    )]
    async fn explore_data(&self, Parameters(args): Parameters<ExploreData>) -> Vec<PromptMessage> {
        explore_data_messages(&args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &PromptMessage) -> String {
        serde_json::to_value(m).unwrap()["content"]["text"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn prompt_names_the_file_steps_and_format() {
        let report = explore_data_messages(&ExploreData {
            file_path: "sales.csv".into(),
            topic: Some("late deliveries".into()),
            output_format: None,
        });
        let t = text(&report[0]);
        for needle in [
            "`sales.csv`",
            "late deliveries",
            "load_data",
            "describe_data",
            "query_data",
            "ggplot2",
            "report",
        ] {
            assert!(t.contains(needle), "{needle} missing");
        }
        let nb = explore_data_messages(&ExploreData {
            file_path: "x.xlsx".into(),
            topic: None,
            output_format: Some("notebook".into()),
        });
        assert!(text(&nb[0]).contains("analysis.Rmd"));
    }
}
