//! The embedded default: a local Rserve that the server starts and stops.
//!
//! Unsandboxed (`--sandbox danger-full-access`, and the test fixtures), one
//! Rserve serves every session and listens on a free loopback port (`remote
//! disable`). Sandboxed, each session has its own Rserve inside its own
//! bubblewrap sandbox ([`crate::sandbox`]), listening on a Unix socket in its
//! private run directory, with a memory guard on its processes. Either way it
//! requires a login
//! (`auth required`, `plaintext enable`, a generated password file readable
//! only by us), runs in the foreground (`daemon disable`) so it is our child
//! process, and keeps its files in a temporary directory removed on stop.
//! Rserve's own output goes to our log (stderr), never to stdout, which the
//! stdio transport owns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::PoisonError;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rand::Rng;
use rsession_harness::Preload;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::sandbox::memory_guard::{GuardKill, MemoryGuard};
use crate::sandbox::{SandboxPolicy, bwrap};
use crate::session::Credentials;

/// Errors starting the local Rserve.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// `R`/`Rscript` could not be run.
    #[error("cannot run {program}: {source} (install R: apt-get install r-base-core)")]
    NoR {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// R runs but the Rserve package is missing.
    #[error("the Rserve R package is not installed (apt-get install r-cran-rserve)")]
    NoRserve,
    /// Rserve exited or never accepted connections.
    #[error("Rserve did not start: {0}")]
    Startup(String),
    /// File system error preparing its directory.
    #[error("preparing the Rserve directory: {0}")]
    Io(#[from] std::io::Error),
}

/// How to start the local Rserve.
#[derive(Debug, Clone)]
pub struct LocalRserveOptions {
    /// `R` executable (default `R` on `PATH`).
    pub r_binary: String,
    /// Port; `None` picks a free loopback port.
    pub port: Option<u16>,
    /// How long to wait for Rserve to accept connections.
    pub startup_timeout: Duration,
    /// Run it inside a sandbox of this policy with this workspace (then
    /// `port` is ignored: it listens on a Unix socket).
    pub sandbox: Option<SandboxedAt>,
    /// One line of R the Rserve parent evaluates before it listens (Rserve's `eval`
    /// configuration key), so every forked connection inherits what it loads; a session pod
    /// preloads its packages the same way.
    pub preload: Option<String>,
    /// Whether and how the Rserve parent also loads the R harness before it listens
    /// (`rsession_harness::preload_r`, after `preload`): every forked connection then starts
    /// with it in place, so the server does not send it (77 KB of R to parse per session).
    /// `Compiled`, as pool pods do, costs the parent about 0.6 s more to start, which is why the
    /// sandboxed backend's spare only sources it (its start is on the path to the first
    /// session's result; docs/benchmarks.md, the sandbox).
    pub harness: Option<Preload>,
}

/// Where a sandboxed Rserve runs: its policy and the host directory bound as
/// its workspace.
#[derive(Debug, Clone)]
pub struct SandboxedAt {
    /// The sandbox to build (a sandboxed mode).
    pub policy: SandboxPolicy,
    /// Host path of the session workspace, bound at [`bwrap::WORKSPACE`].
    pub workspace: PathBuf,
}

impl Default for LocalRserveOptions {
    fn default() -> Self {
        LocalRserveOptions {
            r_binary: "R".into(),
            port: None,
            startup_timeout: Duration::from_secs(30),
            sandbox: None,
            preload: None,
            harness: None,
        }
    }
}

/// A running local Rserve. Dropping it kills its process group: Rserve, the R
/// forked for each connection and whatever those started; [`LocalRserve::stop`]
/// does so and waits for Rserve.
#[derive(Debug)]
pub struct LocalRserve {
    child: Child,
    /// The process group Rserve leads (its pid).
    group: Option<Pid>,
    addr: String,
    credentials: Credentials,
    dir: tempfile::TempDir,
    guard: Option<MemoryGuard>,
}

impl LocalRserve {
    /// Start Rserve and wait until it accepts connections.
    pub async fn start(opts: &LocalRserveOptions) -> Result<LocalRserve, LaunchError> {
        let rserve_bin = find_rserve_binary(&opts.r_binary).await?;
        let dir = tempfile::Builder::new()
            .prefix("rsession-rserve-")
            .tempdir()?;
        if opts.sandbox.is_some() {
            bwrap::hand_over(dir.path(), 0o700)?;
        }
        let password: String = {
            let bytes: [u8; 24] = rand::rng().random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        };
        let credentials = Credentials {
            username: "rsession".into(),
            password,
        };
        let pwd_file = dir.path().join("passwords");
        write_private(
            &pwd_file,
            &format!("{} {}\n", credentials.username, credentials.password),
        )?;
        if opts.sandbox.is_some() {
            // Rserve reads it as the sandbox's user.
            bwrap::hand_over(&pwd_file, 0o600)?;
        }
        // Paths as Rserve sees them: the run directory is at bwrap::RUN_DIR
        // inside a sandbox, where /tmp is the sandbox's private one.
        let (seen, workdir) = match &opts.sandbox {
            Some(_) => (PathBuf::from(bwrap::RUN_DIR), PathBuf::from("/tmp/rserve")),
            None => {
                std::fs::create_dir(dir.path().join("work"))?;
                (dir.path().to_path_buf(), dir.path().join("work"))
            }
        };
        let (listen, addr) = match &opts.sandbox {
            Some(_) => (
                format!(
                    "socket {}\nsockmod 0600",
                    seen.join("rserve.sock").display()
                ),
                format!(
                    "{}{}",
                    rserve::UNIX_PREFIX,
                    dir.path().join("rserve.sock").display()
                ),
            ),
            None => {
                let port = match opts.port {
                    Some(p) => p,
                    None => free_port()?,
                };
                (format!("port {port}"), format!("127.0.0.1:{port}"))
            }
        };
        let mut evals: Vec<String> = opts.preload.iter().map(|c| c.replace('\n', " ")).collect();
        if let Some(how) = opts.harness {
            std::fs::write(dir.path().join("harness.R"), rsession_harness::HARNESS_R)?;
            evals.push(rsession_harness::preload_r(
                &seen.join("harness.R").display().to_string(),
                how,
            ));
        }
        std::fs::write(
            dir.path().join("Rserv.conf"),
            format!(
                "{listen}\nremote disable\nauth required\nplaintext enable\npwdfile {}\n\
                 daemon disable\nworkdir {}\nencoding utf8\ninteractive no\nshutdown disable\n{}",
                seen.join("passwords").display(),
                workdir.display(),
                evals
                    .iter()
                    .map(|code| format!("eval {code}\n"))
                    .collect::<String>()
            ),
        )?;
        let argv: Vec<String> = vec![
            opts.r_binary.clone(),
            "CMD".into(),
            rserve_bin.display().to_string(),
            "--RS-conf".into(),
            seen.join("Rserv.conf").display().to_string(),
            "--no-save".into(),
        ];
        let mut cmd = match &opts.sandbox {
            Some(at) => bwrap::command(&at.policy, &at.workspace, dir.path(), &argv),
            None => {
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]).current_dir(dir.path());
                if std::env::var_os("LANG").is_none() && std::env::var_os("LC_ALL").is_none() {
                    cmd.env("LANG", "C.UTF-8");
                }
                cmd
            }
        };
        // Rserve leads a process group of its own, which every R it forks for a connection
        // joins, and what those start: a session's background compile of the harness, a user's
        // `system("... &")`. Stopping Rserve kills the group, so none of them outlives the
        // server. (Inside the sandbox bubblewrap starts a new session, and the sandbox's PID
        // namespace ends with bubblewrap, which --die-with-parent ties to the server.)
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| LaunchError::NoR {
            program: match &opts.sandbox {
                Some(at) => at.policy.bwrap.display().to_string(),
                None => opts.r_binary.clone(),
            },
            source,
        })?;
        forward_output(&mut child);
        wait_until_listening(&mut child, &addr, opts.startup_timeout).await?;
        let guard = match (&opts.sandbox, child.id()) {
            (Some(at), Some(pid)) => Some(MemoryGuard::watch(pid, at.policy.memory_limit_bytes)),
            _ => None,
        };
        tracing::info!(%addr, pid = child.id(), dir = %dir.path().display(), sandboxed = opts.sandbox.is_some(), "local Rserve started");
        Ok(LocalRserve {
            group: child.id().map(|pid| Pid::from_raw(pid as i32)),
            child,
            addr,
            credentials,
            dir,
            guard,
        })
    }

    /// When the memory guard of a sandboxed Rserve killed one of its
    /// processes since the last call: that kill (each is reported once).
    pub fn take_memory_kill(&self) -> Option<GuardKill> {
        self.guard.as_ref()?.take_kill()
    }

    /// Whether the Rserve process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `127.0.0.1:<port>`, or `unix:<run dir>/rserve.sock` when sandboxed.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The generated login.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Its private directory (password file, config, workdir).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kill Rserve's process group and wait for Rserve; its directory is removed.
    pub async fn stop(mut self) {
        self.kill_group();
        if let Err(e) = self.child.start_kill() {
            tracing::warn!(error = %e, "stopping local Rserve");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        tracing::info!(addr = %self.addr, "local Rserve stopped");
    }

    /// SIGKILL to the process group Rserve leads (members that already ended are
    /// not an error).
    fn kill_group(&self) {
        if let Some(group) = self.group {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for LocalRserve {
    fn drop(&mut self) {
        self.kill_group();
    }
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Path of the Rserve server binary shipped in the R package's `libs/`, for the R executable
/// `r_binary`. Asking R costs a whole R start (0.16 s here), which a sandboxed server would
/// otherwise pay again for every session's Rserve; so the answer is kept for the life of the
/// process, and asked again only when that file is gone (Rserve reinstalled elsewhere).
async fn find_rserve_binary(r_binary: &str) -> Result<PathBuf, LaunchError> {
    static FOUND: std::sync::Mutex<BTreeMap<String, PathBuf>> =
        std::sync::Mutex::new(BTreeMap::new());
    let found = |r: &str| {
        let found = FOUND.lock().unwrap_or_else(PoisonError::into_inner);
        found.get(r).filter(|p| p.is_file()).cloned()
    };
    if let Some(path) = found(r_binary) {
        return Ok(path);
    }
    let path = ask_r_for_rserve_binary(r_binary).await?;
    FOUND
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(r_binary.to_string(), path.clone());
    Ok(path)
}

async fn ask_r_for_rserve_binary(r_binary: &str) -> Result<PathBuf, LaunchError> {
    let out = Command::new(r_binary)
        .args([
            "--vanilla",
            "--slave",
            "-e",
            "cat(system.file('libs', 'Rserve', package = 'Rserve'))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(|source| LaunchError::NoR {
            program: r_binary.to_string(),
            source,
        })?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if path.is_empty() {
        return Err(LaunchError::NoRserve);
    }
    Ok(PathBuf::from(path))
}

fn forward_output(child: &mut Child) {
    if let Some(out) = child.stdout.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "rserve", "{line}");
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "rserve", "{line}");
            }
        });
    }
}

