//! rsession-mcp: an MCP server that runs R code for agents in persistent,
//! limited sessions on Rserve.
//!
//! - [`harness`]: the R evaluation harness (`harness.R`): its entry points as
//!   typed calls rendered into R, literals and argument checks, decoding;
//! - [`session`]: the [`session::Backend`] trait (where sessions live), the
//!   `direct` and `kubernetes` backends and the [`session::SessionManager`]
//!   (registry, serialisation, limits, recovery; one `call` for every tool);
//! - [`tools`]: the MCP tools, one file per group (`routes()`, arguments,
//!   body together) and the tool → RSession verb table in [`auth`];
//! - [`http`]: streamable HTTP at `/mcp` plus `/healthz`, `/readyz`, `/metrics`;
//! - [`auth`]: bearer tokens (TokenReview) and RSession rights (SubjectAccessReview);
//! - [`local_rserve`]: the embedded local Rserve;
//! - [`pager`]: long output kept and served page by page (`read_output`);
//! - [`sexp_json`]: R values to JSON (data tools);
//! - [`stdio`]: the stdio transport's streams (pipes and sockets on the reactor).

pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod errors;
pub mod harness;
pub mod http;
pub mod local_rserve;
pub mod metrics;
pub mod pager;
pub mod render;
pub mod sandbox;
pub mod session;
pub mod sexp_json;
pub mod stdio;
pub mod tools;
