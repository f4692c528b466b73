//! What the direct backend's sandbox costs, against the same server
//! unsandboxed and against mcp-repl, in one run, all driven by rmcp's client
//! over stdio at protocol revision 2025-11-25:
//!
//! 1. server start → first result: spawn the server, initialize, (for
//!    RSession) `create_session`, then evaluate `1+1`;
//! 2. `create_session` on a running server (session start), back to back and
//!    1 s apart (when the sandboxed server's spare sandbox is ready);
//! 3. the `1+1` round trip on an open session.
//!
//! ```text
//! python3 -m venv /tmp/mcprepl && /tmp/mcprepl/bin/pip install posit-mcp-repl==0.3.0
//! MCP_REPL=/tmp/mcprepl/bin/mcp-repl cargo bench -p rsession-mcp --bench sandbox
//! ```
//!
//! Without `MCP_REPL` (or `mcp-repl` on `PATH`) the mcp-repl rows are left
//! out. Paths are interleaved round by round so load drifts hit them alike.
//! Prints Markdown tables (p50, p90 and ratios to the unsandboxed server).

use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_rsession-mcp");
/// Rounds of "server start → first result" per server.
const COLD_ROUNDS: usize = 12;
/// Session starts per mode.
const SESSION_STARTS: usize = 30;
/// Session starts per mode with [`AGENT_PAUSE`] before each round.
const SPACED_STARTS: usize = 15;
const AGENT_PAUSE: Duration = Duration::from_secs(1);
/// `1+1` round trips per mode (mcp-repl: [`REPL_CALLS`]).
const CALLS: usize = 1000;
const REPL_CALLS: usize = 30;

type Client = RunningService<RoleClient, ClientConfig>;

#[derive(Clone, Copy)]
enum Server {
    Sandboxed,
    Unsandboxed,
    McpRepl,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Sandboxed => "rsession-mcp, `--sandbox workspace-write` (default)",
            Server::Unsandboxed => "rsession-mcp, `--sandbox danger-full-access`",
            Server::McpRepl => "mcp-repl 0.3.0 (posit-mcp-repl), its default sandbox",
        }
    }
}

fn mcp_repl() -> Option<String> {
    if let Ok(p) = std::env::var("MCP_REPL") {
        return Some(p);
    }
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v mcp-repl"])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&found.stdout).trim().to_string();
    (!p.is_empty()).then_some(p)
}

async fn start(server: Server, repl: Option<&str>) -> Client {
    let (program, args): (String, Vec<&str>) = match server {
        Server::Sandboxed => (SERVER.into(), vec!["--workspace-root", "temp"]),
        Server::Unsandboxed => (SERVER.into(), vec!["--sandbox", "danger-full-access"]),
        Server::McpRepl => (repl.expect("mcp-repl").into(), vec![]),
    };
    let cmd = tokio::process::Command::new(program).configure(|c| {
        c.args(&args).env("RSESSION_LOG", "warn");
    });
    let mut config = ClientConfig::default();
    config.protocol_version = ProtocolVersion::V_2025_11_25;
    config
        .serve(TokioChildProcess::new(cmd).expect("spawn"))
        .await
        .expect("MCP initialize")
}

async fn call(client: &Client, tool: &'static str, args: Value) -> rmcp::model::CallToolResult {
    let r = client
        .call_tool(
            CallToolRequestParams::new(tool).with_arguments(args.as_object().cloned().unwrap()),
        )
        .await
        .expect("tools/call");
    assert_ne!(r.is_error, Some(true), "{tool}: {r:?}");
    r
}

