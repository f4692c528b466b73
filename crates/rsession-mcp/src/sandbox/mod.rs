//! The direct backend's OS sandbox: each session's R runs in its own
//! bubblewrap (`bwrap`, Debian's `bubblewrap`) container of Linux namespaces.
//!
//! What a session's R gets, by [`SandboxMode`]:
//!
//! | | `workspace-write` (default) | `read-only` | `danger-full-access` |
//! |---|---|---|---|
//! | reads | `/usr`, `/etc` (without `shadow`/`gshadow`), `/opt`, its workspace, its private `/tmp`, each `--sandbox-read` folder | same | everything the server's user can |
//! | writes | its workspace (`/workspace` inside), its private `/tmp` | its private `/tmp` only | everything the server's user can |
//! | network | none: its own network namespace with only loopback (`--allow-network` shares the host's) | same | the host's |
//! | processes | its own PID namespace: sees and signals only its own processes; at most `--max-processes` | same | the server's user's |
//! | memory | each R process is killed past `--memory-limit` (the [`memory_guard`]) | same | no limit |
//!
//! One sandbox per session, each with its own Rserve listening on a Unix
//! socket in a private run directory, so the server reaches R without any
//! network and sessions share nothing: no session sees another's workspace or
//! processes. When the server runs as root, R runs as `nobody`
//! ([`SANDBOX_UID`]) so root's files stay root's. The sandbox ends with the
//! server (`--die-with-parent`).
//!
//! No path or command filtering is done in R: the kernel's namespaces and
//! rlimits, set up by bubblewrap and util-linux's `prlimit`, are the
//! boundary. [`preflight`] refuses to start a sandboxed mode where
//! bubblewrap cannot build one, naming what is missing; nothing silently runs
//! unsandboxed.

pub mod bwrap;
pub mod memory_guard;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// How much of the machine a session's R may touch (the `--sandbox` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// Reads the system, its workspace and private temp; writes only its
    /// workspace and private temp; no network.
    WorkspaceWrite,
    /// As `workspace-write`, but the workspace is read-only: writes go only
    /// to its private temp.
    ReadOnly,
    /// No sandbox: R runs with the server user's rights (files, network,
    /// processes). Printed as a warning at start.
    DangerFullAccess,
}

impl SandboxMode {
    /// The flag value (`workspace-write`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::WorkspaceWrite => "workspace-write",
            SandboxMode::ReadOnly => "read-only",
            SandboxMode::DangerFullAccess => "danger-full-access",
        }
    }

    /// Whether R runs inside a sandbox in this mode.
    pub fn is_sandboxed(self) -> bool {
        self != SandboxMode::DangerFullAccess
    }
}

/// Everything that shapes one session's sandbox.
#[derive(Debug, Clone)]
pub struct SandboxPolicy {
    /// Which mode; [`SandboxMode::DangerFullAccess`] builds no sandbox.
    pub mode: SandboxMode,
    /// Share the host's network namespace instead of a private one with
    /// only loopback (`--allow-network`).
    pub allow_network: bool,
    /// Resident memory, in bytes, past which the memory guard kills an R
    /// process of the session (`--memory-limit`).
    pub memory_limit_bytes: u64,
    /// `RLIMIT_NPROC` inside the sandbox's user namespace: processes (and
    /// threads) the session's R may have at once (`--max-processes`).
    pub max_processes: u32,
    /// The bubblewrap executable (`--bwrap`, default `bwrap` on `PATH`).
    pub bwrap: PathBuf,
    /// Host directories R may also read, at the same path (`--sandbox-read`):
    /// a data folder, a local package repository.
    pub read_only_paths: Vec<PathBuf>,
}

impl SandboxPolicy {
    /// The default policy in `mode`: no network, half the machine's memory
    /// per R process, 256 processes, `bwrap` from `PATH`, nothing extra to read.
    pub fn new(mode: SandboxMode) -> SandboxPolicy {
        SandboxPolicy {
            mode,
            allow_network: false,
            memory_limit_bytes: default_memory_limit(),
            max_processes: DEFAULT_MAX_PROCESSES,
            bwrap: PathBuf::from("bwrap"),
            read_only_paths: Vec::new(),
        }
    }
}

/// Default `--max-processes`.
pub const DEFAULT_MAX_PROCESSES: u32 = 256;

/// `nobody`: who R runs as inside the sandbox when the server runs as root.
pub const SANDBOX_UID: u32 = 65534;

/// Why a sandboxed mode cannot start on this machine.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {mode} sandbox cannot start: {why}. It needs bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; --bwrap names another path) and unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04 and later also an AppArmor profile that allows bwrap to create them). To run R without any sandbox, knowingly, start with --sandbox danger-full-access"
)]
pub struct Unavailable {
    /// The mode asked for.
    pub mode: &'static str,
    /// What failed (bubblewrap's own message where it gave one).
    pub why: String,
}

/// Default `--memory-limit`: half of this machine's memory (`MemTotal` in
/// `/proc/meminfo`), or 4 GiB where that cannot be read.
pub fn default_memory_limit() -> u64 {
    use procfs::Current;
    procfs::Meminfo::current()
        .map(|m| m.mem_total / 2)
        .unwrap_or(4 << 30)
}

/// Whether this process runs as root, so R must drop to [`SANDBOX_UID`].
pub fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Start one empty sandbox of `policy` running `true`, to learn before the
/// first session whether this machine can build it.
///
/// Errors: [`Unavailable`] with bubblewrap's message (not installed, user
/// namespaces disabled, ...) or a timeout after 10 s.
pub async fn preflight(policy: &SandboxPolicy) -> Result<(), Unavailable> {
    let unavailable = |why: String| Unavailable {
        mode: policy.mode.as_str(),
        why,
    };
    let scratch = tempfile::Builder::new()
        .prefix("rsession-preflight-")
        .tempdir()
        .map_err(|e| unavailable(format!("creating a scratch directory: {e}")))?;
    bwrap::hand_over(scratch.path(), 0o700).map_err(|e| unavailable(e.to_string()))?;
    let mut cmd = bwrap::command(policy, scratch.path(), scratch.path(), &["true".into()]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(10), cmd.output()).await {
        Err(_) => return Err(unavailable("bubblewrap did not finish within 10 s".into())),
        Ok(Err(e)) => {
            return Err(unavailable(format!(
                "cannot run {}: {e}",
                policy.bwrap.display()
            )));
        }
        Ok(Ok(out)) => out,
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(unavailable(format!(
        "{} exited with {}{}",
        policy.bwrap.display(),
        out.status,
        if stderr.is_empty() {
            String::new()
        } else {
            format!(" ({stderr})")
        }
    )))
}
