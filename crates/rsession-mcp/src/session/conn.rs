//! One live R behind one QAP1 connection, with the harness installed, and
//! evaluation under a deadline (deadline → SIGINT → grace → SIGKILL).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rserve::{ConnectOptions, Connection, Sexp, Signal};
use serde_json::json;
use tokio::time::{Instant, timeout_at};
use tokio_util::task::AbortOnDropHandle;

use crate::errors::{ErrorCode, ToolError};
use crate::harness::{self, ExecLimits, ExecOutcome, ExecStatus, HarnessCall};
use crate::session::oom::{MemoryState, OomKill};
use crate::session::{Endpoint, Progress, Watch};

/// Bytes of a harness reply beyond the output cap allowed for plots and framing.
const REPLY_HEADROOM: usize = 64 << 20;

/// Why an evaluation was stopped before R answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its deadline passed.
    Deadline,
    /// The caller cancelled the call (MCP `notifications/cancelled`, or a
    /// cancelled task).
    Cancelled,
}

/// How an evaluation under a deadline ended when it did not simply return.
#[derive(Debug)]
pub enum Interrupted {
    /// The deadline passed or the call was cancelled, and SIGINT stopped R
    /// within the grace period; the R state is kept. Carries whatever output
    /// the harness had captured, if its reply made it back.
    Interrupted(Stop, Option<ExecOutcome>),
    /// R did not stop within the grace period after SIGINT and was killed.
    /// The connection is gone.
    Killed(Stop),
    /// The connection broke (R exited, crashed, or the network failed).
    Lost(String),
}

/// A connected R with the harness installed and the workspace set up.
#[derive(Debug)]
pub struct RConn {
    conn: Connection,
    pid: i32,
    endpoint: Endpoint,
    opts: ConnectOptions,
    /// `R.version.string` of this R.
    pub r_version: String,
    /// `"ragg"`, `"cairo"` or `"png"`: how plots are drawn.
    pub png_backend: String,
    /// Absolute workspace path as R sees it.
    pub workspace: String,
    /// The cgroup's memory state when this connection opened (its OOM-kill
    /// counter is the baseline of [`RConn::lost_to_oom`]).
    pub memory: MemoryState,
    /// Path of the harness's output spool as R sees it (progress reads its
    /// last line while an evaluation runs); `None` from an older harness.
    spool: Option<String>,
    /// Spool offset where the next evaluation's output starts (the last
    /// result's `spool_end`), so progress never shows an earlier call's line.
    spool_start: u64,
    /// What `.rsession_db$cdm_setup()` reported: the `cdm` handle of an OMOP
    /// CDM database (kind, schemas, tables, CDM version, persons, or an
    /// error); `None` when the session's database is no CDM.
    pub cdm: Option<serde_json::Value>,
    /// Whether the Rserve parent had preloaded this very harness (crate `rsession-harness`;
    /// pool pods do), so it was not installed over this connection.
    pub harness_preloaded: bool,
}

fn backend_unavailable(endpoint: &Endpoint, e: &rserve::Error) -> ToolError {
    ToolError::new(
        ErrorCode::BackendUnavailable,
        format!("cannot reach R at {}: {e}", endpoint.addr),
    )
    .with_details(json!({"endpoint": endpoint.addr}))
}

/// Map a QAP1 error on an established connection to a tool error.
pub fn map_rserve_error(e: &rserve::Error) -> ToolError {
    if e.is_connection_lost() {
        ToolError::new(
            ErrorCode::SessionLost,
            format!(
                "the R process of this session is gone ({e}); the next call starts a fresh R in the same workspace"
            ),
        )
    } else {
        ToolError::internal(format!("R request failed: {e}"))
    }
}

/// How long a refused connect is retried before `backend_unavailable`.
const CONNECT_REFUSED_RETRY: Duration = Duration::from_secs(8);

