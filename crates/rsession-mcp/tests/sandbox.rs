//! The direct backend's sandbox, tested from the attacker's side: R code sent
//! through a real MCP client (rmcp) to the built binary tries each escape, and
//! the test checks on the host that it failed. The same attempts succeed in
//! the modes that allow them (`--allow-network`, `danger-full-access`).
//!
//! Network attempts only target listeners this test opens on 127.0.0.1.

mod common;

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::{
    Client, alive, await_ended, descendants, error_code, stdio_client_env, structured, text,
};
use rsession_testkit::mcp::Recorder;
use serde_json::json;

/// A planted fake home with an SSH key, a workspace root, and loopback
/// listeners (TCP and UDP) that record whether R reached them.
struct Host {
    dir: tempfile::TempDir,
    tcp: TcpListener,
    udp: UdpSocket,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        // The sandbox's user (nobody, when the tests run as root) must be
        // able to pass through to its own workspace under the root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let ssh = dir.path().join("home/.ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::write(ssh.join("id_rsa"), "FAKE-PRIVATE-KEY\n").unwrap();
        std::fs::create_dir(dir.path().join("ws")).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        Host { dir, tcp, udp }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    async fn server(&self, extra: &[&str]) -> Client {
        let root = self.root().display().to_string();
        let home = self.home().display().to_string();
        let mut args = vec!["--workspace-root", root.as_str()];
        args.extend_from_slice(extra);
        stdio_client_env(Recorder::default(), &args, &[("HOME", home.as_str())]).await
    }

    /// Whether a TCP connection reached the listener since the last check.
    /// R's connect has returned by the time this runs, so nothing is awaited.
    fn tcp_reached(&self) -> bool {
        match self.tcp.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        }
    }

    fn udp_reached(&self) -> bool {
        let mut buf = [0u8; 64];
        match self.udp.recv(&mut buf) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("recv: {e}"),
        }
    }

    fn tcp_code(&self) -> String {
        let port = self.tcp.local_addr().unwrap().port();
        format!(
            "con <- socketConnection('127.0.0.1', {port}, blocking = TRUE, open = 'r+', timeout = 5); close(con)"
        )
    }

    fn udp_code(&self) -> String {
        // A DNS query is a UDP datagram to the resolver: this is the same
        // send, to a resolver-like listener the test owns.
        let port = self.udp.local_addr().unwrap().port();
        format!("system2('bash', c('-c', shQuote('echo query > /dev/udp/127.0.0.1/{port}')))")
    }
}

/// Run `code` and say whether it completed (`"DONE"`) or raised an R error
/// (`"DENIED: <message>"`).
async fn attempt(c: &Client, sid: &str, code: &str) -> String {
    let wrapped = format!(
        "cat(tryCatch({{ {code}; 'DONE' }}, error = function(e) paste('DENIED:', conditionMessage(e))))"
    );
    let r = c.exec(sid, &wrapped).await;
    assert_eq!(r.is_error, Some(false), "{code}: {r:?}");
    structured(&r)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["text"].as_str().unwrap_or(""))
        .collect::<String>()
}

fn denied(outcome: &str, what: &str) {
    assert!(
        outcome.starts_with("DENIED"),
        "{what} must fail in the sandbox, got {outcome:?}"
    );
}

fn done(outcome: &str, what: &str) {
    assert_eq!(outcome, "DONE", "{what} must work in this mode");
}

fn interfaces(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| !n.is_empty() && !n.contains('|'))
        .collect()
}

async fn net_devices(c: &Client, sid: &str) -> Vec<String> {
    let r = c
        .exec(sid, "cat(readLines('/proc/net/dev'), sep = '\\n')")
        .await;
    interfaces(&text(&r))
}

