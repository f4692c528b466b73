//! Limits: the server-wide settings ([`ManagerConfig`], [`Limits`] for
//! evaluations, [`FileLimits`] for the file tools) and how a call's request
//! is clamped to them.

use std::time::Duration;

use super::SessionManager;
use crate::errors::ToolError;
use crate::harness::{ExecLimits, HarnessCall};

/// Server-wide evaluation limits. Per-call limits may lower the defaults
/// but never go above the maxima.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Deadline of `execute_in_session` when the call names none.
    pub default_duration: Duration,
    /// Largest deadline a call may ask for.
    pub max_duration: Duration,
    /// Time between SIGINT and SIGKILL.
    pub grace: Duration,
    /// Output budget (bytes) when the call names none.
    pub default_output_bytes: u64,
    /// Largest output budget a call may ask for.
    pub max_output_bytes: u64,
    /// Largest `code` accepted, in bytes (`code_too_large` above).
    pub max_code_bytes: usize,
    /// Plots returned per call.
    pub max_plots: u32,
    /// Largest PNG returned, in bytes.
    pub max_plot_bytes: u64,
    /// Deadline of `install_package` (clamped to `max_duration`).
    pub install_duration: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_duration: Duration::from_secs(60),
            max_duration: Duration::from_secs(600),
            grace: Duration::from_secs(2),
            default_output_bytes: 64 * 1024,
            max_output_bytes: 4 << 20,
            max_code_bytes: 256 * 1024,
            max_plots: 20,
            max_plot_bytes: 10 << 20,
            install_duration: Duration::from_secs(900),
        }
    }
}

/// Limits of the workspace file tools.
#[derive(Debug, Clone)]
pub struct FileLimits {
    /// Deadline of a file tool call.
    pub duration: Duration,
    /// Largest file `read_session_file` returns, in bytes.
    pub max_read_bytes: u64,
    /// Largest content `write_session_file` accepts, in bytes.
    pub max_write_bytes: usize,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            duration: Duration::from_secs(60),
            max_read_bytes: 4 << 20,
            max_write_bytes: 16 << 20,
        }
    }
}

impl FileLimits {
    /// Clamp a read to `max_read_bytes`; refuse a write above
    /// `max_write_bytes` (`invalid_argument`). Other calls pass unchanged.
    pub(super) fn apply(&self, call: &mut HarnessCall) -> Result<(), ToolError> {
        match call {
            HarnessCall::ReadFile { max_bytes, .. } => {
                *max_bytes = (*max_bytes).min(self.max_read_bytes);
            }
            HarnessCall::WriteFile { content, .. } if content.len() > self.max_write_bytes => {
                return Err(ToolError::invalid(format!(
                    "content is {} bytes; at most {} bytes per write",
                    content.len(),
                    self.max_write_bytes
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Manager settings.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Evaluation limits.
    pub limits: Limits,
    /// File tool limits.
    pub files: FileLimits,
    /// Bound on connecting to Rserve, logging in and installing the harness.
    pub connect_timeout: Duration,
    /// Most sessions open at once, per server.
    pub max_sessions: usize,
    /// Repository URL for `install_package` (CRAN mirror or `file://` repo).
    pub package_repository: String,
    /// The sandbox mode when sessions' R has no network at all (so
    /// `install_package` from a remote repository is refused up front).
    pub offline_sandbox: Option<crate::sandbox::SandboxMode>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            limits: Limits::default(),
            files: FileLimits::default(),
            connect_timeout: Duration::from_secs(30),
            max_sessions: 64,
            package_repository: "https://cloud.r-project.org".into(),
            offline_sandbox: None,
        }
    }
}

impl SessionManager {
    /// The limits inside R of an evaluation asking for `max_output_bytes`
    /// (default the server's default, clamped to its maximum).
    pub fn exec_limits(&self, max_output_bytes: Option<u64>) -> ExecLimits {
        let lim = &self.config.limits;
        ExecLimits {
            max_output_bytes: max_output_bytes
                .unwrap_or(lim.default_output_bytes)
                .min(lim.max_output_bytes),
            max_plots: lim.max_plots,
            max_plot_bytes: lim.max_plot_bytes,
        }
    }

    /// `max_duration` (default the evaluation default) clamped to the maximum.
    pub(super) fn clamp_duration(&self, max_duration: Option<Duration>) -> Duration {
        let lim = &self.config.limits;
        max_duration
            .unwrap_or(lim.default_duration)
            .min(lim.max_duration)
    }

    /// The deadline of `call`: the file-tool deadline for file calls, the
    /// install deadline (clamped) for installs, else `max_duration` clamped.
    pub(super) fn deadline(&self, call: &HarnessCall, max_duration: Option<Duration>) -> Duration {
        match call {
            HarnessCall::ListFiles { .. }
            | HarnessCall::ReadFile { .. }
            | HarnessCall::WriteFile { .. } => self.config.files.duration,
            HarnessCall::InstallPackages { .. } => {
                self.clamp_duration(Some(self.config.limits.install_duration))
            }
            _ => self.clamp_duration(max_duration),
        }
    }
}