fn is_connection_refused(e: &rserve::Error) -> bool {
    matches!(e, rserve::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
}

impl RConn {
    /// Connect to `endpoint`, install the harness and run `init` (workspace
    /// created if missing, `setwd` into it, private library on `.libPaths()`).
    ///
    /// Errors: `backend_unavailable` when Rserve cannot be reached or refuses
    /// the login; `internal` when the harness does not install.
    pub async fn open(endpoint: &Endpoint, connect_timeout: Duration) -> Result<RConn, ToolError> {
        let opts = ConnectOptions {
            username: endpoint.credentials.as_ref().map(|c| c.username.clone()),
            password: endpoint.credentials.as_ref().map(|c| c.password.clone()),
            connect_timeout,
            max_reply_bytes: REPLY_HEADROOM,
        };
        // A refused connect (and only that) is retried with backoff for a few
        // seconds. The operator publishes the pod IP as `status.endpoint` once
        // the pod is Ready, which accepts at once; the retry stays as a safety
        // net for a Service address (older operators, `--rserve` names), which
        // refuses for a moment after its pod turns Ready until the node's proxy
        // has programmed the endpoint, and for an Rserve still starting.
        let mut conn = (|| Connection::connect(&endpoint.addr, &opts))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_millis(800))
                    .with_total_delay(Some(CONNECT_REFUSED_RETRY))
                    .without_max_times(),
            )
            .when(is_connection_refused)
            .await
            .map_err(|e| backend_unavailable(endpoint, &e))?;
        let pid = conn
            .child_pid()
            .ok_or_else(|| ToolError::internal("Rserve did not report the R process id"))?;
        let init = HarnessCall::Init {
            workspace: endpoint.workspace.clone(),
        }
        .render()?;
        let init_failed =
            |e: rserve::Error| ToolError::internal(format!("preparing the workspace failed: {e}"));
        // One round trip when the Rserve parent preloaded this harness (pool pods do): `init`
        // runs at once. Otherwise the answer is NULL, and the harness is installed first.
        let preloaded = conn
            .eval(&rsession_harness::if_preloaded(&init))
            .await
            .map_err(init_failed)?;
        let harness_preloaded = !preloaded.is_null();
        let info = if harness_preloaded {
            preloaded
        } else {
            conn.void_eval(harness::HARNESS_R).await.map_err(|e| {
                ToolError::internal(format!("installing the R harness failed: {e}"))
            })?;
            conn.eval(&init).await.map_err(init_failed)?
        };
        let text = |name: &str| {
            info.get(name)
                .and_then(Sexp::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let memory = info
            .get("memory")
            .map(MemoryState::from_sexp)
            .unwrap_or_default();
        // The `cdm` handle of an OMOP CDM database (nothing without CDM_SCHEMA);
        // its own failures come back as data, so only a broken call fails here.
        let cdm_setup = HarnessCall::CdmSetup.render()?;
        let cdm = conn
            .eval(&cdm_setup)
            .await
            .map_err(|e| ToolError::internal(format!("preparing the cdm handle failed: {e}")))
            .map(|v| crate::sexp_json::to_json(&v))?;
        let cdm = Some(cdm).filter(|v| !v.is_null());
        Ok(RConn {
            pid,
            r_version: text("r_version"),
            png_backend: text("png_backend"),
            workspace: text("workspace"),
            spool: Some(text("spool")).filter(|s| !s.is_empty()),
            spool_start: 0,
            memory,
            cdm,
            harness_preloaded,
            endpoint: endpoint.clone(),
            opts,
            conn,
        })
    }

    /// Process id of the R behind this connection.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// After this connection was lost: whether the out-of-memory killer ended
    /// its R. The cgroup's memory state is read again over a short-lived fresh
    /// connection to the same endpoint (no backend lookup, so this works while
    /// the Kubernetes API is down); a grown OOM-kill counter since this
    /// connection opened is an OOM kill. `None` when it did not grow, when
    /// either reading is unknown, or when the probe fails or takes longer than
    /// `limit` (then nothing is claimed).
    pub async fn lost_to_oom(&mut self, limit: Duration) -> Option<OomKill> {
        let now = match tokio::time::timeout(
            limit,
            read_memory_state(&self.endpoint, &self.opts, limit),
        )
        .await
        {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => {
                tracing::debug!(addr = %self.endpoint.addr, error = %e, "reading the OOM-kill counter after a loss failed");
                return None;
            }
            Err(_) => {
                tracing::debug!(addr = %self.endpoint.addr, "reading the OOM-kill counter after a loss timed out");
                return None;
            }
        };
        now.oom_killed_since(&self.memory).then_some(OomKill {
            limit_bytes: now.limit_bytes.or(self.memory.limit_bytes),
            killed_by: crate::session::oom::KilledBy::OomKiller,
        })
    }

    /// Evaluate `code` through the harness. At `deadline`, or when
    /// `watch.cancel` fires, R gets SIGINT via a second connection; if it has
    /// not answered `grace` later it gets SIGKILL. While R runs,
    /// `watch.progress` gets a report every [`PROGRESS_EVERY`]. The reply may
    /// be up to `limits.max_output_bytes` plus plots.
    pub async fn execute(
        &mut self,
        code: &str,
        limits: &ExecLimits,
        deadline: Instant,
        grace: Duration,
        watch: &Watch,
    ) -> Result<Result<ExecOutcome, Interrupted>, ToolError> {
        let call = HarnessCall::Execute {
            code: code.to_string(),
            limits: *limits,
        }
        .render()?;
        let max_reply = REPLY_HEADROOM
            + usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX / 4)
            + usize::try_from(
                limits
                    .max_plot_bytes
                    .saturating_mul(u64::from(limits.max_plots)),
            )
            .unwrap_or(usize::MAX / 4);
        self.conn.set_max_reply_bytes(max_reply);
        let reply = self.eval_until(&call, deadline, grace, watch).await;
        if let Ok(sexp) | Err(EvalEnd::Interrupted(_, Ok(sexp))) = &reply {
            self.spool_start = harness::spool_end(sexp);
        }
        match reply {
            Ok(sexp) => {
                let outcome = harness::decode_outcome(&sexp)
                    .map_err(|e| ToolError::internal(e.to_string()))?;
                Ok(Ok(outcome))
            }
            Err(EvalEnd::Interrupted(stop, Ok(sexp))) => match harness::decode_outcome(&sexp) {
                // finished on its own just as the deadline passed
                Ok(outcome) if outcome.status != ExecStatus::Interrupted => Ok(Ok(outcome)),
                outcome => Ok(Err(Interrupted::Interrupted(stop, outcome.ok()))),
            },
            Err(EvalEnd::Interrupted(stop, Err(_))) => {
                Ok(Err(Interrupted::Interrupted(stop, None)))
            }
            Err(EvalEnd::Killed(stop)) => Ok(Err(Interrupted::Killed(stop))),
            Err(EvalEnd::Failed(e)) if e.is_connection_lost() => {
                Ok(Err(Interrupted::Lost(e.to_string())))
            }
            Err(EvalEnd::Failed(e)) => Err(map_rserve_error(&e)),
        }
    }

    /// Evaluate a harness call (file and data tools) under a deadline and
    /// `watch` (as [`RConn::execute`]); a timeout, a cancellation or a lost
    /// connection becomes the matching tool error.
    pub async fn call(
        &mut self,
        expr: &str,
        deadline: Instant,
        grace: Duration,
        watch: &Watch,
    ) -> Result<Sexp, ToolError> {
        match self.eval_until(expr, deadline, grace, watch).await {
            Ok(s) => Ok(s),
            Err(EvalEnd::Interrupted(Stop::Deadline, _)) => Err(ToolError::new(
                ErrorCode::ExecutionTimeout,
                "the operation took longer than its deadline and was interrupted; R state is kept",
            )),
            Err(EvalEnd::Interrupted(Stop::Cancelled, _)) => Err(ToolError::new(
                ErrorCode::Cancelled,
                "the operation was cancelled and R was interrupted; R state is kept",
            )),
            Err(EvalEnd::Killed(_)) => Err(ToolError::new(
                ErrorCode::SessionLost,
                "the operation did not stop after an interrupt and R was killed; the next call starts a fresh R in the same workspace",
            )),
            Err(EvalEnd::Failed(rserve::Error::Eval { message, .. })) => {
                Err(r_error_to_tool_error(message.trim()))
            }
            Err(EvalEnd::Failed(e)) => Err(map_rserve_error(&e)),
        }
    }

    async fn eval_until(
        &mut self,
        expr: &str,
        deadline: Instant,
        grace: Duration,
        watch: &Watch,
    ) -> Result<Sexp, EvalEnd> {
        self.conn.send_eval(expr).await.map_err(EvalEnd::Failed)?;
        // Progress runs beside the evaluation on its own connections and
        // ends with it (the guard aborts it on every return below).
        let _progress = watch.progress.is_active().then(|| {
            AbortOnDropHandle::new(tokio::spawn(report_progress(
                self.endpoint.clone(),
                self.opts.clone(),
                self.spool.clone().map(|path| (path, self.spool_start)),
                watch.progress.clone(),
                deadline,
            )))
        });
        let stop = tokio::select! {
            reply = self.conn.read_reply() => return reply.map_err(EvalEnd::Failed),
            () = tokio::time::sleep_until(deadline) => Stop::Deadline,
            () = watch.cancel.cancelled() => Stop::Cancelled,
        };
        tracing::info!(pid = self.pid, ?stop, "stopping R: sending SIGINT");
        if let Err(e) =
            rserve::signal_child(&self.endpoint.addr, &self.opts, self.pid, Signal::Interrupt).await
        {
            tracing::warn!(pid = self.pid, error = %e, "SIGINT not delivered");
        }
        if let Ok(reply) = timeout_at(Instant::now() + grace, self.conn.read_reply()).await {
            if let Err(e) = reply {
                if e.is_connection_lost() {
                    return Err(EvalEnd::Failed(e));
                }
                return Err(EvalEnd::Interrupted(stop, Err(e)));
            }
            // R may have finished just before the SIGINT arrived; then the
            // signal is still pending and would abort the next request.
            self.drain_pending_interrupt(grace).await;
            return Err(EvalEnd::Interrupted(stop, reply));
        }
        tracing::warn!(pid = self.pid, "R ignored SIGINT; sending SIGKILL");
        if let Err(e) =
            rserve::signal_child(&self.endpoint.addr, &self.opts, self.pid, Signal::Kill).await
        {
            tracing::warn!(pid = self.pid, error = %e, "SIGKILL not delivered");
        }
        // The kernel closes the socket when the process dies; bound the wait anyway.
        let _ = timeout_at(Instant::now() + grace, self.conn.read_reply()).await;
        Err(EvalEnd::Killed(stop))
    }

    /// Assign raw `bytes` to the global variable `name` (QAP1 `CMD_setSEXP`).
    pub async fn upload(&mut self, name: &str, bytes: &[u8]) -> Result<(), ToolError> {
        let value = Sexp::from(rserve::Value::Raw(bytes.to_vec()));
        self.conn
            .assign(name, &value)
            .await
            .map_err(|e| map_rserve_error(&e))
    }

    /// Absorb a SIGINT that arrived after R had already replied: a pending
    /// interrupt makes R abandon the next evaluation before it starts, so run
    /// a no-op for it to hit. Harmless when nothing is pending.
    async fn drain_pending_interrupt(&mut self, limit: Duration) {
        match tokio::time::timeout(limit, self.conn.void_eval("invisible(NULL)")).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(pid = self.pid, error = %e, "absorbed a pending interrupt")
            }
            Err(_) => tracing::warn!(pid = self.pid, "no-op after interrupt did not return"),
        }
    }

    /// Remove the workspace (used by `close_session` on backends whose
    /// workspace lives only as long as the session), then close.
    pub async fn destroy_workspace(mut self) {
        let expr = "local({ ws <- getwd(); setwd(tempdir()); unlink(ws, recursive = TRUE) })";
        if let Err(e) = self.conn.void_eval(expr).await {
            tracing::warn!(error = %e, "removing the workspace failed");
        }
        self.conn.close().await;
    }

    /// Close the connection, which ends the R process.
    pub async fn close(self) {
        self.conn.close().await;
    }
}

