//! Running harness calls: [`SessionManager::call`] (every tool), evaluation
//! with its limits and failure mapping.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rserve::Sexp;
use serde_json::json;
use tokio::time::Instant;

use super::{SessionManager, messages};
use crate::errors::{ErrorCode, ToolError};
use crate::harness::{ExecLimits, ExecReport, HarnessCall, Reply, UPLOAD_VAR, enforce_output_cap};
use crate::render::render_text;
use crate::session::Watch;
use crate::session::conn::{Interrupted, Stop};

impl SessionManager {
    /// Run one harness call in the session `id` of `owner` under a deadline
    /// of `max_duration` (default the evaluation default, clamped to the
    /// maximum; file calls use the file-tool deadline, installs the install
    /// deadline). [`HarnessCall::Execute`] and
    /// [`HarnessCall::InstallPackages`] answer [`Reply::Report`] (an R error
    /// in the code is a normal result with status `error`); every other call
    /// answers [`Reply::Value`], the entry point's R value.
    ///
    /// Errors: `invalid_argument` (arguments refused by
    /// [`HarnessCall::render`], file limits; an R error whose message holds
    /// `rsession: `), `session_not_found`, `session_busy`, `code_too_large`,
    /// `execution_timeout` (R interrupted, state kept; partial output in
    /// details), `cancelled` (`watch.cancel` fired; R interrupted, state
    /// kept), `session_lost` (R killed or gone; retry runs on a fresh R),
    /// `backend_unavailable`, `internal`. While R runs, `watch.progress` gets
    /// the running time and last printed line every
    /// [`crate::session::conn::PROGRESS_EVERY`].
    pub async fn call(
        &self,
        owner: &str,
        id: &str,
        mut call: HarnessCall,
        max_duration: Option<Duration>,
        watch: &Watch,
    ) -> Result<Reply, ToolError> {
        self.config.files.apply(&mut call)?;
        let duration = self.deadline(&call, max_duration);
        match call {
            HarnessCall::Execute { code, limits } => self
                .evaluate(owner, id, &code, limits, duration, watch)
                .await
                .map(Reply::Report),
            HarnessCall::InstallPackages { .. } => {
                let code = call.render()?;
                let limits = self.exec_limits(None);
                self.evaluate(owner, id, &code, limits, duration, watch)
                    .await
                    .map(Reply::Report)
            }
            _ => {
                let expr = call.render()?;
                self.helper(owner, id, &expr, call.upload(), duration, watch)
                    .await
                    .map(Reply::Value)
            }
        }
    }

    /// Run `code` in the session: [`SessionManager::call`] with
    /// [`HarnessCall::Execute`] under [`SessionManager::exec_limits`].
    pub async fn execute(
        &self,
        owner: &str,
        id: &str,
        code: &str,
        max_duration: Option<Duration>,
        max_output_bytes: Option<u64>,
    ) -> Result<ExecReport, ToolError> {
        let call = HarnessCall::Execute {
            code: code.to_string(),
            limits: self.exec_limits(max_output_bytes),
        };
        let watch = Watch::default();
        self.call(owner, id, call, max_duration, &watch)
            .await?
            .try_into()
    }

