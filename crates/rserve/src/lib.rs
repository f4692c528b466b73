//! Async (tokio) client for Rserve's QAP1 protocol.
//!
//! Written from Rserve's protocol definition (`Rsrv.h`, `qap_encode.c`/`qap_decode.c` of
//! Rserve 1.8): the 32-byte ID handshake with its attributes, plaintext login (`CMD_login`),
//! `CMD_eval`, `CMD_voidEval`, `CMD_setSEXP`, decoding of every SEXP type Rserve sends and
//! encoding of what we send, with guard rails for hostile input (reply size cap checked
//! before allocation, length checks, nesting limit) and interrupting a busy R from a second
//! connection.
//!
//! Rserve forks one R process per connection, so a [`Connection`] *is* an R session: its
//! global environment lives exactly as long as the connection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rserve::Error> {
//! let opts = rserve::ConnectOptions {
//!     username: Some("rsession".into()),
//!     password: Some("secret".into()),
//!     ..Default::default()
//! };
//! let mut conn = rserve::Connection::connect("127.0.0.1:6311", &opts).await?;
//! let x = conn.eval("c(a = 1, b = NA)").await?;
//! assert_eq!(x.as_f64s().map(<[f64]>::len), Some(2));
//! assert!(rserve::is_na_real(x.as_f64s().unwrap()[1]));
//! # Ok(()) }
//! ```
//!
//! See [`connection`] for the request/reply model, cancellation safety and the
//! deadline → SIGINT → SIGKILL pattern.

#![deny(missing_docs)]

pub mod connection;
pub mod decode;
pub mod encode;
mod error;
pub mod handshake;
pub mod protocol;
mod sexp;
mod signal;
#[cfg(feature = "testing")]
pub mod testing;

pub use connection::{
    ConnectOptions, Connection, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_REPLY_BYTES, NO_ERROR_MESSAGE,
    Transport, UNIX_PREFIX,
};
pub use decode::{DecodeLimits, decode_sexp};
pub use encode::encode_sexp;
pub use error::Error;
pub use handshake::ServerInfo;
pub use protocol::{NA_INTEGER, NA_REAL_BITS, Signal, is_na_real, na_real};
pub use sexp::{Complex, Sexp, Tagged, Value};
pub use signal::{send_signal, signal_child};