/// Evaluate `expr` once on a short-lived fresh connection to `endpoint`
/// (a fork of the same Rserve that ends with the connection, so it sees the
/// session's files but not its R objects), after voidEval of `setup` when
/// given. Connects within `connect_timeout`, without retry.
async fn probe(
    endpoint: &Endpoint,
    opts: &ConnectOptions,
    connect_timeout: Duration,
    setup: Option<&str>,
    expr: &str,
) -> Result<Sexp, String> {
    let opts = ConnectOptions {
        connect_timeout,
        ..opts.clone()
    };
    let mut conn = Connection::connect(&endpoint.addr, &opts)
        .await
        .map_err(|e| e.to_string())?;
    let value = match setup {
        Some(setup) => match conn.void_eval(setup).await {
            Ok(()) => conn.eval(expr).await,
            Err(e) => Err(e),
        },
        None => conn.eval(expr).await,
    };
    conn.close().await;
    value.map_err(|e| e.to_string())
}

/// [`probe`] with the harness installed: `.rsession$memory_state()`.
async fn read_memory_state(
    endpoint: &Endpoint,
    opts: &ConnectOptions,
    limit: Duration,
) -> Result<MemoryState, String> {
    let expr = HarnessCall::MemoryState.render().map_err(|e| e.message)?;
    let state = probe(endpoint, opts, limit, Some(harness::HARNESS_R), &expr).await?;
    Ok(MemoryState::from_sexp(&state))
}

