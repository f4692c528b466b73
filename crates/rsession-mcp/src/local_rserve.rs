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

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rand::Rng;
use rsession_harness::Preload;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::harness::literal::r_string_literal;
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
    /// R code the Rserve parent evaluates before it listens (in the global environment, as
    /// Rserve's `eval` configuration key would), so every forked connection inherits what it
    /// loads; a session pod preloads its packages the same way.
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
        let mut evals: Vec<String> = opts.preload.iter().cloned().collect();
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
                 daemon disable\nworkdir {}\nencoding utf8\ninteractive no\nshutdown disable\n",
                seen.join("passwords").display(),
                workdir.display(),
            ),
        )?;
        let preload = match evals.is_empty() {
            true => None,
            false => {
                std::fs::write(dir.path().join("preload.R"), preload_script(&evals)?)?;
                Some(seen.join("preload.R"))
            }
        };
        let argv = rserve_argv(&opts.r_binary, &seen.join("Rserv.conf"), preload.as_deref())?;
        let mut cmd = match &opts.sandbox {
            Some(at) => bwrap::command(&at.policy, &at.workspace, dir.path(), &argv),
            None => {
                let mut cmd = match setpriv() {
                    Some(setpriv) => {
                        let mut cmd = Command::new(setpriv);
                        cmd.args(["--pdeathsig", "KILL", "--", &argv[0]]);
                        cmd
                    }
                    None => Command::new(&argv[0]),
                };
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
        // namespace ends with bubblewrap, which --die-with-parent ties to the server.) A server
        // that is killed stops nothing: then the kernel kills the unsandboxed Rserve parent
        // (`setpriv --pdeathsig`), and the R of each connection ends when its socket closes.
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
        wait_until_listening(&mut child, &opts.r_binary, &addr, opts.startup_timeout).await?;
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

/// Exit status of the R process when the Rserve package is not installed (see [`rserve_argv`]).
const NO_RSERVE_STATUS: i32 = 3;

/// Exit status of util-linux's `setpriv` when the program it should run is not found
/// (`EX_EXEC_ENOENT` in util-linux's `c.h`).
const SETPRIV_NOT_FOUND: i32 = 127;

/// util-linux's `setpriv`, through which an unsandboxed Rserve parent is started: with
/// `--pdeathsig KILL` the kernel sends it SIGKILL when this server dies (`PR_SET_PDEATHSIG`,
/// prctl(2)), even by SIGKILL or the OOM killer, where no code of ours runs to stop it.
/// `None` where it is not installed; R then starts directly and is stopped only by
/// [`LocalRserve`]'s drop or `stop`.
///
/// The signal comes when the thread that started R ends, not only the process. That thread
/// is one of tokio's worker threads or the main thread here, which live as long as the server
/// (bubblewrap's `--die-with-parent`, which ties each sandbox to the server, works the same way).
fn setpriv() -> Option<&'static Path> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
}

/// The command that runs R as the Rserve server with configuration file `conf` (a path as R
/// sees it), after sourcing `preload` (see [`preload_script`]) into the global environment:
/// `R -e 'Rserve::run.Rserve(config.file = ...)'`, which turns that R process into the Rserve
/// parent (Rserve's R function `run.Rserve`, in the package since 1.7; the configuration keys of
/// the `Rserve` binary's `--RS-conf` file, except `eval` and `source`, which it ignores). Every R
/// forked for a connection inherits what the preload loaded.
///
/// Why not `R CMD <Rserve binary>`: finding the binary (`system.file('libs', 'Rserve', package =
/// 'Rserve')`) takes a whole R start of its own (0.16 s here) before the real one, on the path to
/// the first session's result; here R finds the package as it loads it. The session pod's R
/// starts Rserve the same way (rsession-operator, `build/startup.rs`). Exits with
/// [`NO_RSERVE_STATUS`] when the package is missing. Errors: a path holding a NUL.
fn rserve_argv(
    r_binary: &str,
    conf: &Path,
    preload: Option<&Path>,
) -> Result<Vec<String>, LaunchError> {
    let mut exprs = vec![format!(
        "if (!requireNamespace('Rserve', quietly = TRUE)) quit(status = {NO_RSERVE_STATUS})"
    )];
    if let Some(path) = preload {
        exprs.push(format!("source({})", path_literal(path)?));
    }
    exprs.push(format!(
        "Rserve::run.Rserve(config.file = {})",
        path_literal(conf)?
    ));
    let mut argv: Vec<String> = [r_binary, "--no-echo", "--no-save", "--no-restore"]
        .map(String::from)
        .into();
    for e in exprs {
        argv.extend(["-e".into(), e]);
    }
    Ok(argv)
}

/// An R script evaluating each of `preloads` in the global environment, as Rserve's `eval`
/// configuration key would, in order; one that fails is reported on stderr and the next still
/// runs. A file rather than more `-e` options, which R 4.2's front end caps at 10,000 bytes in
/// all. Errors: code holding a NUL.
fn preload_script(preloads: &[String]) -> Result<String, LaunchError> {
    preloads
        .iter()
        .map(|code| {
            let code = r_string_literal(code)
                .ok_or_else(|| LaunchError::Startup("a preload holds a NUL".into()))?;
            Ok(format!(
                "try(eval(parse(text = {code}), envir = globalenv()))\n"
            ))
        })
        .collect()
}

fn path_literal(path: &Path) -> Result<String, LaunchError> {
    r_string_literal(&path.display().to_string())
        .ok_or_else(|| LaunchError::Startup(format!("NUL in the path {}", path.display())))
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
    r_binary: &str,
    addr: &str,
    limit: Duration,
) -> Result<(), LaunchError> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(status) = child.try_wait()? {
            if status.code() == Some(NO_RSERVE_STATUS) {
                return Err(LaunchError::NoRserve);
            }
            if status.code() == Some(SETPRIV_NOT_FOUND) {
                return Err(LaunchError::NoR {
                    program: r_binary.to_string(),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// An R whose library path leaves out the site library, where Debian installs Rserve, gets
    /// the install hint rather than a bare exit status.
    #[tokio::test]
    async fn a_missing_rserve_package_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = dir.path().join("R");
        std::fs::write(
            &r,
            "#!/bin/sh\nR_LIBS_SITE=/nonexistent R_LIBS_USER=/nonexistent exec R \"$@\"\n",
        )
        .expect("wrapper");
        std::fs::set_permissions(&r, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let opts = LocalRserveOptions {
            r_binary: r.display().to_string(),
            ..LocalRserveOptions::default()
        };
        let err = LocalRserve::start(&opts)
            .await
            .expect_err("no Rserve to start");
        assert!(matches!(err, LaunchError::NoRserve), "{err}");
    }

    /// An R executable that does not exist is named, whether or not R is started through
    /// `setpriv` (which then reports the missing program by its exit status).
    #[tokio::test]
    async fn a_missing_r_is_named() {
        let opts = LocalRserveOptions {
            r_binary: "/nonexistent/R".into(),
            ..LocalRserveOptions::default()
        };
        let err = LocalRserve::start(&opts).await.expect_err("no R to start");
        match err {
            LaunchError::NoR { program, source } => {
                assert_eq!(program, "/nonexistent/R");
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("NoR expected: {other}"),
        }
    }

    /// The preload is sourced before Rserve listens, each of its parts in the global
    /// environment with a failure not stopping the next, and quotes in paths and code survive as
    /// R string literals.
    #[test]
    fn the_command_sources_the_preload_then_runs_rserve() {
        let argv = rserve_argv(
            "R",
            Path::new("/tmp/it's/Rserv.conf"),
            Some(Path::new("/run/preload.R")),
        )
        .expect("argv");
        assert_eq!(argv[..4], ["R", "--no-echo", "--no-save", "--no-restore"]);
        let exprs: Vec<&str> = argv[4..]
            .chunks(2)
            .map(|pair| {
                assert_eq!(pair[0], "-e");
                pair[1].as_str()
            })
            .collect();
        assert_eq!(
            exprs,
            [
                "if (!requireNamespace('Rserve', quietly = TRUE)) quit(status = 3)",
                "source(\"/run/preload.R\")",
                "Rserve::run.Rserve(config.file = \"/tmp/it's/Rserv.conf\")",
            ]
        );
        assert_eq!(
            preload_script(&["stop('no')".into(), "x <- \"a\"".into()]).expect("script"),
            "try(eval(parse(text = \"stop('no')\"), envir = globalenv()))\n\
             try(eval(parse(text = \"x <- \\\"a\\\"\"), envir = globalenv()))\n"
        );
        assert!(preload_script(&["a\0b".into()]).is_err());
    }
}