async fn create(client: &Client) -> String {
    let r = call(client, "create_session", json!({})).await;
    r.structured_content.expect("structured")["session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One `1+1`: through `execute_in_session` on `sid`, or mcp-repl's `repl`.
async fn one_plus_one(client: &Client, sid: Option<&str>) {
    match sid {
        Some(sid) => {
            call(
                client,
                "execute_in_session",
                json!({"session_id": sid, "code": "1+1"}),
            )
            .await;
        }
        None => {
            call(client, "repl", json!({"input": "1+1\n"})).await;
        }
    }
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn table(title: &str, rows: &mut [(Server, Vec<Duration>)]) {
    println!("\n**{title}**\n");
    println!("| server | n | p50 ms | p90 ms | p50 ratio to unsandboxed | p50 − unsandboxed |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let base = rows
        .iter_mut()
        .find(|(s, _)| matches!(s, Server::Unsandboxed))
        .map(|(_, v)| quantile(v, 0.5))
        .expect("baseline");
    for (server, v) in rows.iter_mut() {
        let p50 = quantile(v, 0.5);
        let p90 = quantile(v, 0.9);
        println!(
            "| {} | {} | {} | {} | {:.2}× | {:+.3} ms |",
            server.name(),
            v.len(),
            ms(p50),
            ms(p90),
            p50.as_secs_f64() / base.as_secs_f64(),
            (p50.as_secs_f64() - base.as_secs_f64()) * 1000.0
        );
    }
}

#[tokio::main]
async fn main() {
    let repl = mcp_repl();
    let mut servers = vec![Server::Sandboxed, Server::Unsandboxed];
    match &repl {
        Some(p) => {
            servers.push(Server::McpRepl);
            println!("mcp-repl: {p}");
        }
        None => println!("mcp-repl: not found (set MCP_REPL); its rows are left out"),
    }

    // 1. Server start → first result.
    let mut cold: Vec<(Server, Vec<Duration>)> = servers.iter().map(|s| (*s, vec![])).collect();
    for round in 0..=COLD_ROUNDS {
        for (server, samples) in cold.iter_mut() {
            let t = Instant::now();
            let client = start(*server, repl.as_deref()).await;
            let sid = match server {
                Server::McpRepl => None,
                _ => Some(create(&client).await),
            };
            one_plus_one(&client, sid.as_deref()).await;
            let took = t.elapsed();
            let _ = client.cancel().await;
            if round > 0 {
                samples.push(took); // round 0 warms the page cache
            }
        }
    }
    table("Server start → first `1+1` result", &mut cold);

    // 2 and 3 on one running server per RSession mode.
    let sandboxed = start(Server::Sandboxed, None).await;
    let unsandboxed = start(Server::Unsandboxed, None).await;
    let pair = [
        (Server::Sandboxed, &sandboxed),
        (Server::Unsandboxed, &unsandboxed),
    ];
    let mut starts: Vec<(Server, Vec<Duration>)> = pair.iter().map(|(s, _)| (*s, vec![])).collect();
    for _ in 0..SESSION_STARTS {
        for ((_, client), (_, samples)) in pair.iter().zip(starts.iter_mut()) {
            let t = Instant::now();
            let sid = create(client).await;
            samples.push(t.elapsed());
            call(client, "close_session", json!({"session_id": sid})).await;
        }
    }
    table(
        "Session start, back to back (`create_session` until R answers, the next right after a close)",
        &mut starts,
    );
    // An agent works between sessions; by its next create the sandboxed
    // server's spare sandbox is ready. The pause stands for that work.
    let mut spaced: Vec<(Server, Vec<Duration>)> = pair.iter().map(|(s, _)| (*s, vec![])).collect();
    for _ in 0..SPACED_STARTS {
        tokio::time::sleep(AGENT_PAUSE).await;
        for ((_, client), (_, samples)) in pair.iter().zip(spaced.iter_mut()) {
            let t = Instant::now();
            let sid = create(client).await;
            samples.push(t.elapsed());
            call(client, "close_session", json!({"session_id": sid})).await;
        }
    }
    table(
        "Session start, 1 s apart (the spare sandbox ready, as after an agent's work)",
        &mut spaced,
    );

    let sids = [create(&sandboxed).await, create(&unsandboxed).await];
    let mut trips: Vec<(Server, Vec<Duration>)> = pair.iter().map(|(s, _)| (*s, vec![])).collect();
    for i in 0..(CALLS + CALLS / 10) {
        for (((_, client), sid), (_, samples)) in pair.iter().zip(&sids).zip(trips.iter_mut()) {
            let t = Instant::now();
            one_plus_one(client, Some(sid)).await;
            if i >= CALLS / 10 {
                samples.push(t.elapsed());
            }
        }
    }
    if let Some(repl) = &repl {
        let client = start(Server::McpRepl, Some(repl)).await;
        one_plus_one(&client, None).await;
        let mut v = Vec::new();
        for _ in 0..REPL_CALLS {
            let t = Instant::now();
            one_plus_one(&client, None).await;
            v.push(t.elapsed());
        }
        trips.push((Server::McpRepl, v));
        let _ = client.cancel().await;
    }
    table("`1+1` round trip on an open session", &mut trips);
    let _ = sandboxed.cancel().await;
    let _ = unsandboxed.cancel().await;
}
