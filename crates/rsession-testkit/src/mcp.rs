//! A real MCP client (rmcp) for tests: connect over stdio or streamable HTTP, call a tool,
//! read its result. Functions return `Result`; the `expect_*` ones panic, for tests that
//! want a failed step to fail the test at once.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    Implementation, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{
    ClientInitializeError, NotificationContext, Peer, RunningService, ServiceError,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::TokioChildProcess;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::Value;

/// An MCP client whose handler records what the server notifies.
pub type Client = RunningService<RoleClient, Recorder>;

/// A client handler that keeps every progress notification (MCP
/// `notifications/progress`) it receives, in order.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    /// Declare the tasks extension (`io.modelcontextprotocol/tasks`), so
    /// the server may answer long tool calls with a task.
    tasks: bool,
    /// The protocol revision to speak; rmcp's latest (2026-07-28,
    /// `server/discover`) when unset.
    revision: Option<ProtocolVersion>,
}

impl Recorder {
    /// A recorder whose client speaks protocol `revision` (for example
    /// 2025-11-25, the `initialize` handshake).
    pub fn at_revision(revision: ProtocolVersion) -> Self {
        Recorder {
            revision: Some(revision),
            ..Recorder::default()
        }
    }

    /// A recorder whose client declares the tasks extension.
    pub fn declaring_tasks() -> Self {
        Recorder {
            tasks: true,
            ..Recorder::default()
        }
    }

    /// The progress notifications received so far.
    pub fn progress(&self) -> Vec<ProgressNotificationParam> {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(params);
    }

    fn get_info(&self) -> ClientConfig {
        let mut config = if self.tasks {
            ClientConfig::new(
                ClientCapabilities::builder().enable_tasks().build(),
                Implementation::from_build_env(),
            )
        } else {
            ClientConfig::default()
        };
        if let Some(revision) = &self.revision {
            config.protocol_version = revision.clone();
        }
        config
    }
}

/// Why a client step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MCP `initialize` exchange with `target` (a URL, or `stdio`) failed, e.g. HTTP 401.
    #[error("MCP initialize at {target}: {reason}")]
    Initialize {
        /// The URL or `stdio`.
        target: String,
        /// What rmcp reported (in the message, so `{}` shows e.g. an HTTP 401).
        reason: Box<ClientInitializeError>,
    },
    /// The server process could not be spawned.
    #[error("spawning the MCP server: {0}")]
    Spawn(std::io::Error),
    /// `tools/call` of `tool` failed at the protocol level (not a tool error result).
    #[error("{tool}: {reason}")]
    Call {
        /// The tool name.
        tool: String,
        /// What rmcp reported.
        reason: ServiceError,
    },
    /// The TokenRequest API refused, or answered without a token.
    #[error("TokenRequest for {account}: {message}")]
    Token {
        /// `namespace/name` of the service account.
        account: String,
        /// What went wrong.
        message: String,
    },
}

/// Connects rmcp's streamable-HTTP client to `url` (the server's `/mcp`), with `token` as
/// bearer token when given.
///
/// # Errors
/// [`Error::Initialize`] when the server refuses or does not answer `initialize`.
pub async fn connect_http(url: &str, token: Option<&str>) -> Result<Client, Error> {
    connect_http_with(Recorder::default(), url, token).await
}

/// [`connect_http`] with `handler` as the client's handler (for example one that records
/// progress notifications).
///
/// # Errors
/// [`Error::Initialize`] when the server refuses or does not answer `initialize`.
pub async fn connect_http_with<H: ClientHandler>(
    handler: H,
    url: &str,
    token: Option<&str>,
) -> Result<RunningService<RoleClient, H>, Error> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(t) = token {
        config = config.auth_header(t.to_string());
    }
    handler
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .map_err(|reason| Error::Initialize {
            target: url.to_string(),
            reason: Box::new(reason),
        })
}

/// Spawns `command` (an MCP server speaking stdio; its stderr goes to the test's stderr) and
/// connects rmcp's client to it. Returns the client and the server's process id.
///
/// # Errors
/// [`Error::Spawn`] when the process does not start, [`Error::Initialize`] when it does not
/// answer `initialize`.
pub async fn connect_stdio(command: tokio::process::Command) -> Result<(Client, u32), Error> {
    connect_stdio_with(Recorder::default(), command).await
}