#[tokio::test]
async fn default_mode_denies_files_network_signals_forks_and_memory() {
    let host = Host::new();
    let c = host
        .server(&["--max-processes", "32", "--memory-limit", "300MiB"])
        .await;
    let a = c.create_session().await;
    let b = c.create_session().await;
    let b_secret = host.root().join(&b).join("secret.txt");
    std::fs::write(&b_secret, "B's data\n").unwrap();

    // Files outside its own workspace.
    let key = host.home().join(".ssh/id_rsa");
    denied(
        &attempt(&c, &a, &format!("readLines('{}')", key.display())).await,
        "reading ~/.ssh/id_rsa",
    );
    denied(
        &attempt(&c, &a, &format!("readLines('{}')", b_secret.display())).await,
        "reading another session's workspace",
    );
    let escapes = [
        host.home().join("planted"),
        host.root().join(&b).join("planted"),
        PathBuf::from(format!("/tmp/rsession-escape-{a}")),
        PathBuf::from("/usr/rsession-escape"),
    ];
    for target in &escapes {
        let code = format!(
            "dir.create('{}', recursive = TRUE, showWarnings = FALSE); writeLines('x', '{}')",
            target.parent().unwrap().display(),
            target.display()
        );
        attempt(&c, &a, &code).await;
        assert!(!target.exists(), "R wrote {} on the host", target.display());
    }
    // Its own workspace is writable and is the host directory.
    done(
        &attempt(&c, &a, "writeLines('mine', 'own.txt')").await,
        "writing its workspace",
    );
    assert_eq!(
        std::fs::read_to_string(host.root().join(&a).join("own.txt")).unwrap(),
        "mine\n"
    );

    // Network: no interface but loopback, no TCP or UDP to the host.
    assert_eq!(net_devices(&c, &a).await, ["lo"]);
    denied(
        &attempt(&c, &a, &host.tcp_code()).await,
        "a TCP connection to the host",
    );
    assert!(!host.tcp_reached(), "R's TCP connection reached the host");
    attempt(&c, &a, &host.udp_code()).await;
    assert!(
        !host.udp_reached(),
        "R's UDP datagram (a DNS query) reached the host"
    );

    // Installing from CRAN needs the network: refused, saying how to allow it.
    let r = c
        .call(
            "install_package",
            json!({"session_id": a, "package": "glue"}),
        )
        .await;
    assert_eq!(error_code(&r), "forbidden");
    assert!(text(&r).contains("--allow-network"), "{}", text(&r));

    // Signals: the server and session B's processes are out of reach.
    let server_pid = c.pid;
    let b_pids: Vec<u32> = descendants(server_pid);
    let r = c
        .exec(
            &a,
            &format!(
                "cat(tools::pskill(c({}), tools::SIGKILL), tools::pskill({server_pid}, tools::SIGTERM))",
                b_pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
            ),
        )
        .await;
    assert!(
        !text(&r).contains("TRUE"),
        "a signal to a process outside the sandbox was delivered: {}",
        text(&r)
    );
    assert!(alive(server_pid));
    let r = c.exec(&b, "1 + 1").await;
    assert_eq!(text(&r), "[1] 2\n", "session B is untouched");
    let r = c
        .exec(&a, "length(dir('/proc', pattern = '^[0-9]+$'))")
        .await;
    let visible: usize = text(&r).trim_start_matches("[1] ").trim().parse().unwrap();
    assert!(
        visible < 10,
        "R sees only its own few processes, saw {visible}"
    );

    // Fork bomb: stopped at --max-processes, the session survives.
    let out = attempt(
        &c,
        &a,
        "parallel::mclapply(1:64, function(i) { Sys.sleep(1); i }, mc.cores = 64)",
    )
    .await;
    denied(&out, "forking past --max-processes");
    assert!(out.contains("unable to fork"), "{out}");
    let r = c.exec(&a, "1 + 1").await;
    assert_eq!(text(&r), "[1] 2\n", "the session survives a fork bomb");

    // Memory: killed past --memory-limit, named, and the next call works.
    let r = c
        .exec(
            &a,
            "l <- list(); for (i in 1:20) l[[i]] <- numeric(2.5e7); length(l)",
        )
        .await;
    assert_eq!(error_code(&r), "session_lost", "{r:?}");
    let s = structured(&r);
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("memory limit (300 MiB)"),
        "{s}"
    );
    assert_eq!(s["details"]["killed_by"], "memory_guard");
    assert_eq!(s["details"]["memory_limit_bytes"], 300u64 << 20);
    let r = c.exec(&a, "1 + 1").await;
    assert_eq!(text(&r).lines().last(), Some("[1] 2"), "{r:?}");
    c.stop().await;
}

#[tokio::test]
async fn read_only_mode_writes_only_its_private_temp() {
    let host = Host::new();
    let c = host.server(&["--sandbox", "read-only"]).await;
    let sid = c.create_session().await;
    let ws = host.root().join(&sid);
    std::fs::write(ws.join("data.csv"), "x\n1\n").unwrap();
    std::fs::set_permissions(ws.join("data.csv"), std::fs::Permissions::from_mode(0o644)).unwrap();
    done(
        &attempt(&c, &sid, "stopifnot(read.csv('data.csv')$x == 1)").await,
        "reading the workspace",
    );
    attempt(&c, &sid, "writeLines('x', 'new.txt')").await;
    assert!(
        !ws.join("new.txt").exists(),
        "read-only: R wrote its workspace"
    );
    done(
        &attempt(
            &c,
            &sid,
            "f <- tempfile(); writeLines('x', f); stopifnot(readLines(f) == 'x')",
        )
        .await,
        "writing its private temp",
    );
    c.stop().await;
}

#[tokio::test]
async fn allow_network_opens_the_network_and_nothing_else() {
    let host = Host::new();
    let c = host.server(&["--allow-network"]).await;
    let sid = c.create_session().await;
    done(
        &attempt(&c, &sid, &host.tcp_code()).await,
        "TCP with --allow-network",
    );
    assert!(host.tcp_reached());
    attempt(&c, &sid, &host.udp_code()).await;
    assert!(host.udp_reached());
    assert!(net_devices(&c, &sid).await.len() > 1);
    let key = host.home().join(".ssh/id_rsa");
    denied(
        &attempt(&c, &sid, &format!("readLines('{}')", key.display())).await,
        "reading ~/.ssh with --allow-network",
    );
    c.stop().await;
}

