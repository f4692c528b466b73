//! The R evaluation harness (its R files live in crate `rsession-harness`) and the Rust side
//! of its contract:
//!
//! - [`call`]: every entry point as a typed [`HarnessCall`], rendered into R
//!   source in one place;
//! - [`literal`]: R string literals, JSON as R values, and the checks of
//!   names and workspace-relative paths that come before any R source;
//! - [`outcome`]: what `.rsession$execute()` returns, decoded, and the
//!   Rust-side output cap.
//!
//! The harness is sent with QAP1 `voidEval` right after login unless the R preloaded it (see
//! [`crate::session::conn`]), so any R image with Rserve works.

pub mod call;
pub mod literal;
pub mod outcome;

pub use call::{CHECKPOINT_DIR, HarnessCall, SESSION_LIBRARY, UPLOAD_VAR};
pub use literal::r_string_literal;
pub use outcome::{
    DecodeError, Event, ExecLimits, ExecOutcome, ExecReport, ExecStatus, Reply, decode_outcome,
    enforce_output_cap, png_dimensions, spool_end,
};

/// Source of the harness (crate `rsession-harness`), installed into the private environment
/// `.rsession`, followed by the data tools (`harness_data.R`, environment `.rsession_data`)
/// and checkpoint and restore (`harness_checkpoint.R`, `.rsession_checkpoint`).
pub use rsession_harness::HARNESS_R;

/// The R call that evaluates `code` through the harness; `None` if `code`
/// contains NUL. ([`HarnessCall::Execute`] rendered.)
pub fn execute_call(code: &str, limits: &ExecLimits) -> Option<String> {
    HarnessCall::Execute {
        code: code.to_string(),
        limits: *limits,
    }
    .render()
    .ok()
}

/// The R call that prepares a fresh R for a session: workspace (created if
/// missing, then `setwd`), private library, plot size; `None` if
/// `workspace` contains NUL. ([`HarnessCall::Init`] rendered.)
pub fn init_call(workspace: &str) -> Option<String> {
    HarnessCall::Init {
        workspace: workspace.to_string(),
    }
    .render()
    .ok()
}
