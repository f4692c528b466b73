//! `/metrics` (Prometheus text format), `/healthz` (process alive) and `/readyz` (the operator
//! reached the apiserver and runs as leader or stands by as follower).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// State shared between the controller and the HTTP endpoints.
#[derive(Debug, Default)]
pub struct Runtime {
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Set once the RSession API answered and the controller (or the follower loop) runs.
    pub ready: AtomicBool,
}

impl Runtime {
    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

async fn metrics(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        rt.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(rt): State<Arc<Runtime>>) -> (StatusCode, &'static str) {
    if rt.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// The router serving the three endpoints.
pub fn router(rt: Arc<Runtime>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(rt)
}

/// Serves [`router`] on `addr` until `shutdown` is cancelled.
///
/// # Errors
/// Binding or serving failed.
pub async fn serve(
    addr: SocketAddr,
    rt: Arc<Runtime>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(rt))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
