//! One QAP1 connection = one forked R process.
//!
//! # Requests, replies and cancellation
//!
//! QAP1 is strictly request/reply on one socket. Each request method here
//! ([`Connection::eval`], [`Connection::void_eval`], [`Connection::assign`]) is a
//! *send* followed by a *read* of the reply, and the two halves are public too:
//! [`Connection::send_eval`] (and `send_void_eval`, `send_assign`) plus
//! [`Connection::read_reply`].
//!
//! Reading is cancellation-safe: bytes received so far are kept in the connection, so if a
//! future that is reading a reply is dropped (for example by `tokio::time::timeout`), the
//! reply stays pending and the next [`Connection::read_reply`] continues where the dropped one
//! stopped. Writing is not: if a future is dropped while a request is half written, the
//! connection is marked poisoned and every later call fails with [`Error::Poisoned`].
//!
//! The deadline pattern the MCP layer uses:
//!
//! ```no_run
//! # async fn demo(addr: &str, opts: &rserve::ConnectOptions) -> Result<(), rserve::Error> {
//! use std::time::Duration;
//! use rserve::{Connection, Signal};
//! let mut conn = Connection::connect(addr, opts).await?;
//! let pid = conn.child_pid().expect("pid recorded at connect");
//! conn.send_eval("Sys.sleep(60)").await?;
//! let reply = match tokio::time::timeout(Duration::from_secs(2), conn.read_reply()).await {
//!     Ok(reply) => reply,
//!     Err(_deadline) => {
//!         rserve::signal_child(addr, opts, pid, Signal::Interrupt).await?;
//!         match tokio::time::timeout(Duration::from_secs(2), conn.read_reply()).await {
//!             Ok(reply) => reply, // usually Err(Error::Eval { .. }): interrupted, R state kept
//!             Err(_grace) => {
//!                 rserve::signal_child(addr, opts, pid, Signal::Kill).await?;
//!                 conn.read_reply().await // Err(e) with e.is_connection_lost()
//!             }
//!         }
//!     }
//! };
//! # let _ = reply; Ok(()) }
//! ```

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use crate::decode::{DecodeLimits, decode_reply_sexp};
use crate::encode::{header, put_sexp_param, put_string_param};
use crate::error::{Error, status_closes_connection};
use crate::handshake::{ServerInfo, parse_id_string};
use crate::protocol::*;
use crate::sexp::Sexp;

/// Default for [`ConnectOptions::max_reply_bytes`]: 256 MiB (Rserve's own default `maxinbuf`).
pub const DEFAULT_MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;
/// Default for [`ConnectOptions::connect_timeout`]: 10 seconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads R's last error message and clears it. R leaves the buffer untouched when an
/// evaluation ends without an error condition (a SIGINT interrupt), so clearing it here and at
/// connect keeps a stale message from being reported for the next failure.
const FETCH_ERROR_MESSAGE: &str =
    "local({ m <- geterrmessage(); .Internal(seterrmessage('')); m })";
/// Message used when R failed but left no error message (typically an interrupt).
pub const NO_ERROR_MESSAGE: &str =
    "evaluation ended without an R error message (e.g. interrupted by SIGINT)";

/// Initial read buffer growth step, in bytes.
const READ_CHUNK: usize = 64 * 1024;
/// Requests up to this size are written with one copy and one write; larger ones (big
/// `assign` values) are written as header + parameters without copying the parameters.
const COALESCE_LIMIT: usize = 64 * 1024;

/// For a reply body that is `DT_SEXP(XT_RAW)` without attributes, the byte range of the raw
/// data within `body`; `None` for anything else (decoded the general way).
fn raw_reply_range(body: &[u8]) -> Option<std::ops::Range<usize>> {
    let (dt, dt_len, dt_head) = get_head(body, DT_LARGE)?;
    let (xt, xt_len, xt_head) = get_head(body.get(dt_head..)?, XT_LARGE)?;
    if dt != DT_SEXP || xt != XT_RAW || dt_len != xt_head as u64 + xt_len {
        return None;
    }
    let count_at = dt_head + xt_head;
    let count = i32::from_le_bytes(body.get(count_at..count_at + 4)?.try_into().ok()?);
    let start = count_at + 4;
    let end = start.checked_add(usize::try_from(count).ok()?)?;
    let sexp_end = usize::try_from(dt_len).ok()?.checked_add(dt_head)?;
    (sexp_end <= body.len() && end <= sexp_end).then_some(start..end)
}