#[tokio::test]
async fn danger_full_access_allows_what_the_sandbox_denies() {
    let host = Host::new();
    let c = host.server(&["--sandbox", "danger-full-access"]).await;
    let sid = c.create_session().await;
    let key = host.home().join(".ssh/id_rsa");
    let r = c
        .exec(&sid, &format!("cat(readLines('{}'))", key.display()))
        .await;
    assert_eq!(text(&r), "FAKE-PRIVATE-KEY");
    let outside = host.dir.path().join("written-by-r");
    done(
        &attempt(
            &c,
            &sid,
            &format!("writeLines('x', '{}')", outside.display()),
        )
        .await,
        "writing outside the workspace",
    );
    assert!(outside.exists());
    done(
        &attempt(&c, &sid, &host.tcp_code()).await,
        "TCP unsandboxed",
    );
    assert!(host.tcp_reached());
    // A background process started from R ends with the server (Client::stop checks every
    // process the server started), although nothing sandboxes it.
    c.exec(&sid, "system('sleep 600 > /dev/null 2>&1 &')").await;
    c.stop().await;
}

#[tokio::test]
async fn a_session_s_processes_end_with_it() {
    let host = Host::new();
    let c = host.server(&[]).await;
    let sid = c.create_session().await;
    c.exec(&sid, "system('sleep 600 > /dev/null 2>&1 &')").await;
    // `system()` returns once the shell has forked its background child,
    // which may not have exec'd `sleep` yet: await it instead of reading once.
    let started = tokio::time::Instant::now() + Duration::from_secs(10);
    let sleepers: Vec<u32> = loop {
        let found: Vec<u32> = descendants(c.pid)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|n| n.trim() == "sleep")
            })
            .collect();
        if !found.is_empty() {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < started,
            "the background sleep never appeared under the server's process tree"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        sleepers.len(),
        1,
        "exactly one background sleep runs in the sandbox"
    );
    let r = c.call("close_session", json!({"session_id": sid})).await;
    assert_eq!(r.is_error, Some(false));
    await_ended(
        &sleepers,
        Duration::from_secs(10),
        "(R's child) outlived its session",
    )
    .await;
    assert!(
        !host.root().join(&sid).exists(),
        "the workspace is removed with the session"
    );
    c.stop().await;
}

/// A server killed outright (SIGKILL, the OOM killer) runs none of its own code to stop what it
/// started. The kernel ends each sandbox (bubblewrap's `--die-with-parent`) and the unsandboxed
/// Rserve parent (`setpriv --pdeathsig`); the R of each connection ends when its socket closes.
#[tokio::test]
async fn a_killed_server_leaves_no_r_behind() {
    for mode in [&[][..], &["--sandbox", "danger-full-access"][..]] {
        let host = Host::new();
        let c = host.server(mode).await;
        let sid = c.create_session().await;
        assert_eq!(text(&c.exec(&sid, "1 + 1").await), "[1] 2\n");
        let started = descendants(c.pid);
        assert!(!started.is_empty(), "{mode:?}: the server started nothing");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &c.pid.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        // The session's R may be finishing the harness's background compile (nice 19): give it
        // time on a busy machine.
        await_ended(
            &started,
            Duration::from_secs(30),
            &format!("outlived the killed server ({mode:?})"),
        )
        .await;
    }
}

fn spares(root: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".spare-"))
        .collect()
}

#[tokio::test]
async fn a_new_session_takes_the_ready_spare_sandbox_and_a_new_spare_is_made() {
    let host = Host::new();
    let c = host.server(&[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let spare = loop {
        if let [one] = spares(&host.root()).as_slice() {
            break one.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no spare sandbox was prepared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sid = c.create_session().await;
    assert!(
        !spares(&host.root()).contains(&spare),
        "the spare became the session"
    );
    done(
        &attempt(&c, &sid, "writeLines('x', 'mine.txt')").await,
        "writing its workspace",
    );
    assert!(
        host.root().join(&sid).join("mine.txt").exists(),
        "the renamed folder is its workspace"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while spares(&host.root()).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new spare after a create"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.stop().await;
}

fn start_failure(args: &[&str]) -> String {
    let out = std::process::Command::new(common::server_bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the server must refuse to start with {args:?}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_bubblewrap_a_sandboxed_mode_refuses_to_start_and_says_why() {
    let err = start_failure(&["--bwrap", "/nonexistent/bwrap"]);
    for needle in [
        "workspace-write sandbox cannot start",
        "bubblewrap",
        "--sandbox danger-full-access",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
}

#[test]
fn an_external_rserve_needs_danger_full_access_said_out_loud() {
    let err = start_failure(&["--rserve", "127.0.0.1:1"]);
    assert!(err.contains("add --sandbox danger-full-access"), "{err}");
}
