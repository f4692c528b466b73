//! Warm-pool start-up benchmark through the in-cluster MCP frontend, run with the cold start-up
//! benchmark (`bench.rs`, which times each stage of a cold start) in one command:
//!
//! - warm: `RSESSION_E2E_POOL_BENCH_N` (default 50) sequential `create_session` calls with
//!   `pool`, each followed by a first `execute_in_session` (`1 + 1`); before each (untimed) the
//!   pool of 3 is full and Ready again, so every sample is a claim and no pool pod is starting
//!   on this machine's two cores meanwhile. Times from the call on this machine's clock: the
//!   RSession's Ready status as a watch sees it, `create_session` returning (the frontend
//!   connected and set up the harness), the first result; and the operator's own binding time
//!   (`status.claim.bindMilliseconds`).
//! - burst: the pool scaled to `RSESSION_E2E_POOL_BURST` (default 20) and, once all are Ready,
//!   as many `create_session` calls at once; the time until the last returned Ready.
//!
//! Writes Markdown to `RSESSION_E2E_POOL_BENCH_OUT` (default `$TMPDIR/rsession-bench-pool.md`)
//! and prints it.
//! `cargo test -p rsession-e2e --test bench --test pool_bench -- --ignored --nocapture`

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use kube::api::{Api, Patch, PatchParams};
use rsession_api::{RSession, RSessionPool};
use rsession_e2e::*;
use serde_json::json;

const POOL: &str = "bench-pool";

fn env_usize(name: &str, default: usize) -> Result<usize> {
    Ok(std::env::var(name)
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(default))
}

async fn scale(pools: &Api<RSessionPool>, replicas: usize) -> Result<()> {
    pools
        .patch_scale(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await?;
    Ok(())
}

async fn ready_at_least(pools: &Api<RSessionPool>, n: i32, secs: u64) -> Result<()> {
    wait_for(
        pools,
        POOL,
        secs,
        &format!("{n} Ready pool pods"),
        move |p: Option<&RSessionPool>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.ready_replicas >= n)
        },
    )
    .await?;
    Ok(())
}

fn summary(name: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "| {name} | {:.0} | {:.0} | {:.0} | {} |\n",
        percentile(&v, 50.0),
        percentile(&v, 95.0),
        v.last().copied().unwrap_or(f64::NAN),
        v.len()
    )
}

