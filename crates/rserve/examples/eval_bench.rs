//! Raw QAP1 eval round trip: `CMD_eval` of an expression N times, printing p50/p99 in
//! microseconds. The baseline for MCP round-trip benchmarks.
//!
//! ```text
//! RSERVE_ADDR=127.0.0.1:6311 RSERVE_USER=u RSERVE_PASSWORD=p \
//!   cargo run --release -p rserve --example eval_bench -- 2000 '1+1'
//! ```
//! Without `RSERVE_ADDR` it starts its own Rserve through the `testing` fixture.
//!
//! With several expressions each gets its own connection (its own forked R) and they are
//! called in turn, call by call, so an A/B of two R functions sees the same machine load, and
//! each R waits while the others run, as an R behind a busy MCP server does between its calls.
//! `EVAL_BENCH_GAP_US` adds a pause after every call (microseconds, default 0).

use std::time::{Duration, Instant};

use rserve::{ConnectOptions, Connection};

/// Calls per expression before the timed ones.
const WARM_UP: usize = 100;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let mut exprs: Vec<String> = args.collect();
    if exprs.is_empty() {
        exprs.push("1+1".into());
    }
    let gap = Duration::from_micros(
        std::env::var("EVAL_BENCH_GAP_US")
            .ok()
            .map(|g| g.parse())
            .transpose()?
            .unwrap_or(0),
    );

    let mut _fixture = None;
    let (addr, opts) = match std::env::var("RSERVE_ADDR") {
        Ok(addr) => (
            addr,
            ConnectOptions {
                username: std::env::var("RSERVE_USER").ok(),
                password: std::env::var("RSERVE_PASSWORD").ok(),
                ..Default::default()
            },
        ),
        Err(_) => {
            let fx = rserve::testing::RserveFixture::start()?;
            let out = (fx.addr().to_string(), fx.options());
            _fixture = Some(fx);
            out
        }
    };
    let mut conns = Vec::with_capacity(exprs.len());
    for _ in &exprs {
        conns.push(Connection::connect(&addr, &opts).await?);
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); exprs.len()];
    let warm_up = WARM_UP.min(n);
    for i in 0..warm_up + n {
        for ((conn, expr), samples) in conns.iter_mut().zip(&exprs).zip(&mut samples) {
            let t = Instant::now();
            conn.eval(expr).await?;
            if i >= warm_up {
                samples.push(t.elapsed());
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
    }
    for (expr, samples) in exprs.iter().zip(&mut samples) {
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "raw QAP1 eval {expr:?}: n={n} p50={:.1}us p99={:.1}us",
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6
        );
    }
    Ok(())
}
