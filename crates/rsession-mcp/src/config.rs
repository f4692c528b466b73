//! Command-line flags (each also settable by an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

pub use crate::sandbox::SandboxMode;
use crate::sandbox::SandboxPolicy;
use crate::session::{Limits, ManagerConfig};

/// MCP transport.
/// `--workspace-root` value asking for a temporary folder of workspaces,
/// removed when the server stops (sessions are not kept across restarts).
pub const TEMP_WORKSPACE_ROOT: &str = "temp";

/// Default workspace root of a sandboxing server running as root (its
/// sandboxed R runs as `nobody`, which must reach the folder).
pub const ROOT_WORKSPACE_ROOT: &str = "/var/lib/rsession/workspaces";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// JSON-RPC over stdin/stdout (desktop clients spawn the server). Logs go to stderr.
    Stdio,
    /// Streamable HTTP at `/mcp`, plus `/healthz`, `/readyz` and `/metrics`.
    Http,
}

/// Where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Rserve endpoints given with `--rserve`, or (without `--rserve`) a local
    /// Rserve started and stopped by this server. Not a sandbox.
    Direct,
    /// One RSession object per session in `--namespace`, run by
    /// rsession-operator as a locked-down pod; credentials from the cluster
    /// (in-cluster service account or `KUBECONFIG`).
    Kubernetes,
}

/// How HTTP callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// No authentication: every caller is `local` (loopback or trusted networks only).
    None,
    /// `Authorization: Bearer <token>` checked with a Kubernetes TokenReview,
    /// rights with a SubjectAccessReview on RSessions in `--namespace`.
    Kubernetes,
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// rsession-mcp: run R code for AI agents in persistent, limited sessions (MCP server).
#[derive(Debug, Clone, Parser)]
#[command(name = "rsession-mcp", version, about, long_about = None)]
pub struct Args {
    /// MCP transport.
    #[arg(long, value_enum, default_value = "stdio", env = "RSESSION_TRANSPORT")]
    pub transport: Transport,

    /// Address for the HTTP transport (`host:port`).
    #[arg(long, default_value = "127.0.0.1:8080", env = "RSESSION_LISTEN")]
    pub listen: SocketAddr,

    /// Host names accepted in the HTTP `Host` header (DNS-rebinding guard);
    /// repeatable. Default: loopback names only.
    #[arg(
        long = "allowed-host",
        env = "RSESSION_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Session backend.
    #[arg(long, value_enum, default_value = "direct", env = "RSESSION_BACKEND")]
    pub backend: BackendKind,

    /// Rserve endpoint `host:port` for the direct backend; repeatable (sessions
    /// are spread round-robin). Without it, a local Rserve is started.
    #[arg(long = "rserve", env = "RSESSION_RSERVE", value_delimiter = ',')]
    pub rserve: Vec<String>,

    /// Login user for `--rserve` endpoints (`auth required`).
    #[arg(long, env = "RSESSION_RSERVE_USER")]
    pub rserve_user: Option<String>,

    /// File holding the login password for `--rserve` endpoints (first line).
    #[arg(long, env = "RSESSION_RSERVE_PASSWORD_FILE")]
    pub rserve_password_file: Option<PathBuf>,

    /// Directory under which each session gets its workspace, as the Rserve
    /// host sees it. Default, sandboxed: the per-user data folder
    /// (`$XDG_DATA_HOME/rsession/workspaces`, else
    /// `~/.local/share/rsession/workspaces`; on macOS
    /// `~/Library/Application Support/rsession/workspaces`; as root
    /// `/var/lib/rsession/workspaces`), where sessions are checkpointed at
    /// shutdown and kept for a restarted server. `temp`:
    /// a new temporary folder removed at exit (nothing kept). Without a
    /// sandbox: a `workspaces` directory in the local Rserve's temporary
    /// directory (`danger-full-access`), or `/tmp/rsession-workspaces` for
    /// `--rserve`.
    #[arg(long, env = "RSESSION_WORKSPACE_ROOT")]
    pub workspace_root: Option<String>,

