//! The harness entry points as one typed value, [`HarnessCall`], and the one
//! place that renders each into R source from escaped literals
//! ([`HarnessCall::render`]). Arguments are checked here (names, package
//! names, relative paths, NUL) before anything reaches R.

use serde_json::{Map, Value};

use crate::errors::ToolError;
use crate::harness::literal::{
    check_identifier, check_relative_path, is_package_name, literal, logical, r_literal,
};
use crate::harness::outcome::ExecLimits;

/// Library directory of a session, relative to its workspace; prepended to
/// `.libPaths()` so `install_package` never touches the image's library.
pub const SESSION_LIBRARY: &str = ".R/library";

/// Global variable that carries uploaded bytes for one call; the harness
/// removes it at once (`.rsession$take_upload()`).
pub const UPLOAD_VAR: &str = ".rsession_upload";

/// Where a session's checkpoint lives, relative to its workspace (so it
/// survives wherever the workspace does: a PVC, a kept folder).
pub const CHECKPOINT_DIR: &str = ".rsession/checkpoint";

/// One call of an entry point of `harness.R` (environment `.rsession`) or
/// `harness_data.R` (`.rsession_data`).
#[derive(Debug, Clone, PartialEq)]
pub enum HarnessCall {
    /// `.rsession$execute()`: parse and run user code, capturing events.
    Execute {
        /// R code.
        code: String,
        /// Limits inside R (already clamped by the session manager).
        limits: ExecLimits,
    },
    /// `.rsession$init()`: create and enter the workspace, private library.
    Init {
        /// Workspace directory as R sees it.
        workspace: String,
    },
    /// `.rsession$list_files()`.
    ListFiles {
        /// Directory relative to the workspace (`.` is the workspace).
        path: String,
        /// List subdirectories too.
        recursive: bool,
    },
    /// `.rsession$read_file()`: `list(bytes, size, truncated)`.
    ReadFile {
        /// File relative to the workspace.
        path: String,
        /// Bytes read at most.
        max_bytes: u64,
        /// Byte offset the read starts at.
        offset: u64,
    },
    /// `.rsession$write_file()` of bytes uploaded to [`UPLOAD_VAR`] first.
    WriteFile {
        /// File relative to the workspace; parents are created.
        path: String,
        /// The bytes.
        content: Vec<u8>,
        /// Replace an existing file.
        overwrite: bool,
    },
    /// `.rsession$install_package()`, run as user code (output captured).
    InstallPackages {
        /// Package names.
        packages: Vec<String>,
        /// Repository URL (`--package-repo`).
        repository: String,
    },
    /// `.rsession_data$load()`.
    Load {
        /// Data file relative to the workspace.
        file_path: String,
        /// R name the data is bound to.
        name: String,
        /// `auto`, `tibble`, `arrow` or `duckdb`.
        backend: &'static str,
        /// Reader options.
        options: Option<Map<String, Value>>,
    },
    /// `.rsession_data$query()`.
    Query {
        /// One SQL statement.
        sql: String,
        /// Bound values: array for `?`, object for `:name`.
        params: Option<Value>,
        /// Rows returned at most.
        max_rows: u32,
    },
    /// `.rsession_db$query()`: one statement on the session's own database
    /// (`spec.database`, through libpq's variables).
    DatabaseQuery {
        /// One SQL statement (PostgreSQL; `$1`, `$2` placeholders).
        sql: String,
        /// Bound values, in placeholder order (an array).
        params: Option<Value>,
        /// Rows returned at most.
        max_rows: u32,
    },
    /// `.rsession_db$describe()`: schemas, tables and columns of the
    /// session's database, a page of tables at a time.
    DescribeDatabase {
        /// Only this schema.
        schema: Option<String>,
        /// Tables per page.
        max_tables: u32,
        /// Tables skipped (the previous page's `next_offset`).
        offset: u32,
    },
    /// `.rsession_db$cdm_setup()`: the `cdm` handle of an OMOP CDM database
    /// (`CDM_SCHEMA` set), or `NULL`.
    CdmSetup,
    /// `.rsession_data$describe()`.
    Describe {
        /// Dataset name.
        name: String,
        /// Most frequent values per column.
        top_n: u32,
    },
    /// `.rsession_data$help_text()`.
    HelpText {
        /// Help topic (already trimmed).
        topic: Option<String>,
        /// Package to look in.
        package: Option<String>,
    },
    /// `.rsession_checkpoint$save()` into [`CHECKPOINT_DIR`] of the workspace.
    Checkpoint {
        /// Size cap of the whole checkpoint on disk (compressed), bytes.
        max_bytes: u64,
        /// Objects larger than this in memory are skipped and named, bytes.
        max_object_bytes: u64,
        /// Time budget; objects not reached within it are skipped, seconds.
        budget_secs: f64,
    },
    /// `.rsession_checkpoint$restore()` from [`CHECKPOINT_DIR`].
    Restore,
    /// `.rsession$memory_state()`: the cgroup's OOM-kill counter and limit.
    MemoryState,
    /// The last `max_bytes` of the output spool at `path` after byte offset
    /// `start`, as raw bytes (all of the spool's end when it is shorter than
    /// `start`: it was emptied since). Needs no harness: it runs on a fresh
    /// connection while the session's own R is busy evaluating (progress).
    SpoolTail {
        /// The spool's path as returned by `.rsession$init()` (`spool`).
        path: String,
        /// Where the running evaluation's output starts: the previous
        /// result's `spool_end` (0 when there is none).
        start: u64,
        /// Bytes read at most, from the end.
        max_bytes: u64,
    },
}

