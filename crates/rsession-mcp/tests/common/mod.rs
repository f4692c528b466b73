//! Shared test fixtures: a real local Rserve (started with the server's own
//! launcher) under a session manager, real MCP clients (rmcp) talking to the
//! built `rsession-mcp` binary over stdio and streamable HTTP, and a tiny R
//! package repository built with `R CMD build` + `tools::write_PACKAGES`.

#![allow(dead_code)]

pub mod harness_calls;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::CallToolResult;
use rmcp::transport::ConfigureCommandExt;
use rsession_mcp::local_rserve::{LocalRserve, LocalRserveOptions};
use rsession_mcp::metrics::Metrics;
use rsession_mcp::sandbox::{SandboxMode, SandboxPolicy};
use rsession_mcp::session::direct::{DirectBackend, RserveTarget};
use rsession_mcp::session::sandboxed::SandboxedBackend;
use rsession_mcp::session::{Backend, ManagerConfig, SessionManager};
use rsession_testkit::mcp;
use serde_json::Value;

#[allow(unused_imports)] // each test binary uses a subset
pub use rsession_testkit::mcp::{
    expect_error_code as error_code, expect_structured as structured, images,
};

/// Owner used by manager-level tests.
pub const OWNER: &str = "test";

/// A session manager over a direct backend. Dropping it ends its R.
pub struct Fixture {
    pub manager: Arc<SessionManager>,
    /// The shared local Rserve of an unsandboxed fixture; `None` when each
    /// session runs in its own sandbox (the product default).
    pub rserve: Option<LocalRserve>,
    /// The sandboxed fixture's workspace root on the host.
    root: Option<tempfile::TempDir>,
}

impl Fixture {
    /// The shared Rserve of an unsandboxed fixture ([`fixture_with`]).
    pub fn rserve(&self) -> &LocalRserve {
        self.rserve
            .as_ref()
            .expect("an unsandboxed fixture (fixture_with)")
    }

    /// Where session `sid`'s workspace is on the host (R sees `/workspace`
    /// in a sandbox, the host path otherwise: `r_path`).
    pub fn host_workspace(&self, sid: &str, r_path: &str) -> PathBuf {
        match &self.root {
            Some(root) => root.path().join(sid),
            None => PathBuf::from(r_path),
        }
    }
}

/// A manager over the default direct backend, each session's R in its own
/// `workspace-write` sandbox, with `tweak` applied to the config.
pub async fn fixture(tweak: impl FnOnce(&mut ManagerConfig)) -> Fixture {
    sandboxed_fixture(SandboxPolicy::new(SandboxMode::WorkspaceWrite), tweak).await
}

/// [`fixture`] with sessions sandboxed by `policy`.
pub async fn sandboxed_fixture(
    policy: SandboxPolicy,
    tweak: impl FnOnce(&mut ManagerConfig),
) -> Fixture {
    let root = tempfile::tempdir().expect("workspace root");
    // The sandbox's user (nobody, under root) passes through to its workspace.
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .expect("chmod");
    let backend = SandboxedBackend::new(policy, "R".into(), Some(root.path().to_path_buf()), None)
        .expect("workspace root");
    Fixture {
        manager: manager(Arc::new(backend), tweak),
        rserve: None,
        root: Some(root),
    }
}

/// An unsandboxed fixture: one real local Rserve started as `opts` says
/// (e.g. through a wrapper script as `r_binary`, to give Rserve an
/// environment variable), shared by every session.
pub async fn fixture_with(
    opts: &LocalRserveOptions,
    tweak: impl FnOnce(&mut ManagerConfig),
) -> Fixture {
    let rserve = LocalRserve::start(opts)
        .await
        .expect("local Rserve starts (needs r-base-core and r-cran-rserve)");
    Fixture {
        manager: manager(Arc::new(direct_backend(&rserve)), tweak),
        rserve: Some(rserve),
        root: None,
    }
}

fn manager(
    backend: Arc<dyn Backend>,
    tweak: impl FnOnce(&mut ManagerConfig),
) -> Arc<SessionManager> {
    let mut config = ManagerConfig::default();
    config.limits.grace = Duration::from_secs(1);
    tweak(&mut config);
    Arc::new(SessionManager::new(
        backend,
        config,
        Arc::new(Metrics::new()),
    ))
}