    async fn evaluate(
        &self,
        owner: &str,
        id: &str,
        code: &str,
        limits: ExecLimits,
        duration: Duration,
        watch: &Watch,
    ) -> Result<ExecReport, ToolError> {
        let lim = &self.config.limits;
        if code.len() > lim.max_code_bytes {
            return Err(messages::code_too_large(code.len(), lim.max_code_bytes));
        }
        let output = limits.max_output_bytes;
        let session = self.find(owner, id).await?;
        let mut slot = self.lock(&session, watch).await?;
        session.touch();
        let conn = self.ensure_conn(&session, &mut slot).await?;
        let started = Instant::now();
        let result = conn
            .execute(code, &limits, started + duration, lim.grace, watch)
            .await;
        let elapsed = started.elapsed();
        session.executions.fetch_add(1, Ordering::Relaxed);
        session.touch();
        self.backend.record_activity(owner, id);
        let details = |extra: serde_json::Value| {
            let mut d = json!({
                "session_id": id,
                "max_duration_secs": duration.as_secs_f64(),
                "elapsed_secs": elapsed.as_secs_f64(),
            });
            if let (Some(d), Some(e)) = (d.as_object_mut(), extra.as_object()) {
                d.extend(e.clone());
            }
            d
        };
        match result? {
            Ok(mut outcome) => {
                enforce_output_cap(&mut outcome, usize::try_from(output).unwrap_or(usize::MAX));
                self.metrics.execution(outcome.status.as_str(), elapsed);
                Ok(ExecReport {
                    session_id: id.to_string(),
                    outcome,
                    state_reset_notice: slot.pending_notice.take(),
                    elapsed,
                    max_duration: duration,
                    max_output_bytes: output,
                })
            }
            Err(Interrupted::Interrupted(stop, partial)) => {
                let (label, error) = match stop {
                    Stop::Deadline => ("timeout", messages::interrupted(duration)),
                    Stop::Cancelled => ("cancelled", messages::cancelled(elapsed)),
                };
                self.metrics.execution(label, elapsed);
                let partial_text = partial
                    .map(|mut o| {
                        enforce_output_cap(&mut o, usize::try_from(output).unwrap_or(usize::MAX));
                        render_text(&o)
                    })
                    .unwrap_or_default();
                Err(error.with_details(details(
                    json!({"state_kept": true, "partial_output": partial_text}),
                )))
            }
            Err(Interrupted::Killed(stop)) => {
                self.metrics.execution("killed", elapsed);
                self.mark_lost(&mut slot, messages::KILLED_REASON);
                let timed_out = stop == Stop::Deadline;
                Err(messages::killed(duration, stop).with_details(details(
                    json!({"state_kept": false, "timed_out": timed_out, "cancelled": !timed_out}),
                )))
            }
            Err(Interrupted::Lost(reason)) => {
                self.metrics.execution("lost", elapsed);
                if let Some(kill) = self.lost_to_oom(owner, id, &mut slot).await {
                    self.mark_lost(&mut slot, &kill.reason());
                    return Err(
                        messages::oom_killed(&kill).with_details(details(kill.details(&reason)))
                    );
                }
                self.mark_lost(
                    &mut slot,
                    &format!("the connection ended during a call: {reason}"),
                );
                Err(messages::lost()
                    .with_details(details(json!({"state_kept": false, "reason": reason}))))
            }
        }
    }

    /// Evaluate R source `expr` as it is and return its value, under
    /// `max_duration` (default the evaluation default, clamped to the
    /// maximum). For tests and diagnostics: tools go through
    /// [`SessionManager::call`], which renders `expr` from escaped literals.
    ///
    /// Errors: as [`SessionManager::call`].
    pub async fn eval_helper(
        &self,
        owner: &str,
        id: &str,
        expr: &str,
        max_duration: Option<Duration>,
    ) -> Result<Sexp, ToolError> {
        let duration = self.clamp_duration(max_duration);
        self.helper(owner, id, expr, None, duration, &Watch::default())
            .await
    }

    /// Evaluate `expr` and return its value, after assigning `upload` (if
    /// any) to [`UPLOAD_VAR`] in R.
    async fn helper(
        &self,
        owner: &str,
        id: &str,
        expr: &str,
        upload: Option<&[u8]>,
        duration: Duration,
        watch: &Watch,
    ) -> Result<Sexp, ToolError> {
        let session = self.find(owner, id).await?;
        let mut slot = self.lock(&session, watch).await?;
        session.touch();
        let grace = self.config.limits.grace;
        let deadline = Instant::now() + duration;
        let conn = self.ensure_conn(&session, &mut slot).await?;
        let result = match upload {
            Some(bytes) => match conn.upload(UPLOAD_VAR, bytes).await {
                Ok(()) => conn.call(expr, deadline, grace, watch).await,
                Err(e) => Err(e),
            },
            None => conn.call(expr, deadline, grace, watch).await,
        };
        self.backend.record_activity(owner, id);
        if let Err(e) = &result
            && e.code == ErrorCode::SessionLost
        {
            if let Some(kill) = self.lost_to_oom(owner, id, &mut slot).await {
                self.mark_lost(&mut slot, &kill.reason());
                let mut details = kill.details(&e.message);
                details["session_id"] = json!(id);
                return Err(messages::oom_killed(&kill).with_details(details));
            }
            self.mark_lost(&mut slot, &e.message);
        }
        result
    }
}
