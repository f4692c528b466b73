//! The error type of every fallible operation in this crate.

use std::time::Duration;

use crate::protocol::{
    ERR_AUTH_FAILED, ERR_CONN_BROKEN, ERR_DATA_OVERFLOW, ERR_INV_CMD, ERR_OBJECT_TOO_BIG,
    ERR_OUT_OF_MEM, ERR_SECURITY_CLOSE, ERR_UNKNOWN_CMD, ERR_UNSUPPORTED_CMD, STAT_PARSE_EOF,
    STAT_PARSE_ERROR, STAT_PARSE_INCOMPLETE, Signal, status_name,
};

/// Errors from connecting to Rserve and from QAP1 requests.
///
/// [`Error::is_connection_lost`] tells whether the [`crate::Connection`] (and with it the R
/// process and its state) is gone: the caller must reconnect to a fresh R.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket error (connect refused, reset, ...). The connection is lost.
    #[error("I/O error talking to Rserve: {0}")]
    Io(#[from] std::io::Error),

    /// An operation did not finish in time. For connect this is the whole handshake; for a
    /// request's read timeout the reply is still pending and can be awaited again with
    /// [`crate::Connection::read_reply`] (the connection is not lost).
    #[error("timed out after {after:?} while {operation}")]
    Timeout {
        /// What was being waited for.
        operation: &'static str,
        /// The limit that expired.
        after: Duration,
    },

    /// The server closed the connection (EOF), e.g. because its R process was killed or
    /// called `quit()`. The connection is lost.
    #[error("Rserve closed the connection {0}")]
    ConnectionClosed(String),

    /// An earlier failure left the connection out of step with the server (a request write
    /// was interrupted, an oversized or malformed reply was refused, ...). Lost.
    #[error("connection unusable after an earlier failure: {0}")]
    Poisoned(String),

    /// The server speaks TLS (or offers no plaintext QAP1); this client does not do TLS.
    #[error("Rserve requires TLS, which this client does not support: {0}")]
    TlsRequired(String),

    /// Login refused (`ERR_auth_failed`/`ERR_accessDenied` on `CMD_login`), credentials
    /// missing, or only an authentication method we do not implement is offered.
    #[error("authentication failed: {0}")]
    Auth(String),

    /// R signalled an error while evaluating (status `0x7f` from `R_tryEval`); `message` is
    /// `geterrmessage()` read right after, e.g. `"Error in f() : boom\n"`. The connection and
    /// the R state remain usable.
    #[error("R evaluation error (status {status:#04x}): {message}")]
    Eval {
        /// The QAP1 status code (normally `0x7f`).
        status: u8,
        /// R's error message as printed by R, including the trailing newline.
        message: String,
    },

    /// The R source did not parse (status is R's `ParseStatus`: 2 incomplete, 3 error).
    #[error("R parse error: {name} (status {status})")]
    Parse {
        /// R's `ParseStatus` value.
        status: u8,
        /// Its name, e.g. `"PARSE_ERROR"`.
        name: &'static str,
    },

    /// The server refused our request as larger than its `maxinbuf` (`ERR_data_overflow`).
    #[error("request larger than the server's input buffer (ERR_data_overflow)")]
    DataOverflow,

    /// The result is larger than the server's `maxsendbuf` (`ERR_object_too_big`); `size` is
    /// the size the server reported in bytes, if any.
    #[error("result too big for the server's send buffer (ERR_object_too_big, {size:?} bytes)")]
    ObjectTooBig {
        /// Encoded size reported by the server, in bytes.
        size: Option<u32>,
    },

    /// The server does not know or support the command (`ERR_inv_cmd`, `ERR_unsupportedCmd`,
    /// `ERR_unknownCmd`).
    #[error("command not supported by the server: {name} ({code:#04x})")]
    UnsupportedCommand {
        /// The status code.
        code: u8,
        /// Its `Rsrv.h` name.
        name: &'static str,
    },

    /// Any other error status, with its `Rsrv.h` name.
    #[error("Rserve error status {name} ({code:#04x})")]
    Status {
        /// The status code.
        code: u8,
        /// Its `Rsrv.h` name, or `"unknown status"`.
        name: &'static str,
    },

    /// The reply header announced more bytes than the configured maximum; nothing was
    /// allocated for it, and the connection is lost (the reply cannot be skipped safely).
    #[error("reply of {size} bytes exceeds the limit of {limit} bytes")]
    ReplyTooLarge {
        /// Announced reply size in bytes.
        size: u64,
        /// `ConnectOptions::max_reply_bytes`.
        limit: usize,
    },

    /// The byte stream does not follow QAP1 framing (bad header, ID string, response code).
    /// The connection is lost.
    #[error("QAP1 protocol error: {0}")]
    Protocol(String),

    /// A complete reply arrived but its SEXP payload is malformed (or nested deeper than the
    /// limit). The connection stays in step and usable.
    #[error("malformed SEXP in reply: {0}")]
    Decode(String),

    /// The value or string cannot be sent (e.g. a string containing NUL, an S4 object).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A new request was started while the reply to an earlier one (whose future was dropped)
    /// is still unread; call [`crate::Connection::read_reply`] first.
    #[error("the reply to an earlier request is still pending")]
    ReplyPending,

    /// [`crate::Connection::read_reply`] was called with no request in flight.
    #[error("no request is waiting for a reply")]
    NoPendingRequest,

    /// `tools::pskill` returned `FALSE`: the process does not exist (any more) or may not be
    /// signalled.
    #[error("signal {signal:?} not delivered to R process {pid}")]
    SignalNotDelivered {
        /// Target process id.
        pid: i32,
        /// The signal.
        signal: Signal,
    },
}

