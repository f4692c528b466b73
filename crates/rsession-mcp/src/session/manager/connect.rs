//! Connecting a session's R, reconnecting after a loss, and telling an OOM
//! kill from other losses.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::messages::reset_notice;
use super::{Session, SessionManager, Slot};
use crate::errors::{ErrorCode, ToolError};
use crate::harness::HarnessCall;
use crate::session::Endpoint;
use crate::session::Watch;
use crate::session::conn::RConn;
use crate::session::oom::OomKill;
use crate::sexp_json::to_json;

/// How long, after a lost connection, a fresh connection may take to read the
/// OOM-kill counter again before the loss is reported without that check.
const OOM_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on restoring a checkpoint into an adopted session's fresh R.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a new session whose R stopped answering right after it was Ready is waited for to be
/// Ready again ([`SessionManager::connect_new`]), on top of each connect's own retry.
const NEW_SESSION_REWAIT: Duration = Duration::from_secs(60);

impl SessionManager {
    pub(super) async fn connect(&self, endpoint: &Endpoint) -> Result<RConn, ToolError> {
        let conn = RConn::open(endpoint, self.config.connect_timeout).await?;
        tracing::info!(pid = conn.pid(), addr = %endpoint.addr, workspace = %conn.workspace, harness_preloaded = conn.harness_preloaded, "R connected");
        Ok(conn)
    }

