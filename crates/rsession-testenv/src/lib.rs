//! `rsession-testenv`: a real Kubernetes control plane for tests (dev-only, not published).
//!
//! [`ControlPlane::start`] runs etcd, kube-apiserver and kube-controller-manager (the binaries
//! `e2e/local/build-binaries.sh` builds from the pinned Go modules, found through
//! [`bins::BIN_DIR_ENV`]) on loopback ports with a fresh temp folder: a test CA and
//! certificates made with `openssl`, an admin kubeconfig, `--authorization-mode=Node,RBAC`,
//! PodSecurity admission. It waits for `/readyz` and for the controller manager to act, then
//! hands out [`kube::Client`]s (admin or impersonating a service account). Teardown kills every
//! process group, even when the test panics or the process is killed (see [`process`]).
//!
//! Typical use, one control plane per test binary, one namespace per test:
//!
//! ```no_run
//! # async fn example() -> Result<(), rsession_testenv::Error> {
//! use rsession_testenv::{ControlPlane, PodSecurity};
//! let cp = ControlPlane::shared().await?;
//! cp.with_temp_ns("my-test", PodSecurity::Restricted, |client, ns| async move {
//!     // create objects in `ns` with `client`; panic (assert) to fail
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! A missing binary is an error naming the build script ([`Error::MissingBinary`]): tests that
//! need the control plane fail rather than skip.

pub mod bins;
mod control_plane;
mod error;
mod manifests;
mod namespace;
mod pki;
pub mod process;

pub use bins::{BIN_DIR_ENV, Binaries, K8S_VERSION};
pub use control_plane::{ControlPlane, Options};
pub use error::{Error, Result};
pub use manifests::{
    FIELD_MANAGER, apply_crds, apply_manifests, apply_object, apply_yaml, await_openapi,
    parse_manifests, read_manifests, workspace_root,
};
pub use namespace::{ENFORCE_LABEL, PodSecurity};
pub use pki::{ADMIN_USER, KeyPair, Pki};