    /// R executable used to start the local Rserve.
    #[arg(long, default_value = "R", env = "RSESSION_R")]
    pub r_binary: String,

    /// Direct backend: the OS sandbox each session's R runs in (see
    /// README "Sandbox"). `workspace-write`: writes only its workspace and
    /// private temp, no network. `read-only`: writes only its private temp.
    /// `danger-full-access`: no sandbox, R has your rights. `--rserve`
    /// endpoints are not started by this server, so they need
    /// `danger-full-access`.
    #[arg(
        long,
        value_enum,
        default_value = "workspace-write",
        env = "RSESSION_SANDBOX"
    )]
    pub sandbox: SandboxMode,

    /// Sandboxed modes: give R the host's network (default: none at all).
    #[arg(long, env = "RSESSION_ALLOW_NETWORK")]
    pub allow_network: bool,

    /// Sandboxed modes: resident memory per R process past which it is
    /// killed (`session_lost` naming the limit), e.g. `2GiB`. Default: half
    /// of this machine's memory.
    #[arg(long, env = "RSESSION_MEMORY_LIMIT")]
    pub memory_limit: Option<bytesize::ByteSize>,

    /// Sandboxed modes: processes and threads a session's R may have at once
    /// (`RLIMIT_NPROC` in its user namespace), which stops fork bombs.
    #[arg(long, default_value_t = crate::sandbox::DEFAULT_MAX_PROCESSES, env = "RSESSION_MAX_PROCESSES")]
    pub max_processes: u32,

    /// Sandboxed modes: a host directory R may also read (read-only, at the
    /// same path), e.g. a data folder or a `file://` package repository.
    /// Repeatable.
    #[arg(long, value_name = "DIR")]
    pub sandbox_read: Vec<PathBuf>,

    /// Sandboxed direct backend: do not keep sessions across restarts (by
    /// default each is checkpointed at shutdown, kept under the workspace root,
    /// and can be resumed with `create_session` `resume`).
    #[arg(long, env = "RSESSION_NO_CHECKPOINT")]
    pub no_checkpoint: bool,

    /// Most sessions kept across restarts (newest first; older ones are
    /// deleted when the server starts).
    #[arg(long, default_value_t = 20, env = "RSESSION_MAX_KEPT_SESSIONS")]
    pub max_kept_sessions: usize,

    /// Where the audit trail goes (one JSON line per tool call: caller,
    /// session, tool, code and its SHA-256, status, duration, output size):
    /// `stderr`, `stdout` (HTTP only), `off`, or a file to append to.
    /// Default: `stdout` over HTTP, `stderr` over stdio.
    #[arg(long, env = "RSESSION_AUDIT_LOG")]
    pub audit_log: Option<crate::audit::AuditLog>,

    /// How much code audit events carry: `full` (code and SHA-256) or
    /// `hash` (only the SHA-256).
    #[arg(long, value_enum, default_value = "full", env = "RSESSION_AUDIT_CODE")]
    pub audit_code: crate::audit::AuditCode,

    /// Sandboxed modes: the bubblewrap executable.
    #[arg(long, default_value = "bwrap", env = "RSESSION_BWRAP")]
    pub bwrap: PathBuf,

    /// Deadline of an evaluation when the call sets none, in seconds.
    #[arg(long, default_value_t = 60.0, env = "RSESSION_DEFAULT_TIMEOUT_SECS")]
    pub default_timeout_secs: f64,

    /// Largest deadline a call may ask for, in seconds.
    #[arg(long, default_value_t = 600.0, env = "RSESSION_MAX_TIMEOUT_SECS")]
    pub max_timeout_secs: f64,

    /// Seconds between SIGINT and SIGKILL after the deadline.
    #[arg(long, default_value_t = 2.0, env = "RSESSION_INTERRUPT_GRACE_SECS")]
    pub interrupt_grace_secs: f64,

    /// Output budget per evaluation when the call sets none, in bytes.
    #[arg(long, default_value_t = 65536, env = "RSESSION_DEFAULT_OUTPUT_BYTES")]
    pub default_output_bytes: u64,

    /// Largest output budget a call may ask for, in bytes.
    #[arg(long, default_value_t = 4 << 20, env = "RSESSION_MAX_OUTPUT_BYTES")]
    pub max_output_bytes: u64,

    /// Largest code accepted per call, in bytes.
    #[arg(long, default_value_t = 256 * 1024, env = "RSESSION_MAX_CODE_BYTES")]
    pub max_code_bytes: usize,

    /// Most sessions open at once.
    #[arg(long, default_value_t = 64, env = "RSESSION_MAX_SESSIONS")]
    pub max_sessions: usize,

    /// Package repository for `install_package` (a CRAN mirror, or `file:///path` to a local repository).
    #[arg(
        long,
        default_value = "https://cloud.r-project.org",
        env = "RSESSION_PACKAGE_REPO"
    )]
    pub package_repo: String,

    /// Characters per page of tool output (at least 1000): a longer result
    /// is kept by the server and returned page by page (`read_output`).
    #[arg(long, default_value_t = 16_000, env = "RSESSION_PAGE_CHARS")]
    pub page_chars: usize,

    /// Most paged outputs kept at once (least recently used dropped first).
    #[arg(long, default_value_t = 64, env = "RSESSION_PAGER_MAX_OUTPUTS")]
    pub pager_max_outputs: usize,

    /// Most bytes of paged output kept at once, over all outputs.
    #[arg(long, default_value_t = 64 << 20, env = "RSESSION_PAGER_MAX_BYTES")]
    pub pager_max_bytes: usize,

    /// Largest tool result sent, in bytes of JSON (at least 64 KiB). Clients
    /// refuse larger messages (the Python SDK stops at 1 MiB per event): long
    /// text is paged, a large file is read in parts, and images that do not
    /// fit are left out with a note.
    #[arg(long, default_value_t = 512 << 10, env = "RSESSION_MAX_RESULT_BYTES")]
    pub max_result_bytes: usize,

    /// Most tool calls running as MCP tasks at once (tasks extension); a
    /// further one is refused with the retryable error `too_many_tasks`.
    #[arg(long, default_value_t = 32, env = "RSESSION_MAX_TASKS")]
    pub max_tasks: usize,

    /// Seconds a task, and then its result, is kept.
    #[arg(long, default_value_t = 3600, env = "RSESSION_TASK_TTL_SECS")]
    pub task_ttl_secs: u64,

    /// Namespace of the RSession objects (kubernetes backend). Default: the
    /// `POD_NAMESPACE` variable, else the kubeconfig's (or service
    /// account's) namespace.
    #[arg(long, env = "RSESSION_NAMESPACE")]
    pub namespace: Option<String>,

    /// YAML (or JSON) file with the `spec` of every RSession this frontend
    /// creates (kubernetes backend), for example a Persistent workspace, an
    /// idle timeout, or `lifecycle.checkpoint.interval`; read at start.
    /// Unset: the operator's defaults.
    #[arg(long, value_name = "FILE", env = "RSESSION_SESSION_SPEC")]
    pub session_spec: Option<std::path::PathBuf>,

    /// RSessionPool (in `--namespace`) new sessions start from when
    /// `create_session` names no `pool` (kubernetes backend): a warm start
    /// from its Ready pods. Not used for sessions it cannot serve (a
    /// `--session-spec` with a Persistent workspace or pod-shaping fields)
    /// nor while it does not exist (logged once): those start cold.
    #[arg(long, value_name = "NAME", env = "RSESSION_DEFAULT_POOL")]
    pub default_pool: Option<String>,

    /// Seconds `create_session` waits for an RSession to become Ready before
    /// answering `session_not_ready` (kubernetes backend).
    #[arg(long, default_value_t = 120.0, env = "RSESSION_READY_TIMEOUT_SECS")]
    pub ready_timeout_secs: f64,

    /// Shortest time between two `rsession.dev/last-activity` stamps of one
    /// session, in seconds (kubernetes backend). Keep it well below the
    /// sessions' `spec.lifecycle.idleTimeout`: a stamp skipped by this
    /// throttle is activity the operator does not see.
    #[arg(long, default_value_t = 10.0, env = "RSESSION_ACTIVITY_INTERVAL_SECS")]
    pub activity_interval_secs: f64,

    /// HTTP caller authentication. Default: `kubernetes` with the kubernetes
    /// backend, `none` otherwise.
    #[arg(long, value_enum, env = "RSESSION_AUTH")]
    pub auth: Option<AuthMode>,

    /// Audience bearer tokens must carry (TokenReview `spec.audiences`);
    /// repeatable. Default: the apiserver's own audiences.
    #[arg(
        long = "token-audience",
        env = "RSESSION_TOKEN_AUDIENCES",
        value_delimiter = ','
    )]
    pub token_audiences: Vec<String>,

    /// Seconds TokenReview and SubjectAccessReview answers are reused.
    #[arg(long, default_value_t = 60.0, env = "RSESSION_AUTH_CACHE_SECS")]
    pub auth_cache_secs: f64,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", env = "RSESSION_LOG_FORMAT")]
    pub log_format: LogFormat,
}

