//! Tool arguments. Their doc comments become the tools' JSON Schema
//! (`inputSchema`, MCP spec 2025-06-18 "Tools" → "Tool"); unknown fields are
//! refused so a misspelt limit is not silently ignored.

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments naming one session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    /// Session id returned by `create_session`.
    pub session_id: String,
}

/// Arguments of `create_session` (none needed).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {}

/// Per-call limits; each is clamped to the server's maximum.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionLimits {
    /// Wall-clock deadline in seconds. At the deadline R is interrupted
    /// (state kept, `execution_timeout`); if it does not stop within a short
    /// grace period it is killed (`session_lost`).
    pub max_duration_secs: Option<f64>,
    /// Bytes of text output to return; beyond it the head and the tail are
    /// kept and the result is flagged `truncated`.
    pub max_output_bytes: Option<u64>,
}

/// Arguments of `execute_in_session`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Execute {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// R code: one or more top-level expressions, run in order in the
    /// session's global environment (state persists across calls).
    pub code: String,
    /// Optional limits for this call.
    #[serde(default)]
    pub limits: Option<ExecutionLimits>,
}

/// Arguments of `list_session_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFiles {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// Directory relative to the workspace (default: the workspace itself).
    #[serde(default)]
    pub path: Option<String>,
    /// List subdirectories too (default false).
    #[serde(default)]
    pub recursive: Option<bool>,
}

/// Arguments of `read_session_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFile {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// File path relative to the workspace.
    pub path: String,
    /// Read at most this many bytes (clamped to the server maximum).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// How `write_session_file` content is encoded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContentEncoding {
    /// UTF-8 text, written as is.
    #[default]
    Text,
    /// Base64 (RFC 4648, standard alphabet) of the bytes to write.
    Base64,
}

/// Arguments of `write_session_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// File path relative to the workspace; missing parent directories are created.
    pub path: String,
    /// The content.
    pub content: String,
    /// `text` (default) or `base64`.
    #[serde(default)]
    pub encoding: ContentEncoding,
    /// Replace an existing file (default true).
    #[serde(default)]
    pub overwrite: Option<bool>,
}

/// Arguments of `install_package`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallPackage {
    /// Session id returned by `create_session`.
    pub session_id: String,
    /// One package name, e.g. `"janitor"`.
    #[serde(default)]
    pub package: Option<String>,
    /// Several package names.
    #[serde(default)]
    pub packages: Option<Vec<String>>,
}