impl HarnessCall {
    /// The R source of this call. [`HarnessCall::InstallPackages`] renders
    /// the install expression itself; the session manager runs it as the
    /// `code` of an [`HarnessCall::Execute`].
    ///
    /// Errors: `invalid_argument` (NUL in text, a path leaving the
    /// workspace, a name that is not a plain R name or package name, params
    /// of the wrong shape).
    pub fn render(&self) -> Result<String, ToolError> {
        Ok(match self {
            HarnessCall::Execute { code, limits } => format!(
                ".rsession$execute({}, max_output_bytes = {}, max_plots = {}L, max_plot_bytes = {})",
                literal(code).map_err(|_| ToolError::invalid(
                    "code contains a NUL character, which R strings cannot hold"
                ))?,
                limits.max_output_bytes,
                limits.max_plots,
                limits.max_plot_bytes
            ),
            HarnessCall::Init { workspace } => format!(
                ".rsession$init({}, library = {})",
                literal(workspace)
                    .map_err(|_| ToolError::invalid("workspace path contains NUL"))?,
                literal(SESSION_LIBRARY)?
            ),
            HarnessCall::ListFiles { path, recursive } => {
                check_relative_path(path, true)?;
                format!(
                    ".rsession$list_files({}, recursive = {})",
                    literal(path)?,
                    logical(*recursive)
                )
            }
            HarnessCall::ReadFile {
                path,
                max_bytes,
                offset,
            } => {
                check_relative_path(path, false)?;
                format!(
                    ".rsession$read_file({}, max_bytes = {max_bytes}, offset = {offset})",
                    literal(path)?
                )
            }
            HarnessCall::WriteFile {
                path, overwrite, ..
            } => {
                check_relative_path(path, false)?;
                format!(
                    ".rsession$write_file({}, .rsession$take_upload(), overwrite = {})",
                    literal(path)?,
                    logical(*overwrite)
                )
            }
            HarnessCall::InstallPackages {
                packages,
                repository,
            } => {
                if packages.is_empty() {
                    return Err(ToolError::invalid("name at least one package"));
                }
                if let Some(p) = packages.iter().find(|p| !is_package_name(p)) {
                    return Err(ToolError::invalid(format!(
                        "{p:?} is not a valid R package name (letters, digits and '.', starting with a letter)"
                    )));
                }
                let names: Vec<String> = packages.iter().map(|p| format!("\"{p}\"")).collect();
                format!(
                    ".rsession$install_package(c({}), repos = {})",
                    names.join(", "),
                    literal(repository)?
                )
            }
            HarnessCall::Load {
                file_path,
                name,
                backend,
                options,
            } => {
                check_relative_path(file_path, false)?;
                check_identifier(name)?;
                let options = match options {
                    Some(map) => r_literal(&Value::Object(map.clone()))
                        .map_err(|e| ToolError::invalid(format!("options: {e}")))?,
                    None => "list()".into(),
                };
                format!(
                    ".rsession_data$load({}, {}, {}, {options})",
                    literal(file_path)?,
                    literal(name)?,
                    literal(backend)?
                )
            }
            HarnessCall::Query {
                sql,
                params,
                max_rows,
            } => format!(
                ".rsession_data$query({}, {}, max_rows = {max_rows}L)",
                literal(sql)?,
                params_literal(params.as_ref())?
            ),
            HarnessCall::DatabaseQuery {
                sql,
                params,
                max_rows,
            } => format!(
                ".rsession_db$query({}, {}, max_rows = {max_rows}L)",
                literal(sql)?,
                params_literal(params.as_ref())?
            ),
            HarnessCall::DescribeDatabase {
                schema,
                max_tables,
                offset,
            } => format!(
                ".rsession_db$describe({}, max_tables = {max_tables}L, offset = {offset}L)",
                match schema {
                    Some(s) => literal(s)?,
                    None => "NULL".into(),
                }
            ),
            HarnessCall::CdmSetup => ".rsession_db$cdm_setup()".to_string(),
            HarnessCall::Describe { name, top_n } => {
                check_identifier(name)?;
                format!(
                    ".rsession_data$describe({}, top_n = {top_n}L)",
                    literal(name)?
                )
            }
            HarnessCall::HelpText { topic, package } => {
                let topic = match topic {
                    Some(t) => literal(t).map_err(|_| ToolError::invalid("topic contains NUL"))?,
                    None => "NULL".into(),
                };
                let package = match package {
                    Some(pkg) if !is_package_name(pkg) => {
                        return Err(ToolError::invalid(format!(
                            "{pkg:?} is not a valid R package name"
                        )));
                    }
                    Some(pkg) => format!("\"{pkg}\""),
                    None => "NULL".into(),
                };
                format!(".rsession_data$help_text({topic}, {package})")
            }
            HarnessCall::Checkpoint {
                max_bytes,
                max_object_bytes,
                budget_secs,
            } => {
                if !budget_secs.is_finite() || *budget_secs <= 0.0 {
                    return Err(ToolError::invalid(
                        "the time budget must be a positive number of seconds",
                    ));
                }
                format!(
                    ".rsession_checkpoint$save(file.path(.rsession$workspace(), {}), max_bytes = {max_bytes}, max_object_bytes = {max_object_bytes}, budget_secs = {budget_secs})",
                    literal(CHECKPOINT_DIR)?
                )
            }
            HarnessCall::Restore => format!(
                ".rsession_checkpoint$restore(file.path(.rsession$workspace(), {}))",
                literal(CHECKPOINT_DIR)?
            ),
            HarnessCall::MemoryState => ".rsession$memory_state()".into(),
            HarnessCall::SpoolTail {
                path,
                start,
                max_bytes,
            } => format!(
                "local({{ p <- {}; s <- file.size(p); if (is.na(s) || s <= 0) return(raw(0)); \
                 from <- if (s >= {start}) {start} else 0; n <- min(s - from, {max_bytes}); \
                 if (n <= 0) return(raw(0)); \
                 f <- file(p, \"rb\"); on.exit(close(f)); seek(f, s - n); readBin(f, \"raw\", n) }})",
                literal(path)?
            ),
        })
    }

