//! Round trip of `execute_in_session` through MCP (stdio and streamable HTTP,
//! each at protocol revisions 2026-07-28 and 2025-11-25) against the raw QAP1
//! eval of the same code on the same Rserve, in one run.
//!
//! ```text
//! cargo bench -p rsession-mcp --bench mcp_roundtrip
//! ```
//!
//! Starts one local Rserve; the MCP servers (the release `rsession-mcp`
//! binary, with `--transport stdio` and with `--transport http`) use it
//! through `--rserve`. rmcp's client speaks 2026-07-28 by default
//! (`server/discover`, no handshake); a second set of clients is pinned to
//! 2025-11-25 (the `initialize` handshake). Over HTTP each revision has two
//! clients: rmcp's default transport, which opens a connection per request,
//! and the same transport over a reqwest client that keeps its connection. Baselines: `eval` of the code on a plain QAP1
//! connection (for printing, `capture.output(print(...))`, so R does the same
//! formatting work), and the harness call `.rsession$execute()` on a raw
//! connection (R-side harness cost without MCP). All paths are
//! interleaved call by call, in a new (seeded) order each turn. Prints p50/p99 and ratios as a
//! Markdown table.
//!
//! Three more paths use the thinnest client of the protocol, written here: JSON-RPC requests at
//! 2026-07-28 built by hand, one line each over a stdio server's pipes, and one POST each to
//! the HTTP server, over a kept-alive reqwest connection and over a new connection per request
//! (as rmcp's default transport opens). They show what the server adds without an MCP client
//! library's own per-request work.
//!
//! A second table measures the MCP layer without R: `list_sessions` through
//! every MCP client, against a `GET /healthz` on the HTTP server (the floor of
//! one HTTP round trip there) and the same `tools/call` through both plain
//! clients, which separates the server's share from rmcp's client transport.
//!
//! Environment:
//! - `RSESSION_BENCH_BASELINE_BIN=<path>`: a second `rsession-mcp` build
//!   (say, main's) whose four servers join the same run, labelled
//!   "(baseline build)", for an A/B on one machine state;
//! - `RSESSION_BENCH_BLOCK=<n>`: each path runs `n` calls per turn instead
//!   of one (caches warm within a turn);
//! - `RSESSION_BENCH_PRELOADED=1`: the Rserve parent loads and byte-compiles the
//!   harness before it listens, as a warm pool's pods do
//!   (`LocalRserveOptions::harness`), so every session (and the raw harness
//!   connection) inherits the compiled harness. Without it the server installs
//!   the harness on each connection and the session compiles it in a
//!   background child; the bench waits until every session of this build has
//!   adopted that bytecode before it measures.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use rserve::{ConnectOptions, Connection};
use rsession_mcp::harness::{ExecLimits, HARNESS_R, execute_call, init_call};
use rsession_mcp::local_rserve::{LocalRserve, LocalRserveOptions};
use serde_json::Value;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

const SERVER: &str = env!("CARGO_BIN_EXE_rsession-mcp");

struct Case {
    name: &'static str,
    code: &'static str,
    raw: &'static str,
    iterations: usize,
}

const CASES: [Case; 2] = [
    Case {
        name: "1+1",
        code: "1+1",
        raw: "1+1",
        iterations: 2000,
    },
    Case {
        name: "print summary(lm(mpg ~ wt, mtcars))",
        code: "summary(lm(mpg ~ wt, mtcars))",
        raw: "capture.output(print(summary(lm(mpg ~ wt, mtcars))))",
        iterations: 500,
    },
];

#[derive(Clone, Copy)]
struct Stats {
    p50: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
    }
}

type Client = RunningService<RoleClient, ClientConfig>;

/// rmcp's client info, pinned to protocol `revision`.
fn at(revision: ProtocolVersion) -> ClientConfig {
    let mut config = ClientConfig::default();
    config.protocol_version = revision;
    config
}

/// `execute_in_session` of `code`, which must succeed.
async fn exec(client: &Client, sid: &str, code: &str) -> CallToolResult {
    let args = json!({"session_id": sid, "code": code})
        .as_object()
        .cloned()
        .unwrap();
    let r = client
        .call_tool(CallToolRequestParams::new("execute_in_session").with_arguments(args))
        .await
        .expect("tools/call");
    assert_eq!(r.is_error, Some(false), "{r:?}");
    r
}