#[derive(Debug)]
enum EvalEnd {
    Interrupted(Stop, Result<Sexp, rserve::Error>),
    Killed(Stop),
    Failed(rserve::Error),
}

/// How often a running call reports progress (MCP `notifications/progress`).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Bytes of the spool's end read for the last printed line.
const SPOOL_TAIL_BYTES: u64 = 4096;

/// Longest last-line text put in a progress message, in characters.
const PROGRESS_LINE_CHARS: usize = 200;

/// Every [`PROGRESS_EVERY`] until aborted: report the seconds R has run
/// (progress; the deadline's seconds as total) and the last line it has
/// printed so far, read from the harness spool (`path`, and the offset this
/// evaluation's output starts at) over a fresh connection (a short-lived
/// fork of the same Rserve, which sees the same files). A failed read only
/// leaves the line out.
async fn report_progress(
    endpoint: Endpoint,
    opts: ConnectOptions,
    spool: Option<(String, u64)>,
    progress: Progress,
    deadline: Instant,
) {
    let started = Instant::now();
    let total = deadline
        .saturating_duration_since(started)
        .as_secs_f64()
        .ceil();
    let mut ticks = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let line = match &spool {
            Some((path, start)) => match last_line(&endpoint, &opts, path, *start).await {
                Ok(line) => line,
                Err(e) => {
                    tracing::debug!(addr = %endpoint.addr, error = %e, "reading the output spool for progress failed");
                    None
                }
            },
            None => None,
        };
        let elapsed = started.elapsed().as_secs_f64().floor();
        let message = match line {
            Some(line) => format!("R running for {elapsed:.0} s; last output: {line}"),
            None => format!("R running for {elapsed:.0} s"),
        };
        progress.report(elapsed, Some(total), message).await;
    }
}

