//! `rsession-testkit`: test helpers shared by the `rsession-mcp` tests, the operator tests and
//! the e2e suite (dev-only, not published), so each helper exists once.
//!
//! - [`mcp`]: a real rmcp client: connect over stdio or streamable HTTP, call a tool, read a
//!   result (text, images, structured fields, error code), service-account tokens.
//! - [`status`]: the Ready status of an RSession as the operator writes it, for stand-ins that
//!   play the operator's part.
//! - [`control_plane`]: the shared `rsession-testenv` control plane with the RSession CRD and
//!   test logging; the rest of `rsession-testenv` is re-exported as [`testenv`].

pub mod mcp;
pub mod status;

pub use rsession_testenv as testenv;
use rsession_testenv::ControlPlane;

/// The shared control plane of this test binary with the committed RSession CRD installed
/// ([`ControlPlane::shared_with_crds`]), and test logging on: `RUST_LOG`, else
/// `default_filter` (an `EnvFilter` directive such as `warn,rsession_mcp=info`), shown for
/// failing tests.
///
/// # Panics
/// When the control plane does not start (missing binaries, see `rsession-testenv`).
pub async fn control_plane(default_filter: &str) -> &'static ControlPlane {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .try_init();
    ControlPlane::shared_with_crds()
        .await
        .expect("control plane with the RSession CRD")
}
