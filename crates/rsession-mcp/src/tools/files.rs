//! Workspace file tools: `list_session_files`, `read_session_file`,
//! `write_session_file`. All I/O goes through R (so remote Rserve hosts
//! work); paths are checked in Rust and again in R.

use base64::Engine;
use rmcp::handler::server::router::tool::ToolRoute;
use rmcp::model::{CallToolResult, ContentBlock};
use rserve::Sexp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{Call, Hints, Paging, RSessionServer, ToolDef, tool};
use crate::errors::ToolError;
use crate::harness::HarnessCall;

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
    /// Byte offset to start at (default 0): a large binary file comes back
    /// in parts, each result naming the `next_offset`.
    #[serde(default)]
    pub offset: Option<u64>,
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

/// The tools of this group (see [`super::tool`]).
pub(super) fn routes() -> Vec<ToolRoute<RSessionServer>> {
    vec![
        tool(&LIST_SESSION_FILES, list),
        tool(&READ_SESSION_FILE, read),
        tool(&WRITE_SESSION_FILE, write),
    ]
}

/// `list_session_files`: list workspace files.
const LIST_SESSION_FILES: ToolDef = ToolDef {
    name: "list_session_files",
    title: "List workspace files",
    description: "List files in the session workspace (or a subdirectory of it): name, size in bytes, directory flag, modification time.",
    hints: Hints::READ_ONLY,
    paging: Paging::Whole,
    task: false,
};

/// `read_session_file`: read a workspace file.
const READ_SESSION_FILE: ToolDef = ToolDef {
    name: "read_session_file",
    title: "Read a workspace file",
    description: "Read a file from the session workspace. UTF-8 files come back as text (a long one as page 1 plus a read_output handle), other files as base64 (images also as image content), a large binary file in parts (offset; each result names next_offset). Paths are relative to the workspace; '..', absolute paths and symlinks leading out are refused.",
    hints: Hints::READ_ONLY,
    paging: Paging::Paged,
    task: false,
};

/// `write_session_file`: write a workspace file.
const WRITE_SESSION_FILE: ToolDef = ToolDef {
    name: "write_session_file",
    title: "Write a workspace file",
    description: "Write a file into the session workspace (text, or base64 with encoding=\"base64\"); parent directories are created. Paths are relative to the workspace.",
    // Overwrites an existing file unless `overwrite` is false.
    hints: Hints {
        idempotent: true,
        ..Hints::DESTRUCTIVE
    },
    paging: Paging::Whole,
    task: false,
};

fn column<'a>(s: &'a Sexp, name: &str) -> Result<&'a Sexp, ToolError> {
    s.get(name)
        .ok_or_else(|| ToolError::internal(format!("harness reply lacks {name}")))
}

/// One entry of a workspace listing (`.rsession$list_files()`).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Entry {
    /// Path relative to the listed directory.
    pub name: String,
    /// Bytes (0 for a directory).
    pub size: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Modification time, RFC 3339.
    pub modified: Option<String>,
}

/// The entries of a `.rsession$list_files()` reply.
pub(super) fn entries(reply: &Sexp) -> Result<Vec<Entry>, ToolError> {
    let names = column(reply, "name")?.as_strings().unwrap_or_default();
    let sizes = column(reply, "size")?.as_f64s().unwrap_or_default();
    let dirs = column(reply, "is_dir")?.as_bools().unwrap_or_default();
    let mtimes = column(reply, "mtime")?.as_f64s().unwrap_or_default();
    let finite = |v: Option<&f64>| v.copied().filter(|x| x.is_finite());
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, name)| Entry {
            name: name.clone().unwrap_or_default(),
            size: finite(sizes.get(i)).unwrap_or(0.0) as u64,
            is_dir: dirs.get(i).copied().flatten().unwrap_or(false),
            modified: finite(mtimes.get(i))
                .and_then(|t| jiff::Timestamp::from_second(t as i64).ok())
                .map(|t| t.to_string()),
        })
        .collect())
}

async fn list(call: Call, p: ListFiles) -> Result<CallToolResult, ToolError> {
    let path = p.path.unwrap_or_else(|| ".".into());
    let harness_call = HarnessCall::ListFiles {
        path: path.clone(),
        recursive: p.recursive.unwrap_or(false),
    };
    let reply: Sexp = call.harness(&p.session_id, harness_call, None).await?;
    let files = entries(&reply)?;
    let mut text = format!(
        "{} entr{} in {path}:\n",
        files.len(),
        if files.len() == 1 { "y" } else { "ies" }
    );
    for f in &files {
        if f.is_dir {
            text.push_str(&format!("{}/  -\n", f.name));
        } else {
            text.push_str(&format!("{}  {} bytes\n", f.name, f.size));
        }
    }
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(json!({"session_id": p.session_id, "path": path, "files": files}));
    Ok(r)
}

