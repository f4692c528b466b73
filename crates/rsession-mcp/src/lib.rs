//! rsession-mcp: an MCP server that runs R code for agents in persistent,
//! limited sessions on Rserve.
//!
//! - [`harness`]: the R evaluation harness (`harness.R`) and its decoding;
//! - [`session`]: the [`session::Backend`] trait (where sessions live), the
//!   `direct` backend and the [`session::SessionManager`] (connections,
//!   serialisation, limits, recovery);
//! - [`tools`]: the MCP tools (`execute_in_session`, ...);
//! - [`http`]: streamable HTTP at `/mcp` plus `/healthz`, `/readyz`, `/metrics`;
//! - [`auth`]: bearer tokens (TokenReview) and RSession rights (SubjectAccessReview);
//! - [`local_rserve`]: the embedded local Rserve.

pub mod app;
pub mod auth;
pub mod config;
pub mod errors;
pub mod harness;
pub mod http;
pub mod local_rserve;
pub mod metrics;
pub mod paths;
pub mod render;
pub mod session;
pub mod tools;
