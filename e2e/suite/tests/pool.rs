//! Warm pools on the local cluster: an RSessionPool of 3 serves 3 `create_session` calls warm
//! through the in-cluster MCP frontend and refills; `kubectl scale rsessionpool` drains it and a
//! 4th session starts cold and says so; a claimed session behaves like any other (tidyverse
//! state, a PNG plot, no way out of its pod, idle timeout).
//!
//! `cargo test -p rsession-e2e --test pool -- --ignored --test-threads=1`

use std::process::Command;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use rsession_api::well_known as wk;
use rsession_api::{Phase, RSession, RSessionPool};
use rsession_e2e::*;
use serde_json::json;

const POOL: &str = "e2e-pool";

fn kubectl(args: &[&str]) -> Result<String> {
    let out = Command::new("kubectl").args(args).output()?;
    ensure!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn pool_with(client: &kube::Client, ns: &str, replicas: i32) -> Result<()> {
    let pool: RSessionPool = serde_json::from_value(json!({
        "apiVersion": "rsession.dev/v1alpha1", "kind": "RSessionPool",
        "metadata": {"name": POOL},
        "spec": {"replicas": replicas},
    }))?;
    apply(client, ns, &pool).await?;
    Ok(())
}

/// Waits until the pool has exactly `ready` Ready unclaimed pods and no others.
async fn pool_settles(api: &Api<RSessionPool>, ready: i32, secs: u64) -> Result<RSessionPool> {
    wait_for(
        api,
        POOL,
        secs,
        &format!("{ready} Ready unclaimed pods"),
        move |p: Option<&RSessionPool>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.ready_replicas == ready && s.replicas == ready)
        },
    )
    .await
}

