//! The HTTP transport: MCP streamable HTTP at `/mcp` (MCP spec 2025-06-18,
//! "Transports" → "Streamable HTTP", served by rmcp's `StreamableHttpService`)
//! and operational endpoints `/healthz` (process up), `/readyz` (backend can
//! take sessions) and `/metrics` (Prometheus text format).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::{Listener, ListenerExt};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::pager::PagerConfig;
use crate::session::SessionManager;
use crate::tools::RSessionServer;

#[derive(Clone)]
struct Ops {
    manager: Arc<SessionManager>,
    metrics: Arc<Metrics>,
}

/// The axum router over `manager` with the default paging of long output
/// (see [`router_for`]). `allowed_hosts` empty means loopback names only.
pub fn router(
    manager: Arc<SessionManager>,
    metrics: Arc<Metrics>,
    allowed_hosts: &[String],
    cancel: CancellationToken,
) -> Router {
    let server = RSessionServer::new(manager, metrics, PagerConfig::default(), "local");
    router_for(server, allowed_hosts, cancel)
}

/// The axum router serving `server` (cloned per MCP session; acting for
/// `local` unless [`crate::auth::layer`] names the caller).
pub fn router_for(
    server: RSessionServer,
    allowed_hosts: &[String],
    cancel: CancellationToken,
) -> Router {
    let ops = Ops {
        manager: server.manager().clone(),
        metrics: server.metrics().clone(),
    };
    // Plain JSON responses for request/response tools (SSE only when a
    // handler sends notifications first): one less framing layer per call.
    let mut config = StreamableHttpServerConfig::default()
        .with_json_response(true)
        .with_cancellation_token(cancel);
    if !allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(allowed_hosts.iter().cloned());
    }
    let mcp = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", mcp)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(ops)
}

/// A TCP listener on `addr` for [`axum::serve`] whose accepted connections
/// have `TCP_NODELAY` set.
///
/// Why: replies and SSE events must go out as soon as they are written. With
/// Nagle's algorithm on, a small write behind one the client has not
/// acknowledged yet waits for the client's delayed ACK (40 ms on Linux):
/// rmcp's client transport over a reqwest client that keeps its connection
/// alive saw about 42 ms per call at 2026-07-28 (`docs/benchmarks.md`).
///
/// Errors: those of binding `addr`.
pub async fn listen(
    addr: std::net::SocketAddr,
) -> std::io::Result<impl Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
        }
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.manager.backend().ready().await {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "backend unavailable\n")
    }
}

async fn metrics_text(State(ops): State<Ops>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_connections_have_nodelay_set() {
        let mut listener = super::listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await;
        assert!(
            accepted.nodelay().unwrap(),
            "TCP_NODELAY is off on the server's side"
        );
        drop(client);
    }
}
