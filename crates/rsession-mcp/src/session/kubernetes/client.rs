//! The frontend's Kubernetes client: kube's own stack, with a connect timeout and a retry
//! budget sized for a tool call rather than for a controller.
//!
//! Why: every API call the frontend makes is on an agent's way to a tool result. kube's
//! defaults suit a controller that can wait: a 30 s connect timeout, and
//! `RetryPolicy::server_retry` retrying 429, 503 and 504 up to 15 times with delays doubling up
//! to 1000 s (minutes in all). An agent is better served by `backend_unavailable`
//! (retryable) within seconds: it can retry, tell its user or do something else.

use std::time::Duration;

use kube::client::ClientBuilder;
use kube::client::retry::RetryPolicy;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;

/// How long a TCP connect to the API server may take. Inside a cluster it takes milliseconds;
/// this only ends connects that will not happen.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Retries of a request the API server answered 429, 503 or 504 (kube's `RetryPolicy`).
pub const RETRIES: u32 = 3;

/// First delay before a retry; it doubles (with jitter) up to [`RETRY_MAX_DELAY`].
pub const RETRY_MIN_DELAY: Duration = Duration::from_millis(100);

/// Longest delay between two retries. `Retry-After` is not followed: an overloaded API server
/// may ask for far more than an agent's call can wait.
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(1);

/// Requests that may wait for the client's service at once (tower's `Buffer`), well above the
/// frontend's concurrent API calls.
const BUFFER: usize = 1024;

/// A client for `config` with [`CONNECT_TIMEOUT`] and at most [`RETRIES`] retries, in place of
/// kube's defaults. Must run inside a Tokio runtime (the buffer's task).
///
/// # Errors
/// Those of `kube::client::ClientBuilder::try_from` (TLS or auth setup).
pub fn client(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.default_retry = false;
    let policy = RetryPolicy::new(RETRY_MIN_DELAY, RETRY_MAX_DELAY, RETRIES, false)
        .expect("constant backoff bounds are valid");
    // tower's `Retry` clones the service it wraps; kube's stack is a `BoxService`, which does
    // not clone, so a `Buffer` (a channel to one task running the stack) stands in between.
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&BufferLayer::new(BUFFER))
        .with_layer(&RetryLayer::new(policy))
        .build())
}