/// [`connect_stdio`] with `handler` as the client's handler (for example one
/// that declares the tasks extension).
///
/// # Errors
/// As [`connect_stdio`].
pub async fn connect_stdio_with(
    handler: Recorder,
    command: tokio::process::Command,
) -> Result<(Client, u32), Error> {
    let (transport, _stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(Error::Spawn)?;
    let pid = transport
        .id()
        .ok_or_else(|| Error::Spawn(std::io::Error::other("the server exited at once")))?;
    let client = handler
        .serve(transport)
        .await
        .map_err(|reason| Error::Initialize {
            target: "stdio".into(),
            reason: Box::new(reason),
        })?;
    Ok((client, pid))
}

/// Calls `tool` with `args` (a JSON object; anything else means no arguments). A tool error
/// is a result with `isError: true`, not an `Err`. (rmcp puts a progress token of its own into
/// every request's `_meta`, so progress notifications always flow.)
///
/// # Errors
/// [`Error::Call`] when the call fails at the protocol level.
pub async fn call(
    client: &Peer<RoleClient>,
    tool: &str,
    args: Value,
) -> Result<CallToolResult, Error> {
    let params = CallToolRequestParams::new(tool.to_string())
        .with_arguments(args.as_object().cloned().unwrap_or_default());
    client
        .call_tool(params)
        .await
        .map_err(|reason| Error::Call {
            tool: tool.to_string(),
            reason,
        })
}

/// [`call`] that panics on a protocol-level failure.
///
/// # Panics
/// When [`call`] fails.
pub async fn expect_call(client: &Peer<RoleClient>, tool: &str, args: Value) -> CallToolResult {
    call(client, tool, args)
        .await
        .unwrap_or_else(|e| panic!("tools/call failed at the protocol level: {e}"))
}

/// The text contents of a result, joined by `separator`.
pub fn text_joined(r: &CallToolResult, separator: &str) -> String {
    r.content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(separator)
}

/// The text contents of a result, joined by newlines.
pub fn text(r: &CallToolResult) -> String {
    text_joined(r, "\n")
}

/// The image contents of a result as (MIME type, base64 data), in order.
pub fn images(r: &CallToolResult) -> Vec<(String, String)> {
    r.content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Image(i) => Some((i.mime_type.clone(), i.data.clone())),
            _ => None,
        })
        .collect()
}

/// The structured content of a result, or `Value::Null` when it has none (tool errors carry
/// `{code, message, retryable, details}` there).
pub fn structured(r: &CallToolResult) -> Value {
    r.structured_content.clone().unwrap_or(Value::Null)
}

/// The structured content of a result.
///
/// # Panics
/// When the result has no structured content.
pub fn expect_structured(r: &CallToolResult) -> &Value {
    r.structured_content.as_ref().expect("structured content")
}

/// Field `field` of the structured content of a result, if both exist.
pub fn structured_field(r: &CallToolResult, field: &str) -> Option<Value> {
    r.structured_content.as_ref()?.get(field).cloned()
}

/// The error code of a result with `isError: true` (`?` when its structured content has
/// none), or `None` for a successful result.
pub fn error_code(r: &CallToolResult) -> Option<String> {
    (r.is_error == Some(true)).then(|| {
        structured_field(r, "code")
            .and_then(|c| c.as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    })
}

/// The error code of a result that must be a tool error.
///
/// # Panics
/// When the result is not an error or has no structured `code`.
pub fn expect_error_code(r: &CallToolResult) -> String {
    assert_eq!(
        r.is_error,
        Some(true),
        "expected an error result, got {r:?}"
    );
    expect_structured(r)["code"]
        .as_str()
        .expect("code")
        .to_string()
}

/// The user name the apiserver gives service account `namespace/name`
/// (`system:serviceaccount:<namespace>:<name>`).
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A fresh token of service account `namespace/name` from the TokenRequest API: the
/// apiserver's own audience, valid for 3600 seconds.
///
/// # Errors
/// [`Error::Token`] when the request fails or the answer has no token.
pub async fn service_account_token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<String, Error> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let failed = |message: String| Error::Token {
        account: format!("{namespace}/{name}"),
        message,
    };
    accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|e| failed(e.to_string()))?
        .status
        .map(|s| s.token)
        .ok_or_else(|| failed("answer without a token".into()))
}
