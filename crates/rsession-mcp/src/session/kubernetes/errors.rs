//! Kubernetes API failures as tool errors, and the owner label that keeps
//! callers apart.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::errors::{ErrorCode, ToolError};

/// Value of the [`super::LABEL_OWNER`] label for a caller: `u-` and the first 48 hex
/// digits of SHA-256 of the user name. A label value holds at most 63
/// characters from a small alphabet, so user names such as
/// `system:serviceaccount:team-a:agent` cannot be stored as they are, and a
/// hash (unlike replacing characters) cannot make two callers collide.
pub fn owner_label_value(owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    let hex: String = digest.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("u-{hex}")
}

/// The tool error code of a Kubernetes API failure.
///
/// - `backend_unavailable` (retryable): the apiserver cannot be reached or
///   cannot answer now — transport errors (connection refused or reset, DNS,
///   TLS handshake, connect/read timeouts: [`kube::Error::Service`],
///   [`kube::Error::HyperError`], [`kube::Error::ReadEvents`]), HTTP 401 (this
///   server's token is rotated and re-read), 408, 409, 429 and 5xx, and
///   failures getting this server's own credentials ([`kube::Error::Auth`]).
/// - `forbidden`: 403, this server's service account lacks an RBAC right.
/// - `session_not_found`: 404.
/// - `invalid_argument`: 400 and 422, the object was refused.
/// - `internal`: anything else (an undecodable answer, a request that could
///   not be built, a client misconfiguration): retrying cannot help.
pub fn api_error_code(e: &kube::Error) -> ErrorCode {
    match e {
        kube::Error::Api(s) => match s.code {
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::SessionNotFound,
            400 | 422 => ErrorCode::InvalidArgument,
            401 | 408 | 409 | 429 | 500..=599 => ErrorCode::BackendUnavailable,
            _ => ErrorCode::Internal,
        },
        kube::Error::Service(_)
        | kube::Error::HyperError(_)
        | kube::Error::ReadEvents(_)
        | kube::Error::Auth(_) => ErrorCode::BackendUnavailable,
        _ => ErrorCode::Internal,
    }
}

/// Map an API failure while trying to `what` (e.g. `"create RSessions"`) to a
/// tool error coded by [`api_error_code`]; `details.http_status` carries the
/// apiserver's status code when it answered.
pub(super) fn api_error(what: &str, e: &kube::Error) -> ToolError {
    let code = api_error_code(e);
    let answer = match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    };
    let message = match code {
        ErrorCode::Forbidden => {
            format!("the MCP server's service account may not {what}: {answer}")
        }
        ErrorCode::SessionNotFound => format!(
            "the Kubernetes API found nothing to {what} ({answer}); the session, or the RSession resource type, does not exist"
        ),
        ErrorCode::InvalidArgument => format!("the Kubernetes API refused to {what}: {answer}"),
        ErrorCode::BackendUnavailable => format!(
            "the Kubernetes API is unavailable, so this server could not {what}: {answer}. Retry shortly."
        ),
        _ => format!("trying to {what} failed unexpectedly: {e}"),
    };
    let details = match e {
        kube::Error::Api(s) => json!({"http_status": s.code}),
        _ => json!({}),
    };
    ToolError::new(code, message).with_details(details)
}

pub(super) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
