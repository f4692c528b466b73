//! The embedded default: a local Rserve that the server starts and stops.
//!
//! It listens on a free loopback port (`remote disable`), requires a login
//! (`auth required`, `plaintext enable`, a generated password file readable
//! only by us), runs in the foreground (`daemon disable`) so it is our child
//! process, and keeps its files in a temporary directory removed on stop.
//! Rserve's own output goes to our log (stderr), never to stdout, which the
//! stdio transport owns.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

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
}

impl Default for LocalRserveOptions {
    fn default() -> Self {
        LocalRserveOptions {
            r_binary: "R".into(),
            port: None,
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// A running local Rserve. Dropping it kills the process (kill on drop);
/// [`LocalRserve::stop`] does so and waits.
#[derive(Debug)]
pub struct LocalRserve {
    child: Child,
    addr: String,
    credentials: Credentials,
    dir: tempfile::TempDir,
}

impl LocalRserve {
    /// Start Rserve and wait until its port accepts connections.
    pub async fn start(opts: &LocalRserveOptions) -> Result<LocalRserve, LaunchError> {
        let rserve_bin = find_rserve_binary(&opts.r_binary).await?;
        let dir = tempfile::Builder::new()
            .prefix("rsession-rserve-")
            .tempdir()?;
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
        let workdir = dir.path().join("work");
        std::fs::create_dir(&workdir)?;
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };
        let conf = dir.path().join("Rserv.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nremote disable\nauth required\nplaintext enable\npwdfile {}\n\
                 daemon disable\nworkdir {}\nencoding utf8\ninteractive no\nshutdown disable\n",
                pwd_file.display(),
                workdir.display()
            ),
        )?;
        let mut cmd = Command::new(&opts.r_binary);
        cmd.arg("CMD")
            .arg(&rserve_bin)
            .arg("--RS-conf")
            .arg(&conf)
            .arg("--no-save")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if std::env::var_os("LANG").is_none() && std::env::var_os("LC_ALL").is_none() {
            cmd.env("LANG", "C.UTF-8");
        }
        let mut child = cmd.spawn().map_err(|source| LaunchError::NoR {
            program: opts.r_binary.clone(),
            source,
        })?;
        forward_output(&mut child);
        let addr = format!("127.0.0.1:{port}");
        wait_until_listening(&mut child, &addr, opts.startup_timeout).await?;
        tracing::info!(%addr, pid = child.id(), dir = %dir.path().display(), "local Rserve started");
        Ok(LocalRserve {
            child,
            addr,
            credentials,
            dir,
        })
    }

    /// `127.0.0.1:<port>`.
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

    /// Kill Rserve and wait for it; its directory is removed.
    pub async fn stop(mut self) {
        if let Err(e) = self.child.start_kill() {
            tracing::warn!(error = %e, "stopping local Rserve");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        tracing::info!(addr = %self.addr, "local Rserve stopped");
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

/// Path of the Rserve server binary shipped in the R package's `libs/`.
async fn find_rserve_binary(r_binary: &str) -> Result<PathBuf, LaunchError> {
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

/// Poll the port until it accepts a TCP connection, failing early if Rserve exits.
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
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
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