fn secs(s: f64, name: &str) -> Result<Duration, String> {
    if s.is_finite() && s > 0.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!("--{name} must be a positive number of seconds"))
    }
}

impl Args {
    /// The audit destination in effect (see `--audit-log`). Errors: `stdout`
    /// over stdio, where standard output carries MCP.
    pub fn audit_log(&self) -> Result<crate::audit::AuditLog, String> {
        use crate::audit::AuditLog;
        match (&self.audit_log, self.transport) {
            (Some(AuditLog::Stdout), Transport::Stdio) => Err(
                "--audit-log stdout cannot be used over stdio, where standard output carries MCP; use stderr or a file".into(),
            ),
            (Some(dest), _) => Ok(dest.clone()),
            (None, Transport::Http) => Ok(AuditLog::Stdout),
            (None, Transport::Stdio) => Ok(AuditLog::Stderr),
        }
    }

    /// The sandbox of direct-backend sessions these flags ask for.
    pub fn sandbox_policy(&self) -> SandboxPolicy {
        SandboxPolicy {
            mode: self.sandbox,
            allow_network: self.allow_network,
            memory_limit_bytes: self
                .memory_limit
                .map(|b| b.as_u64())
                .unwrap_or_else(crate::sandbox::default_memory_limit),
            max_processes: self.max_processes,
            bwrap: self.bwrap.clone(),
            read_only_paths: self.sandbox_read.clone(),
        }
    }