/// Whether a connection to `addr` gets Rserve's 32-byte ID string within a
/// second. Reading it (rather than closing at once) lets the forked R write
/// it and then end quietly at end of input instead of dying of SIGPIPE.
async fn greets(addr: &str) -> bool {
    use tokio::io::AsyncReadExt;
    async fn read_id(mut s: impl tokio::io::AsyncRead + Unpin) -> bool {
        let mut id = [0u8; 32];
        s.read_exact(&mut id).await.is_ok() && id.starts_with(b"Rsrv")
    }
    let probe = async {
        match addr.strip_prefix(rserve::UNIX_PREFIX) {
            Some(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => read_id(s).await,
                Err(_) => false,
            },
            None => match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => read_id(s).await,
                Err(_) => false,
            },
        }
    };
    tokio::time::timeout(Duration::from_secs(1), probe)
        .await
        .unwrap_or(false)
}

/// Poll `addr` until it accepts a connection (TCP, or a Unix socket for a
/// `unix:` address), failing early if Rserve exits.
async fn wait_until_listening(
    child: &mut Child,
    addr: &str,
    limit: Duration,
) -> Result<(), LaunchError> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(LaunchError::Startup(format!(
                "Rserve exited with {status} before listening on {addr}"
            )));
        }
        if greets(addr).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::Startup(format!(
                "nothing listening on {addr} after {limit:?}"
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