/// What `.rsession$read_file()` answers: `bytes` read from `offset` of a
/// file of `size` bytes.
pub(super) struct FilePart<'a> {
    pub bytes: &'a [u8],
    pub size: u64,
    pub offset: u64,
}

impl<'a> FilePart<'a> {
    /// The part in a read_file `reply`; `internal` when a field is missing.
    pub fn of(reply: &'a Sexp) -> Result<Self, ToolError> {
        let number = |name: &str| column(reply, name).map(|v| v.as_f64().unwrap_or(0.0) as u64);
        Ok(FilePart {
            bytes: column(reply, "bytes")?.as_raw().unwrap_or_default(),
            size: number("size")?,
            offset: number("offset")?,
        })
    }
}

/// MIME type of common image formats, by signature.
pub(super) fn image_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF8") {
        Some("image/gif")
    } else {
        None
    }
}

async fn read(call: Call, p: ReadFile) -> Result<CallToolResult, ToolError> {
    let harness_call = HarnessCall::ReadFile {
        path: p.path.clone(),
        max_bytes: p.max_bytes.unwrap_or(u64::MAX),
        offset: p.offset.unwrap_or(0),
    };
    let reply: Sexp = call.harness(&p.session_id, harness_call, None).await?;
    let FilePart {
        mut bytes,
        size,
        offset,
    } = FilePart::of(&reply)?;
    // Text is paged (Paging::Paged); binary goes out as base64, in the
    // content and (for images) as an image block, so a part is cut to what
    // fits the result limit twice over.
    let binary = std::str::from_utf8(bytes).is_err();
    let fits = (call.pager.config().max_result_bytes.saturating_sub(8 << 10)) * 3 / 8;
    if binary && bytes.len() > fits {
        bytes = &bytes[..fits];
    }
    let end = offset + bytes.len() as u64;
    let truncated = end < size;
    let note = if truncated {
        format!(
            "\n[... file is {size} bytes; bytes {offset}..{end} shown; read on with offset = {end}]"
        )
    } else {
        String::new()
    };
    let mut structured = json!({"session_id": p.session_id, "path": p.path, "size": size,
        "offset": offset, "truncated": truncated});
    if truncated {
        structured["next_offset"] = json!(end);
    }
    let content = match std::str::from_utf8(bytes) {
        Ok(text) => {
            structured["encoding"] = json!("text");
            structured["content"] = json!(text);
            vec![ContentBlock::text(format!("{text}{note}"))]
        }
        Err(_) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
            let mut content = vec![ContentBlock::text(format!(
                "{} is binary ({size} bytes); base64 content is in the structured result{note}",
                p.path
            ))];
            if let Some(mime) = image_mime(bytes).filter(|_| !truncated && offset == 0) {
                content.push(ContentBlock::image(encoded.clone(), mime));
            }
            structured["encoding"] = json!("base64");
            structured["content"] = json!(encoded);
            content
        }
    };
    let mut r = CallToolResult::success(content);
    r.structured_content = Some(structured);
    Ok(r)
}

async fn write(call: Call, p: WriteFile) -> Result<CallToolResult, ToolError> {
    let bytes = match p.encoding {
        ContentEncoding::Text => p.content.into_bytes(),
        ContentEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(p.content.trim())
            .map_err(|e| ToolError::invalid(format!("content is not valid base64: {e}")))?,
    };
    let written = bytes.len();
    let harness_call = HarnessCall::WriteFile {
        path: p.path.clone(),
        content: bytes,
        overwrite: p.overwrite.unwrap_or(true),
    };
    let reply: Sexp = call.harness(&p.session_id, harness_call, None).await?;
    let size = reply
        .get("size")
        .and_then(Sexp::as_f64)
        .unwrap_or(written as f64) as u64;
    let mut r = CallToolResult::success(vec![ContentBlock::text(format!(
        "Wrote {size} bytes to {}.",
        p.path
    ))]);
    r.structured_content = Some(json!({"session_id": p.session_id, "path": p.path, "size": size}));
    Ok(r)
}
