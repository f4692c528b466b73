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
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
    let (reader, stdin) = on_reactor(
        io::stdin().as_fd(),
        |f| pipe::Receiver::from_file(f).map(|r| Box::pin(r) as Reader),
        |s| Box::pin(s) as Reader,
    );
    let (writer, stdout) = on_reactor(
        io::stdout().as_fd(),
        |f| pipe::Sender::from_file(f).map(|w| Box::pin(w) as Writer),
        |s| Box::pin(s) as Writer,
    );
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

/// A duplicate of `fd` on the reactor, made by `pipe_end` when it is a pipe
/// or FIFO and by `socket` when it is a Unix socket, with what it is
/// (`"pipe"`, `"socket"`, `"other"`). `None` for anything else, or when it
/// cannot be duplicated, examined or registered.
fn on_reactor<T>(
    fd: BorrowedFd<'_>,
    pipe_end: impl FnOnce(File) -> io::Result<T>,
    socket: impl FnOnce(UnixStream) -> T,
) -> (Option<T>, &'static str) {
    let Some(file) = fd.try_clone_to_owned().ok().map(File::from) else {
        return (None, "other");
    };
    let Some(kind) = file.metadata().ok().map(|m| m.file_type()) else {
        return (None, "other");
    };
    if kind.is_fifo() {
        (pipe_end(file).ok(), "pipe")
    } else if kind.is_socket() {
        let std_socket = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
        let registered = std_socket
            .set_nonblocking(true)
            .and_then(|()| UnixStream::from_std(std_socket));
        (registered.ok().map(socket), "socket")
    } else {
        (None, "other")
    }
}