    /// The authentication in effect: `--auth`, else `kubernetes` for the
    /// kubernetes backend over HTTP, else `none`.
    pub fn auth_mode(&self) -> AuthMode {
        self.auth.unwrap_or(
            if self.backend == BackendKind::Kubernetes && self.transport == Transport::Http {
                AuthMode::Kubernetes
            } else {
                AuthMode::None
            },
        )
    }

    /// Where sandboxed sessions' workspaces live: the `--workspace-root`
    /// folder, `None` for [`TEMP_WORKSPACE_ROOT`] (a temporary folder), else
    /// the per-user data folder (see `--workspace-root`).
    /// Errors: no root given and no per-user data folder (no `HOME`).
    pub fn sandboxed_workspace_root(&self) -> Result<Option<std::path::PathBuf>, String> {
        match self.workspace_root.as_deref() {
            Some(TEMP_WORKSPACE_ROOT) => Ok(None),
            Some(dir) => Ok(Some(dir.into())),
            // As root, sandboxed R runs as nobody, which cannot pass through
            // root's home (0700): the system's state folder instead.
            None if nix::unistd::geteuid().is_root() => Ok(Some(ROOT_WORKSPACE_ROOT.into())),
            None => dirs::data_local_dir()
                .map(|d| Some(d.join("rsession").join("workspaces")))
                .ok_or_else(|| {
                    "no per-user data folder for the session workspaces (is HOME set?); pass --workspace-root DIR, or --workspace-root temp".into()
                }),
        }
    }

