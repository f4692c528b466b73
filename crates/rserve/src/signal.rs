//! Interrupting or killing the R process behind a connection from a second connection.
//!
//! Rserve forks one R process per connection, and that process is busy while it evaluates,
//! so the signal has to come from elsewhere: a second QAP1 connection (another forked R, same
//! user) evaluates `tools::pskill(pid, tools::SIGINT)` or `tools::SIGKILL`. SIGINT makes R
//! abandon the evaluation with an error (the first connection then gets
//! [`crate::Error::Eval`] and stays usable); SIGKILL ends the process, so the first
//! connection's pending reply fails with a lost connection.

use crate::connection::{ConnectOptions, Connection};
use crate::error::Error;
use crate::protocol::Signal;

/// Sends `signal` to process `pid` through a fresh connection to `addr` made with `opts`
/// (same credentials as the session's), then closes that connection.
///
/// Returns whether `tools::pskill` reported success (`false`: no such process, or not ours).
/// Errors: anything [`Connection::connect`] or [`Connection::eval`] can return.
pub async fn send_signal(
    addr: &str,
    opts: &ConnectOptions,
    pid: i32,
    signal: Signal,
) -> Result<bool, Error> {
    if pid <= 0 {
        return Err(Error::InvalidArgument(format!(
            "refusing to signal pid {pid}"
        )));
    }
    let mut conn = Connection::connect(addr, opts).await?;
    let delivered = conn
        .eval(&format!("tools::pskill({pid}L, {})", signal.r_constant()))
        .await?;
    conn.close().await;
    delivered
        .as_bools()
        .and_then(|b| b.first().copied().flatten())
        .ok_or_else(|| Error::Decode("tools::pskill did not return a logical".into()))
}

/// Like [`send_signal`], but `Ok(())` only when the signal was delivered;
/// [`Error::SignalNotDelivered`] when `tools::pskill` returned `FALSE` (e.g. the process has
/// already exited).
pub async fn signal_child(
    addr: &str,
    opts: &ConnectOptions,
    pid: i32,
    signal: Signal,
) -> Result<(), Error> {
    if send_signal(addr, opts, pid, signal).await? {
        Ok(())
    } else {
        Err(Error::SignalNotDelivered { pid, signal })
    }
}