/// The last non-empty line in the spool at `path` after offset `start` (at
/// most its final [`SPOOL_TAIL_BYTES`], read by a [`probe`] that needs no
/// harness), shortened to [`PROGRESS_LINE_CHARS`].
async fn last_line(
    endpoint: &Endpoint,
    opts: &ConnectOptions,
    path: &str,
    start: u64,
) -> Result<Option<String>, String> {
    let expr = HarnessCall::SpoolTail {
        path: path.to_string(),
        start,
        max_bytes: SPOOL_TAIL_BYTES,
    }
    .render()
    .map_err(|e| e.message)?;
    let tail = probe(endpoint, opts, PROGRESS_EVERY, None, &expr).await?;
    let text = String::from_utf8_lossy(tail.as_raw().unwrap_or_default()).into_owned();
    Ok(text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.chars().take(PROGRESS_LINE_CHARS).collect()))
}

/// Errors raised by harness helpers (`stop("rsession: ...")`) are the
/// caller's fault (bad path, missing file); any other R error is internal.
fn r_error_to_tool_error(message: &str) -> ToolError {
    match message.find("rsession: ") {
        Some(i) => ToolError::invalid(message[i + "rsession: ".len()..].trim().to_string()),
        None => ToolError::internal(format!("R error: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_stop_messages_become_invalid_argument() {
        let e = r_error_to_tool_error(
            "Error in h$resolve(path) : rsession: path leaves the workspace: ../x",
        );
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(e.message, "path leaves the workspace: ../x");
        let e = r_error_to_tool_error("Error: cannot allocate vector");
        assert_eq!(e.code, ErrorCode::Internal);
    }

    fn endpoint_at(addr: std::net::SocketAddr) -> Endpoint {
        Endpoint {
            addr: addr.to_string(),
            credentials: None,
            workspace: "/tmp/unused".into(),
        }
    }

    /// A loopback port nothing listens on (bound, then released).
    fn refused_addr() -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }

    #[tokio::test]
    async fn a_port_that_keeps_refusing_is_backend_unavailable_after_the_retry_window() {
        let addr = refused_addr();
        let started = Instant::now();
        let Err(e) = RConn::open(&endpoint_at(addr), Duration::from_secs(2)).await else {
            panic!("connected to a closed port");
        };
        assert_eq!(e.code, ErrorCode::BackendUnavailable);
        assert_eq!(e.details["endpoint"], addr.to_string());
        assert!(e.message.contains("cannot reach R"), "{}", e.message);
        // backon stops before a delay would pass the total, so the last wait (at most the
        // 800 ms maximum delay) may be skipped.
        assert!(
            started.elapsed() >= CONNECT_REFUSED_RETRY - Duration::from_millis(800),
            "gave up after {:?}, before the retry window",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_listener_that_appears_after_refusals_is_reached() {
        let addr = refused_addr();
        // Stands in for a Service whose endpoint is programmed a moment late; it speaks no
        // QAP1, so reaching it shows up as a handshake failure, not as "refused".
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let l = tokio::net::TcpListener::bind(addr).await.expect("rebind");
            let (mut s, _) = l.accept().await.expect("accept");
            tokio::io::AsyncWriteExt::write_all(&mut s, &[b'x'; 32])
                .await
                .expect("write");
        });
        let Err(e) = RConn::open(&endpoint_at(addr), Duration::from_secs(2)).await else {
            panic!("a non-Rserve peer was accepted");
        };
        late.await.expect("late listener");
        assert_eq!(e.code, ErrorCode::BackendUnavailable);
        assert!(!e.message.contains("refused"), "{}", e.message);
    }
}