#[tokio::test]
#[ignore = "benchmark; needs a cluster with the chart installed (e2e/run-e2e.sh --bench)"]
async fn pool_startup_benchmark() -> Result<()> {
    let n = env_usize("RSESSION_E2E_POOL_BENCH_N", 50)?;
    let burst = env_usize("RSESSION_E2E_POOL_BURST", 20)?;
    let client = client().await?;
    let ns = sessions_ns()?;
    let pools: Api<RSessionPool> = Api::namespaced(client.clone(), &ns);
    let rsessions: Api<RSession> = Api::namespaced(client.clone(), &ns);
    let token = sa_token(
        &client,
        &ns,
        "e2e-pool-bench",
        Some(&env("RSESSION_E2E_USER_CLUSTERROLE")?),
    )
    .await?;
    let mcp = mcp_connect(&mcp_url()?, Some(&token)).await?;
    let pool: RSessionPool = serde_json::from_value(json!({
        "apiVersion": "rsession.dev/v1alpha1", "kind": "RSessionPool",
        "metadata": {"name": POOL}, "spec": {"replicas": 3},
    }))?;
    apply(&client, &ns, &pool).await?;
    ready_at_least(&pools, 3, 300).await?;

    // When each RSession's Ready status reached this machine (a watch, ms resolution).
    let ready_seen = ReadyTimes::watch(rsessions.clone());

    // Warm, sequential.
    let (mut to_ready, mut to_eval, mut bind) = (Vec::new(), Vec::new(), Vec::new());
    let mut status_ready = Vec::new();
    let mut cold = 0;
    for i in 0..n {
        ready_at_least(&pools, 3, 120).await?;
        let t0 = Instant::now();
        let created = call(&mcp, "create_session", json!({"pool": POOL})).await?;
        ensure!(
            created.is_error != Some(true),
            "create_session {i}: {}",
            text(&created)
        );
        let t_ready = t0.elapsed().as_secs_f64() * 1000.0;
        let id = structured_field(&created, "session_id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .context("session_id")?;
        let r = call(
            &mcp,
            "execute_in_session",
            json!({"session_id": id, "code": "1 + 1"}),
        )
        .await?;
        let t_eval = t0.elapsed().as_secs_f64() * 1000.0;
        ensure!(text(&r).contains('2'), "eval {i}: {}", text(&r));
        let claim = rsessions
            .get(&id)
            .await?
            .status
            .and_then(|s| s.claim)
            .context("status.claim")?;
        if claim.warm {
            if let Some(at) = ready_seen.get(&id) {
                status_ready.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
            }
            to_ready.push(t_ready);
            to_eval.push(t_eval);
            bind.extend(claim.bind_milliseconds.map(|ms| ms as f64));
        } else {
            cold += 1;
        }
        call(&mcp, "close_session", json!({"session_id": id})).await?;
    }

    // Burst: as many claims at once as the pool holds.
    scale(&pools, burst).await?;
    ready_at_least(&pools, i32::try_from(burst)?, 900).await?;
    let t0 = Instant::now();
    let results = futures::future::join_all((0..burst).map(|_| {
        let mcp = &mcp;
        async move {
            let r = call(mcp, "create_session", json!({"pool": POOL})).await?;
            anyhow::Ok((r, t0.elapsed().as_secs_f64() * 1000.0))
        }
    }))
    .await;
    let mut burst_ms = Vec::new();
    let (mut burst_status_ready, mut burst_bind) = (Vec::new(), Vec::new());
    let mut burst_warm = 0;
    for r in results {
        let (r, ms) = r?;
        ensure!(
            r.is_error != Some(true),
            "burst create_session: {}",
            text(&r)
        );
        let id = structured_field(&r, "session_id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .context("session_id")?;
        burst_ms.push(ms);
        if let Some(at) = ready_seen.get(&id) {
            burst_status_ready.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
        }
        let claim = rsessions.get(&id).await?.status.and_then(|s| s.claim);
        if let Some(c) = claim.filter(|c| c.warm) {
            burst_warm += 1;
            burst_bind.extend(c.bind_milliseconds.map(|ms| ms as f64));
        }
        call(&mcp, "close_session", json!({"session_id": id})).await?;
    }
    let all_ready = burst_ms.iter().copied().fold(0.0, f64::max);
    drop(ready_seen);
    scale(&pools, 0).await?;
    pools.delete(POOL, &Default::default()).await?;
    mcp.cancel().await?;

    let mut out = format!(
        "Warm claims: {n} sequential `create_session` with `pool` (pool of 3, full and Ready before each, untimed); milliseconds from the call.\n\n\
         | warm | p50 | p95 | max | samples |\n|---|---|---|---|---|\n"
    );
    out.push_str(&summary(
        "RSession Ready (operator status, seen by a watch)",
        status_ready,
    ));
    out.push_str(&summary(
        "create_session returned (Ready, connected)",
        to_ready,
    ));
    out.push_str(&summary("first eval returned", to_eval));
    out.push_str(&summary(
        "operator binding (status.claim.bindMilliseconds)",
        bind,
    ));
    out.push_str(&format!(
        "\nStarted cold although a Ready pod was there: {cold} of {n}\n"
    ));
    out.push_str(&format!(
        "\nBurst: {burst} `create_session` at once against a pool of {burst} Ready pods: all returned Ready within {all_ready:.0} ms; {burst_warm} of {burst} warm.\n\n\
         | burst | p50 | p95 | max | samples |\n|---|---|---|---|---|\n"
    ));
    out.push_str(&summary(
        "RSession Ready (operator status, seen by a watch)",
        burst_status_ready,
    ));
    out.push_str(&summary("create_session returned", burst_ms));
    out.push_str(&summary(
        "operator binding (status.claim.bindMilliseconds)",
        burst_bind,
    ));
    let path = std::env::var("RSESSION_E2E_POOL_BENCH_OUT").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("rsession-bench-pool.md")
            .display()
            .to_string()
    });
    std::fs::write(&path, &out)?;
    println!("{out}\n(written to {path})");
    ensure!(
        cold * 10 <= n,
        "more than 10% of the warm claims started cold"
    );
    Ok(())
}
