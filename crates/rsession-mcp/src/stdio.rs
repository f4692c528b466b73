//! The stdio transport's byte streams: the process's stdin and stdout as
//! tokio I/O registered with the reactor, when they are pipes or Unix
//! sockets, which is how MCP clients start a stdio server (the MCP spec's
//! "Transports" → "stdio": the client launches the server as a subprocess).
//!
//! Why not `tokio::io::stdin()`/`stdout()` (what `rmcp::transport::stdio()`
//! uses): those read and write on tokio's blocking thread pool, so every
//! request and every response crosses one more thread, a wake-up each way
//! per tool call. On a pipe (the official Python SDK, rmcp's own
//! `TokioChildProcess`) or a socket pair (Node's `child_process`, libuv)
//! the reactor waits on the descriptor itself. Anything else (a terminal,
//! a regular file, `/dev/null`) keeps tokio's stdio.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;

/// The reading half: stdin.
pub type Reader = Pin<Box<dyn AsyncRead + Send + Sync>>;
/// The writing half: stdout.
pub type Writer = Pin<Box<dyn AsyncWrite + Send + Sync>>;

/// stdin and stdout for `rmcp`'s `serve` (an `(AsyncRead, AsyncWrite)`
/// pair is a transport of newline-delimited JSON-RPC). Each is a duplicate
/// of descriptor 0 or 1, put in non-blocking mode and on the reactor when
/// it is a pipe or a Unix socket (see the module docs), else tokio's
/// stdio. Must be called inside a tokio runtime.
pub fn streams() -> (Reader, Writer) {
    let (reader, stdin) = match kind_of(io::stdin().as_fd()) {
        Some(Kind::Pipe(f)) => (
            pipe::Receiver::from_file(f)
                .ok()
                .map(|r| Box::pin(r) as Reader),
            "pipe",
        ),
        Some(Kind::Socket(s)) => (s.map(|s| Box::pin(s) as Reader), "socket"),
        None => (None, "other"),
    };
    let (writer, stdout) = match kind_of(io::stdout().as_fd()) {
        Some(Kind::Pipe(f)) => (
            pipe::Sender::from_file(f)
                .ok()
                .map(|w| Box::pin(w) as Writer),
            "pipe",
        ),
        Some(Kind::Socket(s)) => (s.map(|s| Box::pin(s) as Writer), "socket"),
        None => (None, "other"),
    };
    tracing::debug!(
        stdin,
        stdout,
        stdin_on_reactor = reader.is_some(),
        stdout_on_reactor = writer.is_some(),
        "stdio streams"
    );
    (
        reader.unwrap_or_else(|| Box::pin(tokio::io::stdin())),
        writer.unwrap_or_else(|| Box::pin(tokio::io::stdout())),
    )
}

/// What a standard descriptor is, as a duplicate of it.
enum Kind {
    /// A pipe or FIFO.
    Pipe(File),
    /// A Unix socket on the reactor (`None` when registering it failed).
    Socket(Option<UnixStream>),
}

/// `fd` duplicated, when it is a pipe or a Unix socket; `None` otherwise
/// or when it cannot be duplicated or examined.
fn kind_of(fd: std::os::fd::BorrowedFd<'_>) -> Option<Kind> {
    let file = File::from(fd.try_clone_to_owned().ok()?);
    let kind = file.metadata().ok()?.file_type();
    if kind.is_fifo() {
        Some(Kind::Pipe(file))
    } else if kind.is_socket() {
        let socket = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
        let on_reactor = socket
            .set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(socket));
        Some(Kind::Socket(on_reactor.ok()))
    } else {
        None
    }
}