/// R code whose output says whether the session's harness is bytecode yet.
/// (Upper case, so that no echo of the code itself matches.)
const COMPILED_PROBE: &str =
    "cat(toupper(typeof(.Internal(bodyCode(get('.rsession', 'rsession:harness')$execute)))))";

/// Whether a result of [`COMPILED_PROBE`] says the harness is bytecode.
fn says_compiled(result: &Value) -> bool {
    result.to_string().contains("BYTECODE")
}

/// Repeat `probe` (an evaluation through one path) until the harness there is compiled: a
/// harness the server installed compiles in a background child and is adopted on a later call
/// (crate `rsession-harness`), and the bench measures the state a session is in from then on.
async fn until_compiled(path: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !probe().await {
        assert!(
            Instant::now() < deadline,
            "{path}: harness not compiled after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create(client: &Client) -> String {
    let r = client
        .call_tool(CallToolRequestParams::new("create_session"))
        .await
        .expect("create_session");
    r.structured_content.expect("structured")["session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// The MCP servers of one `rsession-mcp` binary: one over stdio per
/// protocol revision, one over streamable HTTP with two clients per
/// revision (rmcp's default transport, and one keeping its connection).
struct Servers {
    clients: Vec<(String, Client)>,
    http_child: tokio::process::Child,
    /// The HTTP server's `host:port`.
    listen: String,
}

impl Servers {
    async fn start(bin: &str, server_args: &[String], label: &str) -> Servers {
        let stdio = |revision: ProtocolVersion| {
            let cmd = tokio::process::Command::new(bin).configure(|c| {
                c.args(server_args).env("RSESSION_LOG", "warn");
            });
            at(revision).serve(TokioChildProcess::new(cmd).unwrap())
        };
        let stdio_new = stdio(ProtocolVersion::V_2026_07_28)
            .await
            .expect("stdio MCP");
        let stdio_old = stdio(ProtocolVersion::V_2025_11_25)
            .await
            .expect("stdio MCP");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let http_child = tokio::process::Command::new(bin)
            .args(server_args)
            .args(["--transport", "http", "--listen", &listen])
            .env("RSESSION_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn http server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(&listen).await.is_err() {
            assert!(Instant::now() < deadline, "http server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let uri = format!("http://{listen}/mcp");
        // rmcp's default transport opens a new connection for every request
        // (its reqwest client keeps no idle connections); the keep-alive
        // clients reuse one, as the Python SDK's httpx and Node's fetch do.
        let http = |revision: ProtocolVersion| {
            at(revision).serve(StreamableHttpClientTransport::from_uri(uri.clone()))
        };
        let kept_alive = |revision: ProtocolVersion| {
            at(revision).serve(StreamableHttpClientTransport::with_client(
                reqwest::Client::new(),
                StreamableHttpClientTransportConfig::with_uri(uri.clone()),
            ))
        };
        let http_new = http(ProtocolVersion::V_2026_07_28).await.expect("http MCP");
        let http_old = http(ProtocolVersion::V_2025_11_25).await.expect("http MCP");
        let kept_new = kept_alive(ProtocolVersion::V_2026_07_28)
            .await
            .expect("http MCP");
        let kept_old = kept_alive(ProtocolVersion::V_2025_11_25)
            .await
            .expect("http MCP");
        let clients = [
            ("MCP stdio, 2026-07-28", stdio_new),
            ("MCP streamable HTTP, 2026-07-28", http_new),
            ("MCP streamable HTTP keep-alive, 2026-07-28", kept_new),
            ("MCP stdio, 2025-11-25", stdio_old),
            ("MCP streamable HTTP, 2025-11-25", http_old),
            ("MCP streamable HTTP keep-alive, 2025-11-25", kept_old),
        ]
        .into_iter()
        .map(|(name, c)| (format!("{name}{label}"), c))
        .collect();
        Servers {
            clients,
            http_child,
            listen,
        }
    }

    async fn stop(mut self) {
        for (_, c) in self.clients {
            let _ = c.cancel().await;
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.http_child.id().unwrap_or(0).to_string()])
            .status();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.http_child.wait()).await;
    }
}

/// `params._meta` of a stateless 2026-07-28 request: its protocol revision and client
/// (MCP 2026-07-28, "Base Protocol").
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "mcp_roundtrip", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// The thinnest MCP clients: hand-built 2026-07-28 `tools/call` requests, one JSON line each
/// over the pipes of a stdio server of its own, and one POST each to the HTTP server of the
/// build under test, over a kept-alive reqwest connection or over a new one each time.
struct Plain {
    child: tokio::process::Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    http: reqwest::Client,
    /// Keeps no idle connection, as rmcp's default client transport.
    fresh: reqwest::Client,
    url: String,
    next_id: u64,
}

impl Plain {
    async fn start(bin: &str, server_args: &[String], listen: &str) -> Plain {
        let mut child = tokio::process::Command::new(bin)
            .args(server_args)
            .env("RSESSION_LOG", "warn")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn stdio server");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Plain {
            child,
            stdin,
            stdout,
            http: reqwest::Client::new(),
            fresh: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            url: format!("http://{listen}/mcp"),
            next_id: 0,
        }
    }

    fn request(&mut self, tool: &str, args: Value) -> (u64, String) {
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call",
                          "params": {"name": tool, "arguments": args, "_meta": meta()}});
        (self.next_id, body.to_string())
    }

    /// `tools/call` of `tool` over stdio; the call's result (notifications are skipped).
    async fn stdio(&mut self, tool: &str, args: Value) -> Value {
        let (id, mut line) = self.request(tool, args);
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.expect("write");
        loop {
            let line = self.stdout.next_line().await.expect("read").expect("open");
            let msg: Value = serde_json::from_str(&line).expect("JSON-RPC line");
            if msg["id"] == id {
                return msg["result"].clone();
            }
        }
    }

    /// `tools/call` of `tool` as one POST (2026-07-28 headers) on the kept-alive connection;
    /// the call's result.
    async fn post(&mut self, tool: &str, args: Value) -> Value {
        self.post_on(false, tool, args).await
    }

    /// The same POST, on a new connection when `fresh`.
    async fn post_on(&mut self, fresh: bool, tool: &str, args: Value) -> Value {
        let (_, body) = self.request(tool, args);
        let http = if fresh { &self.fresh } else { &self.http };
        let reply = http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", tool)
            .body(body)
            .send()
            .await
            .expect("POST /mcp");
        assert!(reply.status().is_success(), "{}", reply.status());
        let reply: Value = reply.json().await.expect("JSON reply");
        reply["result"].clone()
    }
}

fn checked(result: Value) -> Value {
    assert_eq!(result["isError"], json!(false), "{result}");
    result
}

#[tokio::main]
async fn main() {
    let preloaded = std::env::var_os("RSESSION_BENCH_PRELOADED").is_some();
    let rserve = LocalRserve::start(&LocalRserveOptions {
        harness: preloaded.then_some(rsession_harness::Preload::Compiled),
        ..LocalRserveOptions::default()
    })
    .await
    .expect("Rserve");
    let pwfile = rserve.dir().join("bench-password");
    std::fs::write(&pwfile, format!("{}\n", rserve.credentials().password)).unwrap();
    let opts = ConnectOptions {
        username: Some(rserve.credentials().username.clone()),
        password: Some(rserve.credentials().password.clone()),
        ..ConnectOptions::default()
    };
    let server_args = vec![
        // The given Rserve is the baseline's, so the server runs unsandboxed
        // (benches/sandbox.rs measures the sandbox).
        "--sandbox".to_string(),
        "danger-full-access".into(),
        "--rserve".into(),
        rserve.addr().to_string(),
        "--rserve-user".into(),
        rserve.credentials().username.clone(),
        "--rserve-password-file".into(),
        pwfile.display().to_string(),
        "--workspace-root".into(),
        rserve.dir().join("ws").display().to_string(),
    ];

    // raw QAP1 and raw harness connections
    let mut raw = Connection::connect(rserve.addr(), &opts)
        .await
        .expect("connect");
    let mut harness = Connection::connect(rserve.addr(), &opts)
        .await
        .expect("connect");
    if !preloaded {
        harness.void_eval(HARNESS_R).await.unwrap();
    }
    let ws = rserve.dir().join("ws/raw-harness").display().to_string();
    harness.eval(&init_call(&ws).unwrap()).await.unwrap();

    // This build's servers, and with RSESSION_BENCH_BASELINE_BIN a second
    // build's (say, main's) beside them, so both are measured in one run.
    let mut servers = vec![Servers::start(SERVER, &server_args, "").await];
    if let Ok(baseline) = std::env::var("RSESSION_BENCH_BASELINE_BIN") {
        servers.push(Servers::start(&baseline, &server_args, " (baseline build)").await);
    }
    let clients: Vec<(String, &Client)> = servers
        .iter()
        .flat_map(|s| s.clients.iter().map(|(name, c)| (name.clone(), c)))
        .collect();
    let mut sids = Vec::new();
    for (_, c) in &clients {
        sids.push(create(c).await);
    }
    let mut plain = Plain::start(SERVER, &server_args, &servers[0].listen).await;
    let sid_of = |r: Value| {
        r["structuredContent"]["session_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let plain_stdio_sid = sid_of(checked(plain.stdio("create_session", json!({})).await));
    // A session per path: two paths on one session would run back to back in the
    // same R, the second with the caches the first just warmed (0.4 ms less for printing).
    let plain_post_sids = [
        sid_of(checked(plain.post("create_session", json!({})).await)),
        sid_of(checked(
            plain.post_on(true, "create_session", json!({})).await,
        )),
    ];
    let plain_names = [
        "plain JSON-RPC over stdio, 2026-07-28",
        "plain JSON-RPC POST keep-alive, 2026-07-28",
        "plain JSON-RPC POST, a connection per request, 2026-07-28",
    ];
    // Every session of this build (the baseline build's harness may not compile itself) runs
    // its harness compiled before anything is measured.
    let probe = execute_call(COMPILED_PROBE, &ExecLimits::default()).unwrap();
    until_compiled("QAP1 + harness", async || {
        let r = harness.eval(&probe).await.expect("harness eval");
        format!("{r:?}").contains("BYTECODE")
    })
    .await;
    for ((name, c), sid) in clients.iter().zip(&sids).take(servers[0].clients.len()) {
        until_compiled(name, async || {
            says_compiled(&serde_json::to_value(exec(c, sid, COMPILED_PROBE).await).unwrap())
        })
        .await;
    }
    let args = |sid: &str| json!({"session_id": sid, "code": COMPILED_PROBE});
    until_compiled(plain_names[0], async || {
        says_compiled(&checked(
            plain
                .stdio("execute_in_session", args(&plain_stdio_sid))
                .await,
        ))
    })
    .await;
    for (k, sid) in plain_post_sids.iter().enumerate() {
        until_compiled(plain_names[1 + k], async || {
            says_compiled(&checked(
                plain.post_on(k == 1, "execute_in_session", args(sid)).await,
            ))
        })
        .await;
    }

    let block: usize = std::env::var("RSESSION_BENCH_BLOCK")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(1)
        .max(1);
    println!(
        "Harness: {}\n",
        if preloaded {
            "preloaded and compiled by the Rserve parent (RSESSION_BENCH_PRELOADED)"
        } else {
            "installed by the server on each connection, compiled in the background (waited for)"
        }
    );
    println!("| code | path | p50 ms | p99 ms | p50 − raw QAP1 p50 | p50 ratio to raw |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for case in &CASES {
        let n = case.iterations;
        let call = execute_call(
            case.code,
            &ExecLimits {
                max_output_bytes: 65536,
                ..ExecLimits::default()
            },
        )
        .unwrap();
        // Paths take turns, `block` calls at a time (call by call unless
        // RSESSION_BENCH_BLOCK says otherwise), so machine load drifts
        // affect them alike. One call per turn runs every path with the
        // caches the other paths left (as an agent's calls seconds apart
        // would); longer turns measure a session busy with one caller.
        let mut samples: Vec<Vec<Duration>> =
            vec![Vec::new(); 2 + clients.len() + plain_names.len()];
        let warmup = n / 10;
        // Each turn takes the paths in a new order (seeded, so runs repeat it), so that no path
        // always runs right after the same neighbour: in a fixed order, rmcp's
        // connection-per-request paths always followed a stdio server and their keep-alive twins
        // always followed them. Shuffled, the gap between the two stayed (0.14 ms for `1+1` in
        // three runs, as between the thin POST pair): it is the new connection, not the order.
        let mut order: Vec<usize> = (0..samples.len()).collect();
        let mut rng = StdRng::seed_from_u64(20261202);
        for turn in 0..(n + warmup).div_ceil(block) {
            order.shuffle(&mut rng);
            for &k in &order {
                let path = &mut samples[k];
                for j in 0..block {
                    let t = Instant::now();
                    match k {
                        0 => drop(raw.eval(case.raw).await.expect("raw eval")),
                        1 => drop(harness.eval(&call).await.expect("harness eval")),
                        k if k < 2 + clients.len() => {
                            drop(exec(clients[k - 2].1, &sids[k - 2], case.code).await)
                        }
                        k if k == 2 + clients.len() => drop(checked(
                            plain
                                .stdio(
                                    "execute_in_session",
                                    json!({"session_id": plain_stdio_sid, "code": case.code}),
                                )
                                .await,
                        )),
                        k => {
                            let fresh = k == 2 + clients.len() + 2;
                            let sid = &plain_post_sids[usize::from(fresh)];
                            drop(checked(
                                plain
                                    .post_on(
                                        fresh,
                                        "execute_in_session",
                                        json!({"session_id": sid, "code": case.code}),
                                    )
                                    .await,
                            ))
                        }
                    }
                    if turn * block + j >= warmup {
                        path.push(t.elapsed());
                    }
                }
            }
        }
        let all: Vec<Stats> = samples.into_iter().map(stats).collect();
        let (raw_s, harness_s) = (all[0], all[1]);
        let names = ["raw QAP1 eval", "QAP1 + harness (no MCP)"]
            .into_iter()
            .map(str::to_string)
            .chain(clients.iter().map(|(name, _)| name.clone()))
            .chain(plain_names.iter().map(|name| name.to_string()));
        for (path, s) in names.zip(all.iter().copied()) {
            let delta = s.p50.as_secs_f64() - raw_s.p50.as_secs_f64();
            println!(
                "| `{}` | {path} | {} | {} | {:+.3} ms | {:.2}× |",
                case.name,
                ms(s.p50),
                ms(s.p99),
                delta * 1000.0,
                s.p50.as_secs_f64() / raw_s.p50.as_secs_f64()
            );
        }
        let path_names = clients
            .iter()
            .map(|(name, _)| name.as_str())
            .chain(plain_names);
        for (name, s) in path_names.zip(&all[2..]) {
            println!(
                "| `{}` | {name} − harness | | | {:+.3} ms | |",
                case.name,
                (s.p50.as_secs_f64() - harness_s.p50.as_secs_f64()) * 1000.0
            );
        }
    }

    mcp_layer(&servers[0].listen, &clients, &mut plain).await;
    let _ = plain.child.kill().await;

    for servers in servers {
        servers.stop().await;
    }
    raw.close().await;
    harness.close().await;
    rserve.stop().await;
}

/// The MCP layer alone: `list_sessions` (no R) through every client, and the
/// HTTP baselines, interleaved call by call; prints its own table.
async fn mcp_layer(listen: &str, clients: &[(String, &Client)], plain: &mut Plain) {
    const N: usize = 2000;
    let http = reqwest::Client::new();
    let healthz = format!("http://{listen}/healthz");
    let first = checked(plain.post("list_sessions", json!({})).await);
    assert!(first["structuredContent"]["sessions"].is_array(), "{first}");

    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); 3 + clients.len()];
    for turn in 0..N + N / 10 {
        for (k, path) in samples.iter_mut().enumerate() {
            let t = Instant::now();
            match k {
                0 => {
                    let r = http.get(&healthz).send().await;
                    drop(r.expect("GET /healthz").bytes().await.expect("body"));
                }
                1 => drop(checked(plain.post("list_sessions", json!({})).await)),
                2 => drop(checked(plain.stdio("list_sessions", json!({})).await)),
                _ => {
                    let r = clients[k - 3]
                        .1
                        .call_tool(CallToolRequestParams::new("list_sessions"))
                        .await
                        .expect("list_sessions");
                    assert_eq!(r.is_error, Some(false), "{r:?}");
                }
            }
            if turn >= N / 10 {
                path.push(t.elapsed());
            }
        }
    }
    println!();
    println!("| `list_sessions` (no R) | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: |");
    let names = [
        "HTTP floor: GET /healthz (reqwest)",
        "plain POST tools/call, 2026-07-28 (reqwest)",
        "plain JSON-RPC over stdio, 2026-07-28",
    ]
    .into_iter()
    .map(str::to_string)
    .chain(clients.iter().map(|(name, _)| name.clone()));
    for (name, s) in names.zip(samples.into_iter().map(stats)) {
        println!("| {name} | {} | {} |", ms(s.p50), ms(s.p99));
    }
}
