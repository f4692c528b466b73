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
use crate::session::conn::Interrupted;

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
    /// details), `session_lost` (R killed or gone; retry runs on a fresh R),
    /// `backend_unavailable`, `internal`.
    pub async fn call(
        &self,
        owner: &str,
        id: &str,
        mut call: HarnessCall,
        max_duration: Option<Duration>,
    ) -> Result<Reply, ToolError> {
        self.config.files.apply(&mut call)?;
        let duration = self.deadline(&call, max_duration);
        match call {
            HarnessCall::Execute { code, limits } => self
                .evaluate(owner, id, &code, limits, duration)
                .await
                .map(Reply::Report),
            HarnessCall::InstallPackages { .. } => {
                let code = call.render()?;
                let limits = self.exec_limits(None);
                self.evaluate(owner, id, &code, limits, duration)
                    .await
                    .map(Reply::Report)
            }
            _ => {
                let expr = call.render()?;
                self.helper(owner, id, &expr, call.upload(), duration)
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
        self.call(owner, id, call, max_duration).await?.try_into()
    }

    async fn evaluate(
        &self,
        owner: &str,
        id: &str,
        code: &str,
        limits: ExecLimits,
        duration: Duration,
    ) -> Result<ExecReport, ToolError> {
        let lim = &self.config.limits;
        if code.len() > lim.max_code_bytes {
            return Err(messages::code_too_large(code.len(), lim.max_code_bytes));
        }
        let output = limits.max_output_bytes;
        let session = self.find(owner, id).await?;
        let mut slot = self.lock(&session)?;
        session.touch();
        let conn = self.ensure_conn(&session, &mut slot).await?;
        let started = Instant::now();
        let result = conn
            .execute(code, &limits, started + duration, lim.grace)
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
            Err(Interrupted::Interrupted(partial)) => {
                self.metrics.execution("timeout", elapsed);
                let partial_text = partial
                    .map(|mut o| {
                        enforce_output_cap(&mut o, usize::try_from(output).unwrap_or(usize::MAX));
                        render_text(&o)
                    })
                    .unwrap_or_default();
                Err(messages::interrupted(duration).with_details(details(
                    json!({"state_kept": true, "partial_output": partial_text}),
                )))
            }
            Err(Interrupted::Killed) => {
                self.metrics.execution("killed", elapsed);
                self.mark_lost(&mut slot, messages::KILLED_REASON);
                Err(messages::killed(duration)
                    .with_details(details(json!({"state_kept": false, "timed_out": true}))))
            }
            Err(Interrupted::Lost(reason)) => {
                self.metrics.execution("lost", elapsed);
                if let Some(kill) = self.lost_to_oom(id, &mut slot).await {
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
        self.helper(owner, id, expr, None, duration).await
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
    ) -> Result<Sexp, ToolError> {
        let session = self.find(owner, id).await?;
        let mut slot = self.lock(&session)?;
        session.touch();
        let grace = self.config.limits.grace;
        let deadline = Instant::now() + duration;
        let conn = self.ensure_conn(&session, &mut slot).await?;
        let result = match upload {
            Some(bytes) => match conn.upload(UPLOAD_VAR, bytes).await {
                Ok(()) => conn.call(expr, deadline, grace).await,
                Err(e) => Err(e),
            },
            None => conn.call(expr, deadline, grace).await,
        };
        self.backend.record_activity(owner, id);
        if let Err(e) = &result
            && e.code == ErrorCode::SessionLost
        {
            if let Some(kill) = self.lost_to_oom(id, &mut slot).await {
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
