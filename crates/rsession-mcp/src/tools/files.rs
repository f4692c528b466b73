//! Workspace file tools. All I/O goes through R (so remote Rserve hosts
//! work); paths are checked in Rust and again in R.

use base64::Engine;
use rmcp::model::{CallToolResult, ContentBlock};
use rserve::Sexp;
use serde_json::json;

use crate::errors::ToolError;
use crate::harness::HarnessCall;
use crate::session::SessionManager;
use crate::tools::params::{self, ContentEncoding};

fn column<'a>(s: &'a Sexp, name: &str) -> Result<&'a Sexp, ToolError> {
    s.get(name)
        .ok_or_else(|| ToolError::internal(format!("harness reply lacks {name}")))
}

pub(super) async fn list(
    manager: &SessionManager,
    owner: &str,
    p: params::ListFiles,
) -> Result<CallToolResult, ToolError> {
    let path = p.path.unwrap_or_else(|| ".".into());
    let call = HarnessCall::ListFiles {
        path: path.clone(),
        recursive: p.recursive.unwrap_or(false),
    };
    let reply = manager
        .call(owner, &p.session_id, call, None)
        .await?
        .into_value()?;
    let names = column(&reply, "name")?.as_strings().unwrap_or_default();
    let sizes = column(&reply, "size")?.as_f64s().unwrap_or_default();
    let dirs = column(&reply, "is_dir")?.as_bools().unwrap_or_default();
    let mtimes = column(&reply, "mtime")?.as_f64s().unwrap_or_default();
    let mut files = Vec::with_capacity(names.len());
    let mut text = format!(
        "{} entr{} in {path}:\n",
        names.len(),
        if names.len() == 1 { "y" } else { "ies" }
    );
    for (i, name) in names.iter().enumerate() {
        let name = name.clone().unwrap_or_default();
        let size = sizes
            .get(i)
            .copied()
            .filter(|s| s.is_finite())
            .unwrap_or(0.0) as u64;
        let is_dir = dirs.get(i).copied().flatten().unwrap_or(false);
        let modified = mtimes
            .get(i)
            .copied()
            .filter(|t| t.is_finite())
            .and_then(|t| jiff::Timestamp::from_second(t as i64).ok())
            .map(|t| t.to_string());
        text.push_str(&format!(
            "{}{}  {}\n",
            name,
            if is_dir { "/" } else { "" },
            if is_dir {
                "-".into()
            } else {
                format!("{size} bytes")
            }
        ));
        files.push(json!({"name": name, "size": size, "is_dir": is_dir, "modified": modified}));
    }
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(json!({"session_id": p.session_id, "path": path, "files": files}));
    Ok(r)
}

/// MIME type of common image formats, by signature.
fn image_mime(bytes: &[u8]) -> Option<&'static str> {
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

pub(super) async fn read(
    manager: &SessionManager,
    owner: &str,
    p: params::ReadFile,
) -> Result<CallToolResult, ToolError> {
    let call = HarnessCall::ReadFile {
        path: p.path.clone(),
        max_bytes: p.max_bytes.unwrap_or(u64::MAX),
    };
    let reply = manager
        .call(owner, &p.session_id, call, None)
        .await?
        .into_value()?;
    let bytes = column(&reply, "bytes")?.as_raw().unwrap_or_default();
    let size = column(&reply, "size")?
        .as_f64()
        .unwrap_or(bytes.len() as f64) as u64;
    let truncated = column(&reply, "truncated")?.as_bool().unwrap_or(false);
    let b64 = base64::engine::general_purpose::STANDARD;
    let note = if truncated {
        format!("\n[... file is {size} bytes; first {} shown]", bytes.len())
    } else {
        String::new()
    };
    let (content, structured) = match std::str::from_utf8(bytes) {
        Ok(text) => (
            vec![ContentBlock::text(format!("{text}{note}"))],
            json!({"session_id": p.session_id, "path": p.path, "size": size, "truncated": truncated, "encoding": "text", "content": text}),
        ),
        Err(_) => {
            let encoded = b64.encode(bytes);
            let mut content = vec![ContentBlock::text(format!(
                "{} is binary ({size} bytes); base64 content is in the structured result{note}",
                p.path
            ))];
            if let Some(mime) = image_mime(bytes).filter(|_| !truncated) {
                content.push(ContentBlock::image(encoded.clone(), mime));
            }
            (
                content,
                json!({"session_id": p.session_id, "path": p.path, "size": size, "truncated": truncated, "encoding": "base64", "content": encoded}),
            )
        }
    };
    let mut r = CallToolResult::success(content);
    r.structured_content = Some(structured);
    Ok(r)
}

pub(super) async fn write(
    manager: &SessionManager,
    owner: &str,
    p: params::WriteFile,
) -> Result<CallToolResult, ToolError> {
    let bytes = match p.encoding {
        ContentEncoding::Text => p.content.into_bytes(),
        ContentEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(p.content.trim())
            .map_err(|e| ToolError::invalid(format!("content is not valid base64: {e}")))?,
    };
    let written = bytes.len();
    let call = HarnessCall::WriteFile {
        path: p.path.clone(),
        content: bytes,
        overwrite: p.overwrite.unwrap_or(true),
    };
    let reply = manager
        .call(owner, &p.session_id, call, None)
        .await?
        .into_value()?;
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