fn claim_of(rs: &RSession) -> Option<(bool, Option<String>)> {
    let c = rs.status.as_ref()?.claim.as_ref()?;
    Some((c.warm, c.pod_name.clone()))
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn a_pool_serves_warm_sessions_refills_scales_and_falls_back_cold() -> Result<()> {
    let client = client().await?;
    let ns = sessions_ns()?;
    let pools: Api<RSessionPool> = Api::namespaced(client.clone(), &ns);
    let rsessions: Api<RSession> = Api::namespaced(client.clone(), &ns);
    let agent = Agent::new(&client, "e2e-pool-agent").await?;
    pool_with(&client, &ns, 3).await?;
    pool_settles(&pools, 3, 240).await?;

    // Three sessions, each bound to a Ready pool pod.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = agent.call("create_session", json!({"pool": POOL})).await?;
        ensure!(tool_failure(&r).is_none(), "create_session: {}", text(&r));
        let id = structured_field(&r, "session_id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .with_context(|| format!("no session_id in {r:?}"))?;
        ensure!(
            text(&r).to_lowercase().contains("warm"),
            "the result says warm: {}",
            text(&r)
        );
        let rs = rsessions.get(&id).await?;
        let (warm, pod) = claim_of(&rs).context("status.claim")?;
        ensure!(warm, "{id} was not claimed warm: {:?}", rs.status);
        let pod = pod.context("claimed pod name")?;
        ensure!(pod.starts_with(&format!("{POOL}-")), "claimed {pod}");
        ids.push(id);
    }

    // A claimed session is a session like any other: state, tidyverse, a plot.
    let id = &ids[0];
    agent
        .eval(
            id,
            "library(dplyr); d <- tibble(a = 1:10) |> mutate(b = a * 2)",
        )
        .await?;
    let out = agent
        .eval(id, "cat(sum(d$b), nrow(filter(d, b > 10)))")
        .await?;
    ensure!(out.contains("110 5"), "state not kept: {out}");
    let r = agent
        .exec(
            id,
            "library(ggplot2); print(ggplot(d, aes(a, b)) + geom_point())",
        )
        .await?;
    let imgs = images(&r);
    ensure!(
        imgs.len() == 1 && imgs[0].0 == "image/png",
        "plot: {}",
        text(&r)
    );

    // ... and as shut in: the API server, the kubelet and the Rserve of an unclaimed pool pod
    // (same pool, same NetworkPolicy) are all out of reach from R.
    let refilled = pool_settles(&pools, 3, 240).await?;
    ensure!(
        refilled
            .status
            .as_ref()
            .is_some_and(|s| s.claimed_replicas >= 3),
        "claimed count: {:?}",
        refilled.status
    );
    let unclaimed: Vec<Pod> = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&format!(
            "{}={POOL},!{}",
            wk::LABEL_POOL,
            wk::LABEL_SESSION
        )))
        .await?
        .items;
    let spare_ip = unclaimed
        .first()
        .and_then(|p| p.status.as_ref()?.pod_ip.clone())
        .context("an unclaimed pool pod with an IP")?;
    let node = node_ip(&client).await?;
    let targets = [
        Target::new("kube-apiserver (node address)", &node, 6443),
        Target::new("kubelet", &node, 10250),
        Target::new(
            "an unclaimed pool pod's Rserve",
            &spare_ip,
            wk::RSERVE_PORT as u16,
        ),
    ];
    let results = probe_from_session(&agent, id, &targets).await?;
    print_probe_table("from a claimed pool session", &results).await;
    for r in &results {
        ensure!(
            !r.open,
            "{} reachable from a claimed session: {}",
            r.target.name,
            r.outcome
        );
    }

    // kubectl scale drains the pool: the spare pods go, claimed ones stay.
    kubectl(&["-n", &ns, "scale", "rsessionpool", POOL, "--replicas=0"])?;
    pool_settles(&pools, 0, 120).await?;
    for id in &ids {
        let rs = rsessions.get(id).await?;
        ensure!(
            rs.phase() == Some(Phase::Ready),
            "{id} after the scale-down: {:?}",
            rs.status
        );
    }
    // With the pool empty a 4th session starts cold and says so.
    let r = agent.call("create_session", json!({"pool": POOL})).await?;
    ensure!(tool_failure(&r).is_none(), "create_session: {}", text(&r));
    let cold = structured_field(&r, "session_id")
        .and_then(|v| v.as_str().map(str::to_owned))
        .context("session_id")?;
    ensure!(
        text(&r).to_lowercase().contains("cold"),
        "the result says cold: {}",
        text(&r)
    );
    let rs = rsessions.get(&cold).await?;
    ensure!(
        claim_of(&rs).is_some_and(|(warm, _)| !warm),
        "{cold}: {:?}",
        rs.status
    );
    let claimed = rs
        .status
        .as_ref()
        .and_then(|s| s.condition(rsession_api::status::CONDITION_CLAIMED))
        .context("Claimed condition")?;
    ensure!(
        claimed.status == "False" && claimed.reason == "PoolEmpty",
        "{claimed:?}"
    );
    let out = agent.eval(&cold, "cat(1 + 1)").await?;
    ensure!(out.contains('2'), "cold session: {out}");

    // Scaling up refills it.
    kubectl(&["-n", &ns, "scale", "rsessionpool", POOL, "--replicas=1"])?;
    pool_settles(&pools, 1, 240).await?;

    agent.close_all().await?;
    kubectl(&["-n", &ns, "delete", "rsessionpool", POOL, "--wait=true"])?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn a_claimed_session_expires_when_idle_like_any_other() -> Result<()> {
    let client = client().await?;
    let ns = sessions_ns()?;
    let pools: Api<RSessionPool> = Api::namespaced(client.clone(), &ns);
    let rsessions: Api<RSession> = Api::namespaced(client.clone(), &ns);
    pool_with(&client, &ns, 1).await?;
    pool_settles(&pools, 1, 240).await?;
    delete_rsession(&client, &ns, "pool-idle").await?;
    let rs: RSession = serde_json::from_value(json!({
        "apiVersion": "rsession.dev/v1alpha1", "kind": "RSession",
        "metadata": {"name": "pool-idle"},
        "spec": {"poolRef": {"name": POOL}, "lifecycle": {"idleTimeout": "5s", "maxLifetime": "1h"}},
    }))?;
    apply(&client, &ns, &rs).await?;
    let ready = wait_for(&rsessions, "pool-idle", 60, "Ready", is_ready()).await?;
    let (warm, pod) = claim_of(&ready).context("status.claim")?;
    ensure!(warm, "not claimed warm: {:?}", ready.status);
    // Idle time counts from the claim (the RSession's creation), not from when the pool pod
    // started long before: it expires about 5 s later, and its pod goes.
    wait_for(
        &rsessions,
        "pool-idle",
        60,
        "Expired",
        |o: Option<&RSession>| o.is_some_and(|r| r.phase() == Some(Phase::Expired)),
    )
    .await?;
    wait_deleted(
        &Api::<Pod>::namespaced(client.clone(), &ns),
        &pod.context("pod")?,
        60,
    )
    .await?;
    delete_rsession(&client, &ns, "pool-idle").await?;
    kubectl(&["-n", &ns, "delete", "rsessionpool", POOL, "--wait=true"])?;
    Ok(())
}
