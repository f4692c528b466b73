//! The audit trail: one structured event per tool call, on a log stream of
//! its own, so a data partner can answer afterwards which code an agent ran
//! on their data.
//!
//! Each event is a JSON line (tracing-subscriber's JSON format, fields
//! flattened, target `audit`): `timestamp`, `caller` (the authenticated
//! identity; `local` over stdio), `session_id`, `tool`, `code_sha256` and
//! `code` (the R code, SQL, file path or package names the call carried;
//! with `--audit-code hash` only the hash), `status` (`ok`, the R status such
//! as `error`, or the tool error code), `duration_ms`, `output_bytes` (the
//! JSON size of the result) and `truncated`. Where the events go is
//! `--audit-log` (see [`AuditLog`]); `main.rs` wires the stream.

use std::sync::OnceLock;
use std::time::Duration;

use rmcp::model::{CallToolResult, JsonObject};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::errors::ToolError;

/// Where audit events are written (`--audit-log`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLog {
    /// Standard error, beside the logs (the default over stdio).
    Stderr,
    /// Standard output (HTTP only: over stdio it carries MCP).
    Stdout,
    /// Appended to this file.
    File(std::path::PathBuf),
    /// Not written.
    Off,
}

impl std::str::FromStr for AuditLog {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "stderr" => AuditLog::Stderr,
            "stdout" => AuditLog::Stdout,
            "off" => AuditLog::Off,
            "" => return Err("empty --audit-log".into()),
            path => AuditLog::File(path.into()),
        })
    }
}

/// How much of the code an event carries (`--audit-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditCode {
    /// The code and its SHA-256.
    Full,
    /// Only the SHA-256 (the code may hold data the log must not).
    Hash,
}

static CODE_MODE: OnceLock<AuditCode> = OnceLock::new();

/// Set how much code events carry; the first call wins (at start).
pub fn configure(mode: AuditCode) {
    let _ = CODE_MODE.set(mode);
}

/// The tracing target of audit events.
pub const TARGET: &str = "audit";

/// What a tool call carried that ran in R or SQL: the code, SQL, file path
/// or package names, in that order of preference.
fn carried(args: &JsonObject) -> Option<String> {
    for key in ["code", "sql", "file_path", "path"] {
        if let Some(Value::String(s)) = args.get(key) {
            return Some(s.clone());
        }
    }
    let mut packages: Vec<String> = Vec::new();
    if let Some(Value::String(p)) = args.get("package") {
        packages.push(p.clone());
    }
    if let Some(Value::Array(ps)) = args.get("packages") {
        packages.extend(ps.iter().filter_map(|p| p.as_str().map(String::from)));
    }
    (!packages.is_empty()).then(|| packages.join(" "))
}

/// Record one tool call by `caller` with arguments `args` that took
/// `elapsed` and ended in `result`: the result with its JSON size in bytes
/// (measured when it was fitted to the result limit, `tools::pages::fit`),
/// or the tool error.
pub fn record(
    caller: &str,
    tool: &str,
    args: &JsonObject,
    elapsed: Duration,
    result: Result<(&CallToolResult, usize), &ToolError>,
) {
    let session_id = args.get("session_id").and_then(Value::as_str).unwrap_or("");
    let code = carried(args).unwrap_or_default();
    let sha = if code.is_empty() {
        String::new()
    } else {
        hex::encode(Sha256::digest(code.as_bytes()))
    };
    let code = match CODE_MODE.get().copied().unwrap_or(AuditCode::Full) {
        AuditCode::Full => code,
        AuditCode::Hash => String::new(),
    };
    let (status, output_bytes, truncated) = match result {
        Ok((r, bytes)) => {
            let s = r.structured_content.as_ref();
            let status = s
                .and_then(|v| v.get("status"))
                .and_then(Value::as_str)
                .unwrap_or(if r.is_error == Some(true) {
                    "error"
                } else {
                    "ok"
                })
                .to_string();
            let truncated = s
                .and_then(|v| v.get("truncated"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            (status, bytes, truncated)
        }
        Err(e) => (e.code.as_str().to_string(), 0, false),
    };
    tracing::info!(
        target: TARGET,
        caller,
        session_id,
        tool,
        code_sha256 = sha,
        code,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        output_bytes,
        truncated,
        "tool call"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> JsonObject {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn the_carried_code_is_the_code_sql_path_or_packages() {
        assert_eq!(
            carried(&obj(serde_json::json!({"code": "1+1", "session_id": "s"}))).as_deref(),
            Some("1+1")
        );
        assert_eq!(
            carried(&obj(serde_json::json!({"sql": "SELECT 1"}))).as_deref(),
            Some("SELECT 1")
        );
        assert_eq!(
            carried(&obj(serde_json::json!({"file_path": "a.csv"}))).as_deref(),
            Some("a.csv")
        );
        assert_eq!(
            carried(&obj(serde_json::json!({"package": "a", "packages": ["b"]}))).as_deref(),
            Some("a b")
        );
        assert_eq!(carried(&obj(serde_json::json!({"session_id": "s"}))), None);
    }

    #[test]
    fn audit_destinations_parse() {
        assert_eq!("off".parse::<AuditLog>().unwrap(), AuditLog::Off);
        assert_eq!("stdout".parse::<AuditLog>().unwrap(), AuditLog::Stdout);
        assert_eq!(
            "/var/log/a.jsonl".parse::<AuditLog>().unwrap(),
            AuditLog::File("/var/log/a.jsonl".into())
        );
    }
}