    /// Connects a session just created at `endpoint`. Where the backend's sessions can restart
    /// or move ([`crate::session::Backend::endpoint_moves`]: a pod's container restarted by
    /// its kubelet, the pod replaced), an endpoint that stops answering right after Ready is not
    /// the end: the backend is asked for the session's endpoint again, with backoff, until it
    /// is Ready and answers or [`NEW_SESSION_REWAIT`] has passed. Returns the endpoint that
    /// answered. Errors: those of [`RConn::open`], then of [`crate::session::Backend::endpoint`].
    pub(super) async fn connect_new(
        &self,
        owner: &str,
        id: &str,
        endpoint: Endpoint,
    ) -> Result<(Endpoint, RConn), ToolError> {
        let first = match self.connect(&endpoint).await {
            Ok(conn) => return Ok((endpoint, conn)),
            Err(e) => e,
        };
        if first.code != ErrorCode::BackendUnavailable || !self.backend.endpoint_moves() {
            return Err(first);
        }
        tracing::warn!(session_id = %id, error = %first, "a new session's R does not answer; waiting for it to be Ready again");
        let attempt = || async {
            let endpoint = self.backend.endpoint(owner, id).await?;
            let conn = self.connect(&endpoint).await?;
            Ok((endpoint, conn))
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(250))
                    .with_max_delay(Duration::from_secs(2))
                    .with_total_delay(Some(NEW_SESSION_REWAIT))
                    .without_max_times(),
            )
            .when(|e: &ToolError| {
                matches!(
                    e.code,
                    ErrorCode::BackendUnavailable | ErrorCode::SessionNotReady
                )
            })
            .notify(|e: &ToolError, after: Duration| {
                tracing::info!(session_id = %id, error = %e, retry_in_ms = after.as_millis(), "new session not answering yet");
            })
            .await
    }

    /// Make sure the slot has a live R; after a loss, connect a fresh one and
    /// remember to tell the next result.
    pub(super) async fn ensure_conn<'a>(
        &self,
        session: &Session,
        slot: &'a mut Slot,
    ) -> Result<&'a mut RConn, ToolError> {
        if slot.conn.is_none() {
            let looked_up = self.backend.endpoint(&session.owner, &session.id).await;
            let (endpoint, mut conn) = match (looked_up, slot.endpoint.clone()) {
                (Ok(endpoint), _) => {
                    let conn = self.connect(&endpoint).await?;
                    (endpoint, conn)
                }
                // The backend cannot say where the session is right now (the
                // Kubernetes API is down), but it was reachable before: its
                // Rserve usually still runs there (only the forked R ended),
                // and the per-session login refuses any other Rserve.
                (Err(e), Some(last)) if e.code == ErrorCode::BackendUnavailable => {
                    tracing::warn!(session_id = %session.id, error = %e, addr = %last.addr, "endpoint lookup failed; reconnecting to the last known endpoint");
                    match self.connect(&last).await {
                        Ok(conn) => (last, conn),
                        Err(connect_error) => {
                            tracing::warn!(session_id = %session.id, error = %connect_error, "the last known endpoint does not answer either");
                            return Err(e);
                        }
                    }
                }
                (Err(e), _) => return Err(e),
            };
            slot.workspace = Some(conn.workspace.clone());
            slot.r_version = Some(conn.r_version.clone());
            slot.cdm = conn.cdm.clone();
            if let Some(reason) = slot.lost.take() {
                slot.pending_notice =
                    Some(match self.restore_after_loss(&reason, &mut conn).await {
                        Some(report) => report,
                        None => reset_notice(&reason),
                    });
            }
            slot.endpoint = Some(endpoint);
            slot.conn = Some(conn);
        }
        slot.conn
            .as_mut()
            .ok_or_else(|| ToolError::internal("no R connection after connecting"))
    }

    /// A session adopted after a server restart, on a backend that
    /// checkpoints at shutdown ([`crate::session::Backend::checkpoints`]), or
    /// any fresh R after a loss on a backend whose workspaces outlive R
    /// ([`crate::session::Backend::restores_after_loss`]): restore the last
    /// checkpoint into the fresh R and say what came back and how old it is.
    /// `None` when that does not apply or there is no checkpoint.
    async fn restore_after_loss(&self, reason: &str, conn: &mut RConn) -> Option<String> {
        let adopted = reason == super::messages::ADOPTED_REASON;
        if !(adopted && self.backend.checkpoints() || self.backend.restores_after_loss()) {
            return None;
        }
        let deadline = tokio::time::Instant::now() + RESTORE_TIMEOUT;
        let grace = self.config.limits.grace;
        let expr = HarnessCall::Restore.render().ok()?;
        let reply = conn.call(&expr, deadline, grace, &Watch::default()).await;
        match reply {
            Ok(report) => {
                let notice = super::messages::restored_notice(&to_json(&report));
                Some(if adopted {
                    notice
                } else {
                    format!("The previous R ended ({reason}). {notice}")
                })
            }
            Err(e) if e.message.contains("no checkpoint at") => None,
            Err(e) => Some(format!(
                "R state could not be restored from the session's checkpoint ({}); this R is fresh, workspace files survived.",
                e.message
            )),
        }
    }

    /// After the slot's connection was lost: whether the backend's memory
    /// guard ([`crate::session::Backend::memory_kill`]) or the OOM killer
    /// ended its R (see [`RConn::lost_to_oom`]).
    pub(super) async fn lost_to_oom(
        &self,
        owner: &str,
        id: &str,
        slot: &mut Slot,
    ) -> Option<OomKill> {
        if let Some(kill) = self.backend.memory_kill(owner, id).await {
            tracing::warn!(session_id = %id, memory_limit_bytes = ?kill.limit_bytes, "R was killed by the sandbox's memory guard");
            return Some(kill);
        }
        let conn = slot.conn.as_mut()?;
        let kill = conn
            .lost_to_oom(OOM_PROBE_TIMEOUT.min(self.config.connect_timeout))
            .await?;
        tracing::warn!(session_id = %id, pid = conn.pid(), memory_limit_bytes = ?kill.limit_bytes, "R was killed by the out-of-memory killer");
        Some(kill)
    }

    pub(super) fn mark_lost(&self, slot: &mut Slot, reason: &str) {
        slot.conn = None;
        slot.lost = Some(reason.to_string());
        self.metrics.session_lost();
    }
}