impl Error {
    /// True when the connection (and the R process behind it) can no longer be used: the
    /// caller should drop it and, if it wants R again, connect to a fresh process.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Error::Io(_)
            | Error::ConnectionClosed(_)
            | Error::Poisoned(_)
            | Error::ReplyTooLarge { .. }
            | Error::Protocol(_)
            | Error::TlsRequired(_) => true,
            Error::Status { code, .. } => status_closes_connection(*code),
            _ => false,
        }
    }

    /// Maps a QAP1 error status (not `0x7f`, which needs `geterrmessage()`) to an error.
    /// `payload` is the optional `i32` some errors carry.
    pub(crate) fn from_status(code: u8, payload: Option<u32>) -> Error {
        match code {
            ERR_AUTH_FAILED => Error::Auth("the server answered ERR_auth_failed".into()),
            ERR_DATA_OVERFLOW => Error::DataOverflow,
            ERR_OBJECT_TOO_BIG => Error::ObjectTooBig { size: payload },
            ERR_INV_CMD | ERR_UNSUPPORTED_CMD | ERR_UNKNOWN_CMD => Error::UnsupportedCommand {
                code,
                name: status_name(code),
            },
            STAT_PARSE_INCOMPLETE | STAT_PARSE_ERROR | STAT_PARSE_EOF => Error::Parse {
                status: code,
                name: status_name(code),
            },
            _ => Error::Status {
                code,
                name: status_name(code),
            },
        }
    }
}

/// Statuses after which Rserve closes the socket (per `Rserv.c`).
pub(crate) fn status_closes_connection(code: u8) -> bool {
    matches!(code, ERR_CONN_BROKEN | ERR_OUT_OF_MEM | ERR_SECURITY_CLOSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_mapping() {
        assert!(matches!(Error::from_status(0x41, None), Error::Auth(_)));
        assert!(matches!(
            Error::from_status(0x4b, None),
            Error::DataOverflow
        ));
        assert!(matches!(
            Error::from_status(0x49, None),
            Error::UnsupportedCommand {
                code: 0x49,
                name: "ERR_unsupportedCmd"
            }
        ));
        assert!(matches!(
            Error::from_status(3, None),
            Error::Parse { status: 3, .. }
        ));
        let e = Error::from_status(0x42, None);
        assert!(matches!(
            e,
            Error::Status {
                name: "ERR_conn_broken",
                ..
            }
        ));
        assert!(e.is_connection_lost());
        assert!(!Error::from_status(0x44, None).is_connection_lost());
        assert!(Error::ReplyTooLarge { size: 10, limit: 1 }.is_connection_lost());
        assert!(
            !Error::Eval {
                status: 0x7f,
                message: String::new()
            }
            .is_connection_lost()
        );
    }
}