/// A direct backend over `rserve`, workspaces under its directory.
pub fn direct_backend(rserve: &LocalRserve) -> DirectBackend {
    DirectBackend::new(
        vec![RserveTarget {
            addr: rserve.addr().to_string(),
            credentials: Some(rserve.credentials().clone()),
        }],
        rserve.dir().join("workspaces").display().to_string(),
    )
    .expect("backend")
}

/// Peak resident set size (`VmHWM`) of a process, in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kb * 1024
}

/// Child process ids of `pid` (from `/proc/<pid>/task/*/children`).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Build a one-function package `rsessiontest` (hello() returns a string)
/// into a CRAN-like repository under `dir`; returns the `file://` URL.
pub fn build_local_repo(dir: &Path) -> String {
    let pkg = dir.join("rsessiontest");
    std::fs::create_dir_all(pkg.join("R")).unwrap();
    std::fs::write(
        pkg.join("DESCRIPTION"),
        "Package: rsessiontest\nVersion: 0.1.0\nTitle: Test Package\nDescription: Used by rsession-mcp tests.\n\
         Authors@R: person(\"T\", \"T\", email = \"t@example.org\", role = c(\"aut\", \"cre\"))\nLicense: MIT\n",
    )
    .unwrap();
    std::fs::write(pkg.join("NAMESPACE"), "export(hello)\n").unwrap();
    std::fs::write(
        pkg.join("R/hello.R"),
        "hello <- function() \"hello from rsessiontest\"\n",
    )
    .unwrap();
    let out = std::process::Command::new("R")
        .args([
            "CMD",
            "build",
            "--no-manual",
            "--no-build-vignettes",
            "rsessiontest",
        ])
        .current_dir(dir)
        .output()
        .expect("R CMD build runs");
    assert!(
        out.status.success(),
        "R CMD build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let contrib = dir.join("repo/src/contrib");
    std::fs::create_dir_all(&contrib).unwrap();
    std::fs::rename(
        dir.join("rsessiontest_0.1.0.tar.gz"),
        contrib.join("rsessiontest_0.1.0.tar.gz"),
    )
    .unwrap();
    let out = std::process::Command::new("Rscript")
        .args([
            "-e",
            &format!(
                "tools::write_PACKAGES('{}', type = 'source')",
                contrib.display()
            ),
        ])
        .output()
        .expect("Rscript runs");
    assert!(
        out.status.success(),
        "write_PACKAGES failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("file://{}", dir.join("repo").display())
}

/// Path of the built server binary.
pub fn server_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rsession-mcp"))
}

/// An MCP client connected to a spawned `rsession-mcp`.
pub struct Client {
    pub service: mcp::Client,
    /// Server process id.
    pub pid: u32,
    /// For HTTP: the server child, stopped with SIGTERM on [`Client::stop`].
    http_child: Option<tokio::process::Child>,
    /// Flags the server was started with.
    extra_args: Vec<String>,
}

/// Spawn the server over stdio with `extra` flags and connect rmcp's client.
pub async fn stdio_client(extra: &[&str]) -> Client {
    stdio_client_with(mcp::Recorder::default(), extra).await
}

/// [`stdio_client`] whose client handler is `handler`.
pub async fn stdio_client_with(handler: mcp::Recorder, extra: &[&str]) -> Client {
    stdio_client_env(handler, extra, &[]).await
}

/// [`stdio_client_with`] with extra environment variables for the server.
pub async fn stdio_client_env(
    handler: mcp::Recorder,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Client {
    let extra = hermetic(extra, env);
    let cmd = tokio::process::Command::new(server_bin()).configure(|c| {
        c.args(&extra).env("RSESSION_LOG", "warn");
        for (k, v) in env {
            c.env(k, v);
        }
    });
    let (service, pid) = mcp::connect_stdio_with(handler, cmd)
        .await
        .expect("spawn rsession-mcp and initialize MCP over stdio");
    Client {
        service,
        pid,
        http_child: None,
        extra_args: extra,
    }
}

/// `extra` plus `--workspace-root temp` unless the test names a root itself
/// (a `--workspace-root`, or an `XDG_DATA_HOME` for the per-user default):
/// each server then has its own temporary workspaces, nothing kept between
/// tests or runs.
fn hermetic(extra: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let names_root =
        extra.contains(&"--workspace-root") || env.iter().any(|(k, _)| *k == "XDG_DATA_HOME");
    if !names_root {
        args.extend(["--workspace-root".to_string(), "temp".to_string()]);
    }
    args
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawn the server with `--transport http` and connect rmcp's streamable
/// HTTP client to `/mcp`. Returns the client and the base URL.
pub async fn http_client(extra: &[&str]) -> (Client, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = tokio::process::Command::new(server_bin())
        .args(["--transport", "http", "--listen", &listen])
        .args(hermetic(extra, &[]))
        .env("RSESSION_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rsession-mcp http");
    let pid = child.id().expect("pid");
    // Wait until the listener accepts (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "HTTP server did not listen on {listen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base = format!("http://{listen}");
    let service = mcp::connect_http(&format!("{base}/mcp"), None)
        .await
        .expect("MCP initialize over HTTP");
    (
        Client {
            service,
            pid,
            http_child: Some(child),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        },
        base,
    )
}

impl Client {
    /// Call `tool` with JSON `args`.
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        mcp::expect_call(&self.service, tool, args).await
    }

    /// `create_session` and return its id.
    pub async fn create_session(&self) -> String {
        let r = self.call("create_session", serde_json::json!({})).await;
        assert_eq!(r.is_error, Some(false), "{r:?}");
        structured(&r)["session_id"]
            .as_str()
            .expect("session_id")
            .to_string()
    }

    /// `execute_in_session`.
    pub async fn exec(&self, sid: &str, code: &str) -> CallToolResult {
        self.call(
            "execute_in_session",
            serde_json::json!({"session_id": sid, "code": code}),
        )
        .await
    }

    /// `execute_in_session` with limits.
    pub async fn exec_limited(
        &self,
        sid: &str,
        code: &str,
        secs: f64,
        bytes: u64,
    ) -> CallToolResult {
        self.call(
            "execute_in_session",
            serde_json::json!({"session_id": sid, "code": code,
                               "limits": {"max_duration_secs": secs, "max_output_bytes": bytes}}),
        )
        .await
    }

    /// Close the client; for HTTP also stop the server with SIGTERM. Either
    /// way the server must shut down and every process it started (its
    /// Rserve, or each session's sandbox) must end with it.
    pub async fn stop(mut self) {
        let started = descendants(self.pid);
        let rserve = child_pids(self.pid)
            .iter()
            // The local Rserve is an R running `Rserve::run.Rserve()` (local_rserve.rs).
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("Rserve::run.Rserve("))
            })
            .count();
        let external = self.extra_args.iter().any(|a| a == "--rserve");
        let unsandboxed = self.extra_args.iter().any(|a| a == "danger-full-access");
        match (external, unsandboxed) {
            (true, _) => assert_eq!(rserve, 0, "no local Rserve with --rserve"),
            (false, true) => assert_eq!(rserve, 1, "one shared Rserve when unsandboxed"),
            // Sandboxed: bubblewrap is the child, one per open session.
            (false, false) => {}
        }
        let _ = self.service.cancel().await;
        if let Some(mut child) = self.http_child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().unwrap_or(0).to_string()])
                .status();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        await_ended(
            &started,
            Duration::from_secs(10),
            "started by the server, still running after shutdown",
        )
        .await;
    }
}

/// Waits until none of `pids` is alive (zombies count as ended), polling every 50 ms; panics
/// after `within`, naming the first one still running, its command line and `what` it is.
pub async fn await_ended(pids: &[u32], within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while let Some(p) = pids.iter().find(|&&p| alive(p)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "process {p} ({}) {what}",
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every descendant of `pid` (children, their children, ...).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = child_pids(pid);
    while let Some(p) = stack.pop() {
        out.push(p);
        stack.extend(child_pids(p));
    }
    out
}

/// All text content concatenated (no separator).
pub fn text(r: &CallToolResult) -> String {
    mcp::text_joined(r, "")
}
