//! Round trip of `execute_in_session` through MCP (stdio and streamable HTTP)
//! against the raw QAP1 eval of the same code on the same Rserve, in one run.
//!
//! ```text
//! cargo bench -p rsession-mcp --bench mcp_roundtrip
//! ```
//!
//! Starts one local Rserve; the MCP servers (the release `rsession-mcp`
//! binary, once with `--transport stdio`, once with `--transport http`) use it
//! through `--rserve`. Baselines: `eval` of the code on a plain QAP1
//! connection (for printing, `capture.output(print(...))`, so R does the same
//! formatting work), and the harness call `.rsession$execute()` on a raw
//! connection (R-side harness cost without MCP). The four paths are
//! interleaved call by call. Prints p50/p99 and ratios as a Markdown table.

use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use rserve::{ConnectOptions, Connection};
use rsession_mcp::harness::{ExecLimits, HARNESS_R, execute_call, init_call};
use rsession_mcp::local_rserve::{LocalRserve, LocalRserveOptions};
use serde_json::json;

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

async fn exec(client: &RunningService<RoleClient, ()>, sid: &str, code: &str) {
    let args = json!({"session_id": sid, "code": code})
        .as_object()
        .cloned()
        .unwrap();
    let r = client
        .call_tool(CallToolRequestParams::new("execute_in_session").with_arguments(args))
        .await
        .expect("tools/call");
    assert_eq!(r.is_error, Some(false), "{r:?}");
}

async fn create(client: &RunningService<RoleClient, ()>) -> String {
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

#[tokio::main]
async fn main() {
    let rserve = LocalRserve::start(&LocalRserveOptions::default())
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
        "--rserve".to_string(),
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
    harness.void_eval(HARNESS_R).await.unwrap();
    let ws = rserve.dir().join("ws/raw-harness").display().to_string();
    harness.eval(&init_call(&ws).unwrap()).await.unwrap();

    // MCP over stdio
    let cmd = tokio::process::Command::new(SERVER).configure(|c| {
        c.args(&server_args).env("RSESSION_LOG", "warn");
    });
    let stdio = ().serve(TokioChildProcess::new(cmd).unwrap()).await.expect("stdio MCP");
    let stdio_sid = create(&stdio).await;

    // MCP over streamable HTTP
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut http_child = tokio::process::Command::new(SERVER)
        .args(&server_args)
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
    let http = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "http://{listen}/mcp"
        )))
        .await
        .expect("http MCP");
    let http_sid = create(&http).await;

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
        // Interleave the four paths call by call, so machine load drifts
        // affect them alike.
        let mut samples: [Vec<Duration>; 4] = Default::default();
        for i in 0..(n + n / 10) {
            let t = Instant::now();
            raw.eval(case.raw).await.expect("raw eval");
            let d0 = t.elapsed();
            let t = Instant::now();
            harness.eval(&call).await.expect("harness eval");
            let d1 = t.elapsed();
            let t = Instant::now();
            exec(&stdio, &stdio_sid, case.code).await;
            let d2 = t.elapsed();
            let t = Instant::now();
            exec(&http, &http_sid, case.code).await;
            let d3 = t.elapsed();
            if i >= n / 10 {
                for (k, d) in [d0, d1, d2, d3].into_iter().enumerate() {
                    samples[k].push(d);
                }
            }
        }
        let [raw_v, harness_v, stdio_v, http_v] = samples;
        let (raw_s, harness_s, stdio_s, http_s) = (
            stats(raw_v),
            stats(harness_v),
            stats(stdio_v),
            stats(http_v),
        );
        for (path, s) in [
            ("raw QAP1 eval", raw_s),
            ("QAP1 + harness (no MCP)", harness_s),
            ("MCP stdio", stdio_s),
            ("MCP streamable HTTP", http_s),
        ] {
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
        println!(
            "| `{}` | MCP stdio − harness | | | {:+.3} ms | |",
            case.name,
            (stdio_s.p50.as_secs_f64() - harness_s.p50.as_secs_f64()) * 1000.0
        );
        println!(
            "| `{}` | MCP HTTP − harness | | | {:+.3} ms | |",
            case.name,
            (http_s.p50.as_secs_f64() - harness_s.p50.as_secs_f64()) * 1000.0
        );
    }

    let _ = stdio.cancel().await;
    let _ = http.cancel().await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &http_child.id().unwrap_or(0).to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(10), http_child.wait()).await;
    raw.close().await;
    harness.close().await;
    rserve.stop().await;
}