    /// Bytes to assign to [`UPLOAD_VAR`] before the call (QAP1 `CMD_setSEXP`).
    pub fn upload(&self) -> Option<&[u8]> {
        match self {
            HarnessCall::WriteFile { content, .. } => Some(content),
            _ => None,
        }
    }
}

/// `params` as the R argument DBI expects: an unnamed list for `?`
/// placeholders, a named list for `:name`; JSON null binds as NA.
fn params_literal(params: Option<&Value>) -> Result<String, ToolError> {
    let nested = match params {
        None | Some(Value::Null) => return Ok("NULL".into()),
        Some(Value::Array(items)) => items.iter().any(|x| x.is_array() || x.is_object()),
        Some(Value::Object(map)) => map.values().any(|x| x.is_array() || x.is_object()),
        Some(_) => {
            return Err(ToolError::invalid(
                "params must be an array (for ? placeholders) or an object (for :name placeholders)",
            ));
        }
    };
    if nested {
        return Err(ToolError::invalid(
            "params: each bound value must be a string, number, boolean or null",
        ));
    }
    let v = params.unwrap_or(&Value::Null);
    let l = r_literal(v).map_err(|e| ToolError::invalid(format!("params: {e}")))?;
    let list = if v.is_array() {
        format!("as.list({l})")
    } else {
        l
    };
    Ok(format!(
        "lapply({list}, function(x) if (is.null(x)) NA else x)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_bind_as_lists() {
        assert_eq!(params_literal(None).unwrap(), "NULL");
        assert_eq!(
            params_literal(Some(&json!(["a", 2]))).unwrap(),
            r#"lapply(as.list(list("a", 2.0)), function(x) if (is.null(x)) NA else x)"#
        );
        assert_eq!(
            params_literal(Some(&json!({"d": "2024-01-01"}))).unwrap(),
            r#"lapply(list(`d` = "2024-01-01"), function(x) if (is.null(x)) NA else x)"#
        );
        assert!(params_literal(Some(&json!("x"))).is_err());
        assert!(params_literal(Some(&json!([[1]]))).is_err());
    }

    #[test]
    fn calls_render_from_escaped_literals() {
        let write = HarnessCall::WriteFile {
            path: "a \"b\".csv".into(),
            content: b"x".to_vec(),
            overwrite: false,
        };
        assert_eq!(
            write.render().unwrap(),
            r#".rsession$write_file("a \"b\".csv", .rsession$take_upload(), overwrite = FALSE)"#
        );
        assert_eq!(write.upload(), Some(&b"x"[..]));
        let install = HarnessCall::InstallPackages {
            packages: vec!["dplyr".into(), "x\"); system(\"id".into()],
            repository: "file:///r".into(),
        };
        assert!(install.render().is_err());
        let help = HarnessCall::HelpText {
            topic: Some("mean".into()),
            package: None,
        };
        assert_eq!(
            help.render().unwrap(),
            r#".rsession_data$help_text("mean", NULL)"#
        );
        let read = HarnessCall::ReadFile {
            path: "../etc/passwd".into(),
            max_bytes: 10,
            offset: 0,
        };
        assert!(read.render().is_err());
    }
}
