//! Who is calling, and may they: Kubernetes authentication and authorisation
//! for the HTTP transport.
//!
//! - [`require_bearer`] (an axum middleware on `/mcp`): `Authorization: Bearer
//!   <token>` is checked with a TokenReview (`authentication.k8s.io/v1`); a
//!   missing or invalid token gets HTTP 401 with `WWW-Authenticate: Bearer` and
//!   a JSON-RPC error body whose `error.data` is the tool error body
//!   `{code: "unauthorized", ...}`. A valid one puts a [`Caller`] into the
//!   request extensions, which rmcp hands to tools inside
//!   `http::request::Parts` (`RequestContext::extensions`).
//! - [`Caller::authorize`]: a SubjectAccessReview (`authorization.k8s.io/v1`)
//!   for the RSession verb of the tool (see [`TOOL_VERBS`]) in the
//!   sessions namespace; denied → tool error `forbidden`.
//! - stdio has no token: [`local_identity`] asks the apiserver who the
//!   kubeconfig's credentials are (SelfSubjectReview), falling back to
//!   `local`.
//!
//! TokenReview answers (valid and invalid) and SubjectAccessReview decisions
//! are cached for [`KubeAuthConfig::cache_ttl`] (default 60 s), at most
//! [`KubeAuthConfig::cache_capacity`] entries each, so a busy agent costs the
//! apiserver about one review per minute; a revoked token or RBAC change takes
//! effect within that time. Tokens are cached by their SHA-256, never stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{
    SelfSubjectReview, TokenReview, TokenReviewSpec, UserInfo,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use moka::future::Cache;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::errors::{ErrorCode, ToolError};

/// Owner of sessions when no identity is known (stdio without a cluster,
/// HTTP without auth).
pub const LOCAL_OWNER: &str = "local";

/// An authenticated caller, as the TokenReview reported it (`status.user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name, e.g. `system:serviceaccount:team-a:agent`; sessions are owned by it.
    pub username: String,
    /// User UID, if the authenticator gives one.
    pub uid: Option<String>,
    /// Groups, e.g. `system:serviceaccounts`.
    pub groups: Vec<String>,
    /// Extra attributes (e.g. `authentication.kubernetes.io/pod-name`).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    fn from_user_info(user: UserInfo) -> Option<Identity> {
        Some(Identity {
            username: user.username.filter(|u| !u.is_empty())?,
            uid: user.uid,
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        })
    }
}

/// The RSession verb a tool needs (RBAC on `rsessions.rsession.dev` in the
/// sessions namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `create_session`.
    Create,
    /// `list_sessions`.
    List,
    /// `close_session`.
    Delete,
    /// Every tool that uses an existing session (execute, files, packages, reset, data, help, paging).
    Get,
}

/// The RSession verb each tool needs in the sessions namespace
/// (SubjectAccessReview, `--auth kubernetes`). Every routed tool is listed
/// (a unit test in `tools` checks it against the router), so a new tool cannot silently get `get`.
pub const TOOL_VERBS: [(&str, Verb); 16] = [
    ("create_session", Verb::Create),
    ("list_sessions", Verb::List),
    ("close_session", Verb::Delete),
    ("reset_session", Verb::Get),
    ("checkpoint_session", Verb::Get),
    ("execute_in_session", Verb::Get),
    ("install_package", Verb::Get),
    ("list_session_files", Verb::Get),
    ("read_session_file", Verb::Get),
    ("write_session_file", Verb::Get),
    ("load_data", Verb::Get),
    ("query_data", Verb::Get),
    ("describe_data", Verb::Get),
    ("describe_database", Verb::Get),
    ("help", Verb::Get),
    ("read_output", Verb::Get),
];

impl Verb {
    /// The verb of `tool` in [`TOOL_VERBS`]. A name that is no tool gets
    /// `get` (the least right); the router then answers that the tool does
    /// not exist.
    pub fn for_tool(tool: &str) -> Verb {
        TOOL_VERBS
            .iter()
            .find(|(name, _)| *name == tool)
            .map_or(Verb::Get, |(_, verb)| *verb)
    }

    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::List => "list",
            Verb::Delete => "delete",
            Verb::Get => "get",
        }
    }
}