async fn write_request(
    stream: &mut Box<dyn Transport>,
    cmd: u32,
    params: &[u8],
) -> std::io::Result<()> {
    let head = header(cmd, params.len());
    if params.len() <= COALESCE_LIMIT {
        let mut msg = Vec::with_capacity(HEADER_LEN + params.len());
        msg.extend_from_slice(&head);
        msg.extend_from_slice(params);
        stream.write_all(&msg).await
    } else {
        stream.write_all(&head).await?;
        stream.write_all(params).await
    }
}

/// How to connect and authenticate. `Debug` output redacts the password.
#[derive(Clone)]
pub struct ConnectOptions {
    /// User for `CMD_login`, used when the server announces `ARpt`.
    pub username: Option<String>,
    /// Password for `CMD_login`.
    pub password: Option<String>,
    /// Bound on TCP connect + ID string + login + `Sys.getpid()` together.
    pub connect_timeout: Duration,
    /// Largest reply body accepted, in bytes; a larger announced reply is refused with
    /// [`Error::ReplyTooLarge`] before anything is allocated for it.
    pub max_reply_bytes: usize,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("max_reply_bytes", &self.max_reply_bytes)
            .finish()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            username: None,
            password: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

/// What the request in flight was, so its reply is interpreted correctly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Eval,
    /// `voidEval`, `setSEXP`, `login`: an empty `RESP_OK` is expected.
    NoValue,
    /// `geterrmessage()` sent after an eval failed with `status`.
    ErrorMessage {
        status: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    Writing,
    Pending(Pending),
    Poisoned(String),
}

/// A QAP1 connection to Rserve, holding one R process and its state.
///
/// Requests take `&mut self`, so one request is in flight at a time. Dropping the connection
/// closes the socket, which ends the R process.
pub struct Connection {
    stream: Box<dyn Transport>,
    info: ServerInfo,
    pid: Option<i32>,
    max_reply_bytes: usize,
    read_timeout: Option<Duration>,
    limits: DecodeLimits,
    /// Bytes received and not yet consumed (a partial or complete reply).
    rbuf: Vec<u8>,
    state: State,
}

/// Prefix of an address that names a Unix socket rather than `host:port`
/// (`"unix:/run/rserve.sock"`), for [`Connection::connect`] and the signal helpers.
pub const UNIX_PREFIX: &str = "unix:";

/// A byte stream QAP1 can run over: TCP (what [`Connection::connect`] opens), a Unix socket
/// (Rserve's `socket` option), or an in-memory stream in tests and fuzzing.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.info)
            .field("pid", &self.pid)
            .field("state", &self.state)
            .field("buffered", &self.rbuf.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `addr` (`"host:port"` over TCP, or `"unix:<path>"` for a Rserve listening
    /// on a Unix socket, its `socket` option), reads the ID string, logs in when the server
    /// requires it (`ARpt`, with `opts.username`/`opts.password`), switches strings to UTF-8
    /// (`CMD_setEncoding "utf8"`) and records the R process id with `Sys.getpid()`; all within
    /// `opts.connect_timeout`.
    ///
    /// Errors: [`Error::Io`] (refused, unreachable), [`Error::Timeout`] (including a
    /// TLS-only port, which sends nothing until a TLS ClientHello), [`Error::TlsRequired`],
    /// [`Error::Protocol`] (not Rserve/QAP1), [`Error::Auth`] (wrong or missing credentials,
    /// or only `ARuc`/`ARm5` offered).
    pub async fn connect(addr: &str, opts: &ConnectOptions) -> Result<Connection, Error> {
        let deadline = Instant::now() + opts.connect_timeout;
        let after = opts.connect_timeout;
        if let Some(path) = addr.strip_prefix(UNIX_PREFIX) {
            let stream = timeout_at(deadline, tokio::net::UnixStream::connect(path))
                .await
                .map_err(|_| Error::Timeout {
                    operation: "opening the Unix socket connection",
                    after,
                })??;
            return Self::handshake(Box::new(stream), opts, deadline).await;
        }
        let stream = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout {
                operation: "opening the TCP connection",
                after,
            })??;
        stream.set_nodelay(true)?;
        Self::handshake(Box::new(stream), opts, deadline).await
    }

    /// Runs the QAP1 handshake (ID string, login, `Sys.getpid()`) over an already open
    /// `stream`, within `opts.connect_timeout`. Same errors as [`Connection::connect`].
    pub async fn connect_stream<S: Transport + 'static>(
        stream: S,
        opts: &ConnectOptions,
    ) -> Result<Connection, Error> {
        let deadline = Instant::now() + opts.connect_timeout;
        Self::handshake(Box::new(stream), opts, deadline).await
    }