    /// `--workspace-root` for a backend without a sandbox: the folder, or
    /// `None` (that backend's default) when unset or [`TEMP_WORKSPACE_ROOT`].
    pub fn plain_workspace_root(&self) -> Option<String> {
        self.workspace_root
            .clone()
            .filter(|r| r != TEMP_WORKSPACE_ROOT)
    }

    /// The RSession spec of `--session-spec`, default when unset.
    /// Errors: the file cannot be read, or is not an RSession spec.
    pub fn session_spec(&self) -> Result<rsession_api::RSessionSpec, String> {
        let Some(path) = &self.session_spec else {
            return Ok(rsession_api::RSessionSpec::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--session-spec {}: {e}", path.display()))?;
        serde_saphyr::from_str(&text).map_err(|e| {
            format!(
                "--session-spec {}: not an RSession spec: {e}",
                path.display()
            )
        })
    }

    /// `--default-pool`, `None` when unset or empty.
    /// Errors: not an RSessionPool name.
    pub fn default_pool(&self) -> Result<Option<String>, String> {
        match self.default_pool.as_deref() {
            None | Some("") => Ok(None),
            Some(name) if crate::session::kubernetes::valid_pool_name(name) => {
                Ok(Some(name.to_string()))
            }
            Some(name) => Err(format!(
                "--default-pool {name:?} is not an RSessionPool name (lower-case letters, digits and '-', starting with a letter, at most {} characters)",
                crate::session::kubernetes::MAX_POOL_NAME
            )),
        }
    }

    /// `--ready-timeout-secs` as a duration.
    pub fn ready_timeout(&self) -> Result<Duration, String> {
        secs(self.ready_timeout_secs, "ready-timeout-secs")
    }

    /// `--activity-interval-secs` as a duration (zero allowed: stamp every evaluation).
    pub fn activity_interval(&self) -> Result<Duration, String> {
        let s = self.activity_interval_secs;
        if s.is_finite() && s >= 0.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err("--activity-interval-secs must be zero or a positive number of seconds".into())
        }
    }

    /// `--auth-cache-secs` as a duration.
    pub fn auth_cache_ttl(&self) -> Result<Duration, String> {
        secs(self.auth_cache_secs, "auth-cache-secs")
    }

    /// The sandbox mode when sessions' R runs sandboxed without network
    /// (direct backend, embedded Rserve, no `--allow-network`).
    pub fn offline_sandbox(&self) -> Option<SandboxMode> {
        (self.backend == BackendKind::Direct
            && self.rserve.is_empty()
            && self.sandbox.is_sandboxed()
            && !self.allow_network)
            .then_some(self.sandbox)
    }

    /// The session manager settings these flags describe.
    pub fn manager_config(&self) -> Result<ManagerConfig, String> {
        let limits = Limits {
            default_duration: secs(self.default_timeout_secs, "default-timeout-secs")?,
            max_duration: secs(self.max_timeout_secs, "max-timeout-secs")?,
            grace: secs(self.interrupt_grace_secs, "interrupt-grace-secs")?,
            default_output_bytes: self.default_output_bytes.max(1),
            max_output_bytes: self.max_output_bytes.max(1),
            max_code_bytes: self.max_code_bytes,
            ..Limits::default()
        };
        Ok(ManagerConfig {
            limits,
            max_sessions: self.max_sessions.max(1),
            package_repository: self.package_repo.clone(),
            offline_sandbox: self.offline_sandbox(),
            ..ManagerConfig::default()
        })
    }

    /// The task store bounds of these flags.
    pub fn task_config(&self) -> crate::tools::TaskConfig {
        crate::tools::TaskConfig {
            max_tasks: self.max_tasks.max(1),
            ttl: std::time::Duration::from_secs(self.task_ttl_secs.max(1)),
        }
    }

    /// Paging of long tool output (`read_output`), for the MCP server.
    pub fn pager_config(&self) -> crate::pager::PagerConfig {
        crate::pager::PagerConfig {
            page_chars: self.page_chars.max(1000),
            max_outputs: self.pager_max_outputs.max(1),
            max_bytes: self.pager_max_bytes,
            max_result_bytes: self.max_result_bytes.max(64 << 10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_repeatable_endpoints() {
        let a =
            Args::try_parse_from(["rsession-mcp", "--rserve", "a:1", "--rserve", "b:2"]).unwrap();
        assert_eq!(a.transport, Transport::Stdio);
        assert_eq!(a.rserve, vec!["a:1", "b:2"]);
        let c = a.manager_config().unwrap();
        assert_eq!(c.limits.default_duration, Duration::from_secs(60));
        assert_eq!(c.limits.grace, Duration::from_secs(2));
    }

    #[test]
    fn session_spec_reads_yaml_and_names_the_file_when_it_is_not_a_spec() {
        let dir = std::env::temp_dir().join(format!("rsession-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(
            &good,
            "workspace: {kind: Persistent, size: 1Gi}\nlifecycle: {idleTimeout: 15s, checkpoint: {interval: 2s}}\n",
        )
        .unwrap();
        let a = Args::try_parse_from(["rsession-mcp", "--session-spec", good.to_str().unwrap()])
            .unwrap();
        let spec = a.session_spec().unwrap();
        assert_eq!(spec.workspace.kind, rsession_api::WorkspaceKind::Persistent);
        assert_eq!(
            spec.lifecycle.checkpoint.interval.map(Duration::from),
            Some(Duration::from_secs(2))
        );
        assert!(spec.lifecycle.checkpoint.before_stop, "default kept");
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "workspace: [not, a, map]\n").unwrap();
        let a = Args::try_parse_from(["rsession-mcp", "--session-spec", bad.to_str().unwrap()])
            .unwrap();
        let e = a.session_spec().unwrap_err();
        assert!(
            e.contains("bad.yaml") && e.contains("not an RSession spec"),
            "{e}"
        );
        assert_eq!(
            Args::try_parse_from(["rsession-mcp"])
                .unwrap()
                .session_spec()
                .unwrap(),
            rsession_api::RSessionSpec::default()
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn kubernetes_backend_over_http_authenticates_by_default() {
        let a = Args::try_parse_from([
            "rsession-mcp",
            "--backend",
            "kubernetes",
            "--transport",
            "http",
            "--namespace",
            "sessions",
        ])
        .unwrap();
        assert_eq!(a.auth_mode(), AuthMode::Kubernetes);
        assert_eq!(a.namespace.as_deref(), Some("sessions"));
        assert_eq!(a.ready_timeout().unwrap(), Duration::from_secs(120));
        assert_eq!(a.activity_interval().unwrap(), Duration::from_secs(10));
        let every =
            Args::try_parse_from(["rsession-mcp", "--activity-interval-secs", "0"]).unwrap();
        assert_eq!(every.activity_interval().unwrap(), Duration::ZERO);
        let bad = Args::try_parse_from(["rsession-mcp", "--activity-interval-secs=-1"]).unwrap();
        assert!(bad.activity_interval().is_err());
        let stdio = Args::try_parse_from(["rsession-mcp", "--backend", "kubernetes"]).unwrap();
        assert_eq!(stdio.auth_mode(), AuthMode::None);
        let direct = Args::try_parse_from(["rsession-mcp", "--transport", "http"]).unwrap();
        assert_eq!(direct.auth_mode(), AuthMode::None);
    }

    #[test]
    fn default_pool_is_a_pool_name_and_empty_means_none() {
        let parse = |args: &[&str]| {
            Args::try_parse_from([&["rsession-mcp"], args].concat())
                .unwrap()
                .default_pool()
        };
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&["--default-pool", ""]), Ok(None));
        assert_eq!(
            parse(&["--default-pool", "warm-r"]),
            Ok(Some("warm-r".to_string()))
        );
        for bad in ["Warm", "warm/../x", "-warm", "warm-", &"w".repeat(41)] {
            let e = parse(&[&format!("--default-pool={bad}")]).unwrap_err();
            assert!(e.contains("--default-pool"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Args::try_parse_from(["rsession-mcp", "--transport", "carrier-pigeon"]).is_err());
        let a = Args::try_parse_from(["rsession-mcp", "--default-timeout-secs", "0"]).unwrap();
        assert!(a.manager_config().is_err());
    }
}