/// Settings of [`KubeAuth`].
#[derive(Debug, Clone)]
pub struct KubeAuthConfig {
    /// Namespace whose RSessions callers act on (the SubjectAccessReview namespace).
    pub namespace: String,
    /// Audiences the token must be meant for (`TokenReviewSpec.audiences`);
    /// empty means the apiserver's own audiences.
    pub audiences: Vec<String>,
    /// How long review answers are reused.
    pub cache_ttl: Duration,
    /// Most cached answers per cache.
    pub cache_capacity: u64,
}

impl KubeAuthConfig {
    /// Defaults for `namespace`: apiserver audiences, 60 s, 10 000 entries.
    pub fn new(namespace: impl Into<String>) -> Self {
        KubeAuthConfig {
            namespace: namespace.into(),
            audiences: Vec::new(),
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
        }
    }
}

/// Why a request could not be authenticated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// No bearer token, or the apiserver says it is not valid (HTTP 401).
    #[error("unauthorized: {0}")]
    Unauthenticated(String),
    /// The review could not be made (HTTP 503).
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// TokenReview and SubjectAccessReview against the apiserver, cached.
pub struct KubeAuth {
    tokens: Api<TokenReview>,
    access: Api<SubjectAccessReview>,
    config: KubeAuthConfig,
    /// SHA-256 of the token → identity, or `None` for a token the apiserver refused.
    token_cache: Cache<[u8; 32], Option<Identity>>,
    /// (user, groups, verb) → allowed.
    access_cache: Cache<(String, Vec<String>, Verb), bool>,
}

impl std::fmt::Debug for KubeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeAuth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubeAuth {
    /// Reviews made with `client` (its identity needs `create` on
    /// `tokenreviews` and `subjectaccessreviews`, e.g. `system:auth-delegator`).
    pub fn new(client: Client, config: KubeAuthConfig) -> Self {
        KubeAuth {
            tokens: Api::all(client.clone()),
            access: Api::all(client),
            token_cache: Cache::builder()
                .max_capacity(config.cache_capacity)
                .time_to_live(config.cache_ttl)
                .build(),
            access_cache: Cache::builder()
                .max_capacity(config.cache_capacity)
                .time_to_live(config.cache_ttl)
                .build(),
            config,
        }
    }

    /// The namespace authorisations are checked in.
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// Who `token` belongs to (TokenReview).
    ///
    /// Errors: [`AuthError::Unauthenticated`] when the apiserver does not
    /// accept it; [`AuthError::Unavailable`] when the review fails.
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let answer = self
            .token_cache
            .try_get_with(key, self.review_token(token))
            .await
            .map_err(|e: Arc<AuthError>| (*e).clone())?;
        answer.ok_or_else(|| {
            AuthError::Unauthenticated("the bearer token was not accepted by the cluster".into())
        })
    }

    async fn review_token(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.config.audiences.is_empty())
                    .then(|| self.config.audiences.clone()),
            },
            ..TokenReview::default()
        };
        let answer = self
            .tokens
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(format!("TokenReview failed: {e}")))?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            tracing::info!(
                error = status.error.as_deref().unwrap_or(""),
                "bearer token refused"
            );
            return Ok(None);
        }
        Ok(status.user.and_then(Identity::from_user_info))
    }

    /// Whether `who` may `verb` RSessions in the namespace (SubjectAccessReview).
    ///
    /// Errors: `forbidden` when denied; `backend_unavailable` when the review fails.
    pub async fn authorize(&self, who: &Identity, verb: Verb) -> Result<(), ToolError> {
        let key = (who.username.clone(), who.groups.clone(), verb);
        let allowed = self
            .access_cache
            .try_get_with(key, self.review_access(who, verb))
            .await
            .map_err(|e: Arc<ToolError>| (*e).clone())?;
        if allowed {
            Ok(())
        } else {
            Err(ToolError::new(
                ErrorCode::Forbidden,
                format!(
                    "{} may not {} RSessions in namespace {} (Kubernetes RBAC); ask an administrator for a Role granting it",
                    who.username,
                    verb.as_str(),
                    self.config.namespace
                ),
            )
            .with_details(json!({
                "user": who.username,
                "verb": verb.as_str(),
                "resource": "rsessions.rsession.dev",
                "namespace": self.config.namespace,
            })))
        }
    }

    async fn review_access(&self, who: &Identity, verb: Verb) -> Result<bool, ToolError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.username.clone()),
                uid: who.uid.clone(),
                groups: Some(who.groups.clone()),
                extra: (!who.extra.is_empty()).then(|| who.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(rsession_api::well_known::GROUP.to_string()),
                    resource: Some("rsessions".into()),
                    verb: Some(verb.as_str().into()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = self
            .access
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                ToolError::new(
                    ErrorCode::BackendUnavailable,
                    format!("SubjectAccessReview failed: {e}"),
                )
            })?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

