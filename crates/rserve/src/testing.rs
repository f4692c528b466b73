//! Test fixture: a real Rserve on a free loopback port (feature `testing`).
//!
//! [`RserveFixture::start`] writes an Rserve configuration (`remote disable`,
//! `auth required`, `plaintext enable`, a `pwdfile` with one user, `encoding utf8`,
//! `interactive no`) into a temporary folder, runs
//! `Rscript -e 'Rserve::run.Rserve(config.file = ...)'` in the foreground in its own process
//! group, and waits until the port accepts connections. Dropping the fixture kills the
//! process group (server and forked per-connection R processes) and removes the folder.
//!
//! Needs `Rscript` on `PATH` with the Rserve package (Debian: `r-base-core`,
//! `r-cran-rserve`). Override the interpreter with the `RSERVE_TEST_RSCRIPT` variable.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::connection::ConnectOptions;

/// How long [`RserveFixture::start`] waits for the port to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Rserve; killed on drop.
#[derive(Debug)]
pub struct RserveFixture {
    addr: String,
    username: String,
    password: String,
    dir: tempfile::TempDir,
    child: Child,
}

/// Options for [`RserveFixture::start_with`].
#[derive(Debug, Clone)]
pub struct FixtureConfig {
    /// Login user written to the password file.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Rserve's `encoding` setting; `None` leaves the server default (native).
    pub encoding: Option<String>,
    /// Extra Rserve configuration lines (e.g. `"maxinbuf 1024"`, `"source /x.R"`).
    pub extra_config: Vec<String>,
}

impl Default for FixtureConfig {
    fn default() -> Self {
        FixtureConfig {
            username: "rsession".into(),
            password: "test-password-é".into(),
            encoding: Some("utf8".into()),
            extra_config: Vec::new(),
        }
    }
}

impl RserveFixture {
    /// Starts Rserve with [`FixtureConfig::default`]. Blocks until the port accepts a TCP
    /// connection (at most [`START_TIMEOUT`]).
    ///
    /// Errors: `Rscript` missing, the process exiting early (the error carries its log), or
    /// the port not opening in time.
    pub fn start() -> io::Result<RserveFixture> {
        Self::start_with(FixtureConfig::default())
    }

    /// Starts Rserve with the given users and extra configuration.
    pub fn start_with(config: FixtureConfig) -> io::Result<RserveFixture> {
        let dir = tempfile::Builder::new()
            .prefix("rserve-fixture-")
            .tempdir()?;
        let port = free_port()?;
        let pwdfile = dir.path().join("passwords");
        std::fs::write(
            &pwdfile,
            format!("{} {}\n", config.username, config.password),
        )?;
        let workdir = dir.path().join("work");
        std::fs::create_dir(&workdir)?;
        let mut conf = format!(
            "port {port}\nremote disable\nauth required\nplaintext enable\npwdfile {}\n\
             interactive no\nworkdir {}\n",
            pwdfile.display(),
            workdir.display()
        );
        if let Some(enc) = &config.encoding {
            conf.push_str(&format!("encoding {enc}\n"));
        }
        for line in &config.extra_config {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = dir.path().join("Rserve.conf");
        std::fs::write(&conf_path, conf)?;
        let log_path = dir.path().join("rserve.log");
        let log = std::fs::File::create(&log_path)?;
        let rscript = std::env::var("RSERVE_TEST_RSCRIPT").unwrap_or_else(|_| "Rscript".into());
        let child = Command::new(&rscript)
            .arg("-e")
            .arg(format!(
                "Rserve::run.Rserve(config.file = '{}')",
                conf_path.display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {rscript}: {e}")))?;
        let mut fixture = RserveFixture {
            addr: format!("127.0.0.1:{port}"),
            username: config.username,
            password: config.password,
            dir,
            child,
        };
        fixture.wait_ready(&log_path)?;
        Ok(fixture)
    }

    fn wait_ready(&mut self, log_path: &Path) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "Rserve exited early ({status}); log:\n{}",
                    std::fs::read_to_string(log_path).unwrap_or_default()
                )));
            }
            if TcpStream::connect_timeout(
                &self.addr.parse().map_err(io::Error::other)?,
                Duration::from_millis(200),
            )
            .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("Rserve did not open {} within {START_TIMEOUT:?}", self.addr),
                ));
            }
            // Polling the port: Rserve gives no readiness signal we could wait on.
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `"127.0.0.1:<port>"`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connect options with the fixture's credentials and default limits.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            username: Some(self.username.clone()),
            password: Some(self.password.clone()),
            ..ConnectOptions::default()
        }
    }

    /// Rserve's working folder (`workdir`): each connection gets a subfolder.
    pub fn workdir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The server's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rserve.log")).unwrap_or_default()
    }

    /// Process id of the Rserve server (the R running `run.Rserve`).
    pub fn server_pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RserveFixture {
    fn drop(&mut self) {
        // The server and its forked children share the process group we created.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
