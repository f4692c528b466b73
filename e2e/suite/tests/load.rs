//! Load through the in-cluster MCP frontend: 20 agents (own identities, own MCP clients) at
//! once, each creating a session and running 50 evaluations in it, with no error allowed.
//! Prints one line
//! `LOAD: <n> evaluations, <e> errors, p50 .. ms, p95 .. ms, frontend peak RSS .. MiB, operator peak RSS .. MiB`
//! (peak RSS is `VmHWM` of the processes on this machine, the node). Bounded by 10 minutes.
//! `#[ignore]`: `e2e/run-e2e.sh` runs it with `--ignored --test-threads=1`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use kube::ResourceExt;
use rsession_e2e::*;

const AGENTS: usize = 20;
const EVALUATIONS: usize = 50;
const DEADLINE: Duration = Duration::from_secs(600);

/// What one agent saw: session creation time, evaluation latencies (ms), errors.
#[derive(Default)]
struct AgentRun {
    create_ms: Option<f64>,
    latencies: Vec<f64>,
    errors: Vec<String>,
}

/// One agent: create a session, run the evaluations in order (each checks the state the
/// previous one left), close the session.
async fn run_agent(agent: &Agent) -> AgentRun {
    let mut run = AgentRun::default();
    let t0 = Instant::now();
    let id = match agent.create_session().await {
        Ok(id) => id,
        Err(e) => {
            run.errors.push(format!("{}: {e:#}", agent.sa));
            return run;
        }
    };
    run.create_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
    for i in 1..=EVALUATIONS {
        let t = Instant::now();
        // A name no attached package exports (dplyr, preloaded, has `n()`).
        let r = agent
            .eval(
                &id,
                "e2e_n <- if (exists('e2e_n', inherits = FALSE)) e2e_n + 1L else 1L; cat(e2e_n, sum(seq_len(e2e_n)))",
            )
            .await;
        run.latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        let want = format!("{i} {}", i * (i + 1) / 2);
        match r {
            Ok(out) if out == want => {}
            Ok(out) => run
                .errors
                .push(format!("{id} #{i}: {out:?}, expected {want:?}")),
            Err(e) => run.errors.push(format!("{id} #{i}: {e:#}")),
        }
    }
    if let Err(e) = agent.close_session(&id).await {
        run.errors.push(format!("close {id}: {e:#}"));
    }
    run
}

/// Peak and current resident set (MiB) of the `exe` processes in the pods of `component`.
async fn rss(client: &kube::Client, component: &str, exe: &str) -> Result<(f64, f64)> {
    let mut peak = 0u64;
    let mut now = 0u64;
    let mut found = 0;
    for pod in component_pods(client, component).await? {
        let uid = pod.uid().context("pod uid")?;
        for p in pod_processes(&uid, exe) {
            found += 1;
            peak = peak.max(status_kib(p.pid, "VmHWM").unwrap_or(0));
            now = now.max(status_kib(p.pid, "VmRSS").unwrap_or(0));
        }
    }
    ensure!(
        found > 0,
        "no {exe} process of the {component} pods on this machine"
    );
    Ok((peak as f64 / 1024.0, now as f64 / 1024.0))
}

#[tokio::test]
#[ignore = "load test; needs a cluster with the chart installed (e2e/run-e2e.sh); runs on the node"]
async fn twenty_agents_fifty_evaluations_each_without_errors() -> Result<()> {
    let client = client().await?;
    let agents = futures::future::try_join_all((0..AGENTS).map(|i| {
        let client = client.clone();
        async move { Agent::new(&client, &format!("e2e-load-{i}")).await }
    }))
    .await?;
    let t0 = Instant::now();
    let runs = tokio::time::timeout(
        DEADLINE,
        futures::future::join_all(agents.iter().map(run_agent)),
    )
    .await
    .map_err(|_| anyhow!("load not done within {} s", DEADLINE.as_secs()))?;
    let wall = t0.elapsed().as_secs_f64();

    let mut latencies: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let mut creates: Vec<f64> = runs.iter().filter_map(|r| r.create_ms).collect();
    creates.sort_by(f64::total_cmp);
    let errors: Vec<&String> = runs.iter().flat_map(|r| &r.errors).collect();
    let (fe_peak, fe_now) = rss(&client, "mcp", "rsession-mcp").await?;
    let (op_peak, op_now) = rss(&client, "operator", "rsession-operator").await?;
    println!(
        "LOAD: {} evaluations, {} errors, p50 {:.1} ms, p95 {:.1} ms, frontend peak RSS {fe_peak:.1} MiB, operator peak RSS {op_peak:.1} MiB",
        latencies.len(),
        errors.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
    );
    println!(
        "LOAD: {AGENTS} sessions created concurrently, create_session p50 {:.2} s, p95 {:.2} s; wall {wall:.1} s; RSS now: frontend {fe_now:.1} MiB, operator {op_now:.1} MiB",
        percentile(&creates, 50.0) / 1000.0,
        percentile(&creates, 95.0) / 1000.0,
    );
    for e in errors.iter().take(20) {
        println!("LOAD error: {e}");
    }
    for agent in agents {
        agent.finish().await?;
    }
    ensure!(errors.is_empty(), "{} errors under load", errors.len());
    ensure!(
        latencies.len() == AGENTS * EVALUATIONS,
        "{} of {} evaluations ran",
        latencies.len(),
        AGENTS * EVALUATIONS
    );
    Ok(())
}