/// The authenticated caller of one HTTP request, placed in the request
/// extensions by [`require_bearer`].
#[derive(Clone)]
pub struct Caller {
    /// Who it is.
    pub identity: Identity,
    auth: Arc<KubeAuth>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// Check that the caller may `verb` RSessions ([`KubeAuth::authorize`]).
    pub async fn authorize(&self, verb: Verb) -> Result<(), ToolError> {
        self.auth.authorize(&self.identity, verb).await
    }
}

fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// HTTP answer for a refused request: status, `WWW-Authenticate` on 401, and a
/// JSON-RPC 2.0 error object (id null) carrying the tool error body in `data`.
fn refusal(error: &AuthError) -> Response {
    let (status, code) = match error {
        AuthError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
        AuthError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::BackendUnavailable,
        ),
    };
    let message = match error {
        AuthError::Unauthenticated(m) | AuthError::Unavailable(m) => m.clone(),
    };
    let data = ToolError::new(code, message.clone()).body();
    let body = json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32001, "message": format!("{}: {message}", code.as_str()), "data": data},
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"rsession-mcp\""),
        );
    }
    response
}

/// Axum middleware: requests under `/mcp` need a bearer token the cluster
/// accepts; the [`Caller`] goes into the request extensions. Other paths
/// (`/healthz`, `/readyz`, `/metrics`) pass untouched.
pub async fn require_bearer(
    State(auth): State<Arc<KubeAuth>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !req.uri().path().starts_with("/mcp") {
        return next.run(req).await;
    }
    let Some(token) = bearer_token(&req) else {
        return refusal(&AuthError::Unauthenticated(
            "send Authorization: Bearer <token> (a Kubernetes service-account or user token)"
                .into(),
        ));
    };
    match auth.authenticate(token).await {
        Ok(identity) => {
            req.extensions_mut().insert(Caller {
                identity,
                auth: auth.clone(),
            });
            next.run(req).await
        }
        Err(e) => refusal(&e),
    }
}

/// `router` with [`require_bearer`] in front of `/mcp`.
pub fn layer(router: axum::Router, auth: Arc<KubeAuth>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(auth, require_bearer))
}

/// The caller of a tool call made over HTTP through [`require_bearer`], from
/// the rmcp request extensions (which hold the HTTP `Parts`).
pub fn caller_of(extensions: &rmcp::model::Extensions) -> Option<Caller> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
}

/// Who the kubeconfig's (or in-cluster) credentials of `client` are, for the
/// stdio transport: `status.userInfo.username` of a SelfSubjectReview
/// (`authentication.k8s.io/v1`), else `fallback` (the kubeconfig user name),
/// else [`LOCAL_OWNER`].
pub async fn local_identity(client: &Client, fallback: Option<&str>) -> String {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    match api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(review) => {
            if let Some(name) = review
                .status
                .and_then(|s| s.user_info)
                .and_then(|u| u.username)
                .filter(|u| !u.is_empty())
            {
                return name;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "SelfSubjectReview failed; using the kubeconfig user name")
        }
    }
    fallback
        .filter(|f| !f.is_empty())
        .unwrap_or(LOCAL_OWNER)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri("/mcp");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer_token(&request(Some("Bearer abc"))), Some("abc"));
        assert_eq!(bearer_token(&request(Some("bearer  abc "))), Some("abc"));
        assert_eq!(bearer_token(&request(Some("Basic abc"))), None);
        assert_eq!(bearer_token(&request(Some("Bearer "))), None);
        assert_eq!(bearer_token(&request(None)), None);
    }

    #[test]
    fn tools_map_to_rsession_verbs() {
        assert_eq!(Verb::for_tool("create_session"), Verb::Create);
        assert_eq!(Verb::for_tool("list_sessions"), Verb::List);
        assert_eq!(Verb::for_tool("close_session"), Verb::Delete);
        assert_eq!(Verb::for_tool("execute_in_session"), Verb::Get);
        assert_eq!(Verb::for_tool("read_session_file"), Verb::Get);
    }

    #[tokio::test]
    async fn refusals_are_401_with_a_json_rpc_body() {
        let r = refusal(&AuthError::Unauthenticated("no token".into()));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["error"]["data"]["code"], "unauthorized");
        let r = refusal(&AuthError::Unavailable("apiserver down".into()));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
