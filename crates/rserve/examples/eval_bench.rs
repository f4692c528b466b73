//! Raw QAP1 eval round trip: `CMD_eval` of an expression N times on one connection, printing
//! p50/p99 in microseconds. The baseline for MCP round-trip benchmarks.
//!
//! ```text
//! RSERVE_ADDR=127.0.0.1:6311 RSERVE_USER=u RSERVE_PASSWORD=p \
//!   cargo run --release -p rserve --example eval_bench -- 2000 '1+1'
//! ```
//! Without `RSERVE_ADDR` it starts its own Rserve through the `testing` fixture.

use std::time::{Duration, Instant};

use rserve::{ConnectOptions, Connection};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let expr = args.next().unwrap_or_else(|| "1+1".into());

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
    let mut conn = Connection::connect(&addr, &opts).await?;
    for _ in 0..n.min(100) {
        conn.eval(&expr).await?; // warm-up
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        conn.eval(&expr).await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "raw QAP1 eval {expr:?}: n={n} p50={:.1}us p99={:.1}us",
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6
    );
    Ok(())
}
