//! Workspace files as MCP resources (MCP spec 2025-06-18, "Server Features"
//! → "Resources"): `resources/list` names every file in the caller's
//! connected, idle sessions; `resources/read` reads one by its URI
//! `rsession://sessions/{session_id}/files/{path}` (the template that
//! `resources/templates/list` gives). The same owner check and path rules as
//! the file tools apply (the harness resolves the path); a file too large
//! for one result is refused with a pointer to `read_session_file`.

use base64::Engine;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use rmcp::ErrorData;
use rmcp::model::{
    ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
};
use rserve::Sexp;
use serde_json::json;

use super::Call;
use super::files::{FilePart, entries, image_mime};
use crate::errors::{ErrorCode, ToolError};
use crate::harness::HarnessCall;

/// RFC 6570 template of a workspace file's URI (`{+path}`: slashes kept).
pub const TEMPLATE: &str = "rsession://sessions/{session_id}/files/{+path}";

const SCHEME_PREFIX: &str = "rsession://sessions/";

/// Most resources one `resources/list` names (over all sessions).
const MAX_LISTED: usize = 1000;

/// Bytes a `resources/read` result spends on other than the file.
const ENVELOPE_BYTES: usize = 8 << 10;

/// Characters escaped in the path part of a URI: controls, space and what
/// URIs reserve, except `/` (RFC 3986 section 2).
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'[')
    .add(b']');

/// The URI of `path` (relative to the workspace) in session `session_id`.
pub fn uri(session_id: &str, path: &str) -> String {
    format!(
        "{SCHEME_PREFIX}{session_id}/files/{}",
        utf8_percent_encode(path, PATH_ESCAPES)
    )
}

/// `(session_id, path)` of a workspace-file URI.
///
/// Errors: `invalid_argument` for any other URI.
pub fn parse(uri: &str) -> Result<(String, String), ToolError> {
    let bad = || ToolError::invalid(format!("{uri:?} is not a workspace file URI ({TEMPLATE})"));
    let rest = uri.strip_prefix(SCHEME_PREFIX).ok_or_else(bad)?;
    let (session_id, path) = rest.split_once("/files/").ok_or_else(bad)?;
    if session_id.is_empty() || session_id.contains('/') || path.is_empty() {
        return Err(bad());
    }
    let path = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| bad())?
        .into_owned();
    Ok((session_id.to_string(), path))
}

/// The one resource template.
pub fn template() -> ResourceTemplate {
    ResourceTemplate::new(TEMPLATE, "workspace-file")
        .with_title("A file in a session workspace")
        .with_description(
            "A file in one of your R sessions' workspaces, by session_id and path relative to \
             the workspace (the same paths as read_session_file).",
        )
}

/// A tool error as a JSON-RPC error (resources have no `isError` result):
/// the code mapped to the nearest JSON-RPC code, the tool error's body
/// `{code, message, retryable, details}` as data.
pub fn rpc_error(e: ToolError) -> ErrorData {
    let data = Some(e.body());
    match e.code {
        ErrorCode::SessionNotFound => ErrorData::resource_not_found(e.message, data),
        ErrorCode::InvalidArgument => ErrorData::invalid_params(e.message, data),
        _ => ErrorData::internal_error(e.message, data),
    }
}

/// Every file (not directory) in the caller's sessions that have a live,
/// idle R, up to [`MAX_LISTED`]. A session that cannot list now (busy,
/// lost) is left out rather than failing the whole list.
pub async fn list(call: &Call) -> Result<ListResourcesResult, ErrorData> {
    let sessions = call.manager.list(&call.owner).await.map_err(rpc_error)?;
    let mut resources = Vec::new();
    for s in sessions.iter().filter(|s| s.connected && !s.busy) {
        let listing = HarnessCall::ListFiles {
            path: ".".into(),
            recursive: true,
        };
        let reply: Sexp = match call.harness(&s.session_id, listing, None).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(session_id = %s.session_id, error = %e, "not listed as resources");
                continue;
            }
        };
        let files = entries(&reply).map_err(rpc_error)?;
        for f in files.into_iter().filter(|f| !f.is_dir) {
            if resources.len() == MAX_LISTED {
                break;
            }
            let uri = uri(&s.session_id, &f.name);
            resources.push(
                Resource::new(uri, f.name.clone())
                    .with_title(format!("{} (session {})", f.name, s.session_id))
                    .with_size(f.size),
            );
        }
    }
    Ok(ListResourcesResult::with_all_items(resources))
}

/// The file at `uri`: text (UTF-8) or a base64 blob with its image MIME
/// type when it is one.
///
/// Errors (JSON-RPC): resource not found (no such session of the caller's),
/// invalid params (not a workspace URI, a path leaving the workspace, a
/// missing file, a file larger than one result may be), internal.
pub async fn read(call: &Call, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let (session_id, path) = parse(uri).map_err(rpc_error)?;
    let limit = call.pager.config().max_result_bytes;
    let harness_call = HarnessCall::ReadFile {
        path: path.clone(),
        max_bytes: limit as u64,
        offset: 0,
    };
    let reply: Sexp = call
        .harness(&session_id, harness_call, None)
        .await
        .map_err(rpc_error)?;
    let FilePart { bytes, size, .. } = FilePart::of(&reply).map_err(rpc_error)?;
    let text = std::str::from_utf8(bytes).ok();
    let budget = match text {
        Some(_) => limit - ENVELOPE_BYTES,
        None => (limit - ENVELOPE_BYTES) * 3 / 4,
    };
    if size > budget as u64 {
        return Err(ErrorData::invalid_params(
            format!(
                "{path} is {size} bytes, more than one resources/read returns here ({} KiB); \
                 read it with the read_session_file tool (long text is paged, binary comes in parts)",
                budget >> 10
            ),
            Some(json!({"session_id": session_id, "path": path, "size": size})),
        ));
    }
    let contents = match text {
        Some(text) => ResourceContents::text(text, uri),
        None => {
            let blob = base64::engine::general_purpose::STANDARD.encode(bytes);
            let mime = image_mime(bytes).unwrap_or("application/octet-stream");
            ResourceContents::blob(blob, uri).with_mime_type(mime)
        }
    };
    Ok(ReadResourceResult::new(vec![contents]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip_with_escaped_paths() {
        let u = uri("rs-1a2b", "data/my file #1.csv");
        assert_eq!(
            u,
            "rsession://sessions/rs-1a2b/files/data/my%20file%20%231.csv"
        );
        assert_eq!(
            parse(&u).unwrap(),
            ("rs-1a2b".to_string(), "data/my file #1.csv".to_string())
        );
    }

    #[test]
    fn other_uris_are_invalid_arguments() {
        for bad in [
            "file:///etc/passwd",
            "rsession://sessions/rs-1/other/x",
            "rsession://sessions//files/x",
            "rsession://sessions/rs-1/files/",
            "rsession://sessions/a/b/files/x",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad}");
        }
    }
}