    async fn handshake(
        mut stream: Box<dyn Transport>,
        opts: &ConnectOptions,
        deadline: Instant,
    ) -> Result<Connection, Error> {
        let after = opts.connect_timeout;
        let mut id = [0u8; ID_STRING_LEN];
        timeout_at(deadline, stream.read_exact(&mut id))
            .await
            .map_err(|_| Error::Timeout {
                operation: "waiting for the Rserve ID string (a TLS-only Rserve port sends \
                            nothing until a TLS ClientHello; this client does not speak TLS)",
                after,
            })?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    Error::ConnectionClosed("before sending its ID string".into())
                }
                _ => Error::Io(e),
            })?;
        let mut conn = Connection {
            stream,
            info: parse_id_string(&id)?,
            pid: None,
            max_reply_bytes: opts.max_reply_bytes,
            read_timeout: None,
            limits: DecodeLimits::default(),
            rbuf: Vec::new(),
            state: State::Idle,
        };
        tracing::debug!(version = %conn.info.version, auth = conn.info.auth_required(), "QAP1 handshake");

        if conn.info.auth_required() {
            timeout_at(deadline, conn.login(opts))
                .await
                .map_err(|_| Error::Timeout {
                    operation: "logging in",
                    after,
                })??;
        }
        // Strings in both directions as UTF-8, whatever the server's `encoding` setting.
        let mut params = Vec::new();
        put_string_param(&mut params, "utf8")?;
        conn.send(CMD_SET_ENCODING, &params, Pending::NoValue)
            .await?;
        timeout_at(deadline, conn.read_reply())
            .await
            .map_err(|_| Error::Timeout {
                operation: "setting the string encoding",
                after,
            })??;
        let pid = timeout_at(
            deadline,
            conn.eval("{ .Internal(seterrmessage('')); Sys.getpid() }"),
        )
        .await
        .map_err(|_| Error::Timeout {
            operation: "reading Sys.getpid()",
            after,
        })??;
        conn.pid = pid.as_i32();
        Ok(conn)
    }

    async fn login(&mut self, opts: &ConnectOptions) -> Result<(), Error> {
        if !self.info.auth_plaintext {
            return Err(Error::Auth(format!(
                "the server offers only {} login, which this client does not implement; \
                 enable `plaintext enable` in the Rserve configuration",
                if self.info.auth_crypt {
                    "unix-crypt (ARuc)"
                } else {
                    "MD5 (ARm5)"
                }
            )));
        }
        let (Some(user), Some(pwd)) = (&opts.username, &opts.password) else {
            return Err(Error::Auth(
                "the server requires a login (ARpt) but no username/password were given".into(),
            ));
        };
        if user.contains('\n') || pwd.contains('\n') {
            return Err(Error::InvalidArgument(
                "username and password cannot contain a newline".into(),
            ));
        }
        let mut params = Vec::new();
        put_string_param(&mut params, &format!("{user}\n{pwd}"))?;
        self.send(CMD_LOGIN, &params, Pending::NoValue).await?;
        match self.read_reply().await {
            Ok(_) => Ok(()),
            // Rserve answers ERR_auth_failed and closes the socket.
            Err(Error::Auth(_)) | Err(Error::ConnectionClosed(_)) => {
                self.poison("login refused");
                Err(Error::Auth(
                    "the server refused the username/password".into(),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// The R process id (`Sys.getpid()` of the forked R), recorded at connect.
    pub fn child_pid(&self) -> Option<i32> {
        self.pid
    }

    /// What the server announced in its ID string (protocol `"QAP1"`, version `"0103"`,
    /// authentication methods).
    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    /// Sets a bound on each read and write of a request (default: none). When a read times
    /// out the reply stays pending ([`Error::Timeout`], connection not lost); when a write
    /// times out the connection is poisoned.
    pub fn set_read_timeout(&mut self, limit: Option<Duration>) {
        self.read_timeout = limit;
    }

    /// Changes the reply size limit in bytes (see [`ConnectOptions::max_reply_bytes`]).
    pub fn set_max_reply_bytes(&mut self, limit: usize) {
        self.max_reply_bytes = limit;
    }

    /// Changes the limits used when decoding replies.
    pub fn set_decode_limits(&mut self, limits: DecodeLimits) {
        self.limits = limits;
    }

    /// True while a request has been sent and its reply not yet read.
    pub fn has_pending_reply(&self) -> bool {
        matches!(self.state, State::Pending(_))
    }

    /// Why the connection is unusable, if it is.
    pub fn poisoned(&self) -> Option<&str> {
        match &self.state {
            State::Poisoned(reason) => Some(reason),
            State::Writing => Some("a request write was interrupted"),
            _ => None,
        }
    }

    /// `CMD_eval`: parses and evaluates `expr` in R's global environment and returns the value
    /// of the last expression.
    ///
    /// Errors: [`Error::Eval`] with `geterrmessage()` when R signals an error (also after an
    /// interrupt), [`Error::Parse`] when `expr` does not parse, plus the connection errors
    /// described on [`Error`].
    pub async fn eval(&mut self, expr: &str) -> Result<Sexp, Error> {
        self.send_eval(expr).await?;
        self.read_reply().await
    }

    /// `CMD_voidEval`: like [`Connection::eval`] but the server sends no value back.
    pub async fn void_eval(&mut self, expr: &str) -> Result<(), Error> {
        self.send_void_eval(expr).await?;
        self.read_reply().await.map(drop)
    }

    /// `CMD_setSEXP`: assigns `value` to the symbol `name` in R's global environment.
    ///
    /// Errors: [`Error::InvalidArgument`] for values that cannot be encoded (see
    /// [`crate::encode_sexp`]); [`Error::DataOverflow`] when the encoded value exceeds the
    /// server's `maxinbuf`.
    pub async fn assign(&mut self, name: &str, value: &Sexp) -> Result<(), Error> {
        self.send_assign(name, value).await?;
        self.read_reply().await.map(drop)
    }

    /// Sends `CMD_eval` without waiting; read the result with [`Connection::read_reply`].
    pub async fn send_eval(&mut self, expr: &str) -> Result<(), Error> {
        let mut params = Vec::with_capacity(expr.len() + 8);
        put_string_param(&mut params, expr)?;
        self.send(CMD_EVAL, &params, Pending::Eval).await
    }

    /// Sends `CMD_voidEval` without waiting; [`Connection::read_reply`] returns `NULL`.
    pub async fn send_void_eval(&mut self, expr: &str) -> Result<(), Error> {
        let mut params = Vec::with_capacity(expr.len() + 8);
        put_string_param(&mut params, expr)?;
        self.send(CMD_VOID_EVAL, &params, Pending::NoValue).await
    }

    /// Sends `CMD_setSEXP` without waiting; [`Connection::read_reply`] returns `NULL`.
    pub async fn send_assign(&mut self, name: &str, value: &Sexp) -> Result<(), Error> {
        let mut params = Vec::new();
        put_string_param(&mut params, name)?;
        put_sexp_param(&mut params, value)?;
        self.send(CMD_SET_SEXP, &params, Pending::NoValue).await
    }

    /// Waits for the reply to the request in flight. Cancellation-safe: if this future is
    /// dropped, calling it again resumes reading the same reply.
    ///
    /// For an eval that R failed, this reads (and clears) `geterrmessage()` with a second
    /// request and returns [`Error::Eval`] with its text, or [`NO_ERROR_MESSAGE`] when R set
    /// none (an interrupt). Replies without a value (voidEval, assign) yield `NULL`.
    /// Errors: [`Error::NoPendingRequest`] if nothing was sent; [`Error::Timeout`] after the
    /// read timeout (reply still pending); the connection errors described on [`Error`].
    pub async fn read_reply(&mut self) -> Result<Sexp, Error> {
        loop {
            let pending = match &self.state {
                State::Pending(p) => *p,
                State::Idle => return Err(Error::NoPendingRequest),
                State::Writing => {
                    return Err(Error::Poisoned("a request write was interrupted".into()));
                }
                State::Poisoned(r) => return Err(Error::Poisoned(r.clone())),
            };
            let (cmd, packet) = self.read_packet().await?;
            self.state = State::Idle;
            let body = &packet[HEADER_LEN..];
            if cmd & 0xffffff == RESP_OK {
                return match pending {
                    Pending::Eval => match raw_reply_range(body) {
                        // A bare raw vector (file contents, serialized objects) reuses the
                        // packet buffer instead of copying it.
                        Some(range) => {
                            let mut bytes = packet;
                            bytes.truncate(HEADER_LEN + range.end);
                            bytes.drain(..HEADER_LEN + range.start);
                            Ok(Sexp::from(crate::sexp::Value::Raw(bytes)))
                        }
                        None => decode_reply_sexp(body, self.limits),
                    },
                    Pending::NoValue => Ok(Sexp::NULL),
                    Pending::ErrorMessage { status } => {
                        let msg = decode_reply_sexp(body, self.limits)?;
                        let message = match msg.as_str() {
                            Some(m) if !m.is_empty() => m.to_string(),
                            _ => NO_ERROR_MESSAGE.to_string(),
                        };
                        Err(Error::Eval { status, message })
                    }
                };
            }
            if cmd & 0xffffff != RESP_ERR {
                let msg = format!("unexpected response command {cmd:#010x}");
                self.poison(&msg);
                return Err(Error::Protocol(msg));
            }
            let status = cmd_stat(cmd);
            if status_closes_connection(status) {
                self.poison(status_name(status));
            }
            match pending {
                Pending::Eval | Pending::NoValue if status == STAT_R_EVAL_ERROR => {
                    // The message is in R's error buffer; read it with a second request.
                    let mut params = Vec::new();
                    put_string_param(&mut params, FETCH_ERROR_MESSAGE)?;
                    self.send(CMD_EVAL, &params, Pending::ErrorMessage { status })
                        .await?;
                }
                Pending::ErrorMessage { status } => {
                    return Err(Error::Eval {
                        status,
                        message: String::from("(geterrmessage() failed)"),
                    });
                }
                _ => {
                    let payload = body
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_le_bytes);
                    return Err(Error::from_status(status, payload));
                }
            }
        }
    }

    /// Closes the connection (the R process exits).
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    fn poison(&mut self, reason: &str) {
        tracing::debug!(reason, "QAP1 connection poisoned");
        self.state = State::Poisoned(reason.to_string());
    }

    async fn send(&mut self, cmd: u32, params: &[u8], pending: Pending) -> Result<(), Error> {
        match &self.state {
            State::Idle => {}
            State::Pending(_) => return Err(Error::ReplyPending),
            State::Writing => {
                return Err(Error::Poisoned("a request write was interrupted".into()));
            }
            State::Poisoned(r) => return Err(Error::Poisoned(r.clone())),
        }
        self.state = State::Writing;
        let write = write_request(&mut self.stream, cmd, params);
        let res = match self.read_timeout {
            Some(limit) => timeout(limit, write).await.map_err(|_| Error::Timeout {
                operation: "writing a request",
                after: limit,
            }),
            None => Ok(write.await),
        };
        match res {
            Ok(Ok(())) => {
                self.state = State::Pending(pending);
                Ok(())
            }
            Ok(Err(e)) => {
                self.poison("request write failed");
                Err(Error::Io(e))
            }
            Err(e) => {
                self.poison("request write timed out");
                Err(e)
            }
        }
    }

    /// Reads one complete response packet (header + body) and returns its command word and
    /// the packet bytes (header included). Cancellation-safe: partial data stays in `rbuf`.
    async fn read_packet(&mut self) -> Result<(u32, Vec<u8>), Error> {
        let limit = self.read_timeout;
        let fut = self.read_packet_inner();
        match limit {
            Some(after) => timeout(after, fut).await.map_err(|_| Error::Timeout {
                operation: "waiting for a reply",
                after,
            })?,
            None => fut.await,
        }
    }

    async fn read_packet_inner(&mut self) -> Result<(u32, Vec<u8>), Error> {
        loop {
            let mut need = HEADER_LEN;
            if self.rbuf.len() >= HEADER_LEN {
                let word = |i: usize| {
                    u32::from_le_bytes([
                        self.rbuf[i],
                        self.rbuf[i + 1],
                        self.rbuf[i + 2],
                        self.rbuf[i + 3],
                    ])
                };
                let cmd = word(0);
                let len = u64::from(word(4)) | (u64::from(word(12)) << 32);
                if len > self.max_reply_bytes as u64 {
                    self.poison("reply larger than max_reply_bytes was refused");
                    self.rbuf = Vec::new();
                    return Err(Error::ReplyTooLarge {
                        size: len,
                        limit: self.max_reply_bytes,
                    });
                }
                // `len <= max_reply_bytes`, a usize.
                need = HEADER_LEN + len as usize;
                if self.rbuf.len() >= need {
                    let mut packet = std::mem::take(&mut self.rbuf);
                    self.rbuf = packet.split_off(need);
                    if cmd & CMD_OOB != 0 && cmd & CMD_RESP == 0 {
                        if cmd & 0xf000 == 0x1000 {
                            tracing::debug!(cmd, "skipping OOB_SEND message");
                            continue;
                        }
                        let msg = format!(
                            "out-of-band message {cmd:#010x} needs an answer; not supported"
                        );
                        self.poison(&msg);
                        return Err(Error::Protocol(msg));
                    }
                    return Ok((cmd, packet));
                }
            }
            // Grow by doubling but never past the packet size, so a reply of n bytes costs
            // n bytes of buffer (not up to 2n), and a header that lies costs only what arrives.
            let target = if self.rbuf.len() < HEADER_LEN {
                READ_CHUNK
            } else {
                need.min((self.rbuf.len() * 2).max(READ_CHUNK))
            };
            if self.rbuf.capacity() < target {
                self.rbuf.reserve_exact(target - self.rbuf.len());
            } else if self.rbuf.capacity() == self.rbuf.len() {
                self.rbuf.reserve(4096);
            }
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .inspect_err(|_| {
                    self.state = State::Poisoned("socket read failed".into());
                })?;
            if n == 0 {
                self.poison("EOF");
                return Err(Error::ConnectionClosed(if self.rbuf.is_empty() {
                    "while a reply was expected".into()
                } else {
                    format!(
                        "in the middle of a reply ({} bytes received)",
                        self.rbuf.len()
                    )
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_fast_path_agrees_with_the_decoder() {
        let mut body = Vec::new();
        put_sexp_param(&mut body, &Sexp::from(vec![1u8, 2, 3, 4, 5])).unwrap();
        let with_attr = Sexp::from(vec![9u8]).with_attr("class", Sexp::string("x"));
        let mut attr_body = Vec::new();
        put_sexp_param(&mut attr_body, &with_attr).unwrap();
        assert_eq!(raw_reply_range(&attr_body), None);
        assert_eq!(
            raw_reply_range(&body).map(|r| body[r].to_vec()),
            Some(vec![1, 2, 3, 4, 5])
        );
        // Every truncation or corrupted count: the fast path never claims bytes the decoder
        // would reject, and agrees with it when it does claim them.
        for cut in 0..body.len() {
            assert_eq!(raw_reply_range(&body[..cut]), None, "cut {cut}");
        }
        for count in [0i32, 4, 5, 6, 8, -1, i32::MAX] {
            let mut b = body.clone();
            b[8..12].copy_from_slice(&count.to_le_bytes());
            if let Some(r) = raw_reply_range(&b) {
                let decoded = decode_reply_sexp(&b, DecodeLimits::default()).unwrap();
                assert_eq!(decoded.as_raw(), Some(&b[r]));
            }
        }
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let opts = ConnectOptions {
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..Default::default()
        };
        let text = format!("{opts:?}");
        assert!(
            !text.contains("hunter2") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
