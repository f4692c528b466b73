//! Session start-up benchmark through the in-cluster MCP frontend: `create_session` then a first
//! `execute_in_session`, sequentially, `RSESSION_E2E_BENCH_N` times (default 20), with the image
//! already imported. Stages are timed on this machine's clock from a pod watch (millisecond
//! resolution; the API's own timestamps have whole seconds):
//!
//! - pod created: the watch first sees the session pod (the operator has reconciled);
//! - scheduled: the watch first sees the session pod with `spec.nodeName` set;
//! - container started: the watch first sees the container `running`;
//! - pod Ready: the kubelet's readiness probe connected to Rserve (R started, packages
//!   preloaded, egress verified denied, Rserve listening; the probe runs once a second);
//! - RSession Ready: the operator wrote the Ready condition (a second watch, on RSessions);
//! - create_session returned: the frontend saw Ready, connected over QAP1 and set up the harness;
//! - first eval: the first `execute_in_session` (`1 + 1`) returned.
//!
//! Writes a Markdown table to `RSESSION_E2E_BENCH_OUT` (default
//! `$TMPDIR/rsession-bench-startup.md`) and prints it.
//! `cargo test -p rsession-e2e --test bench -- --ignored --nocapture`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use rsession_api::well_known as wk;
use rsession_e2e::*;
use serde_json::json;

#[derive(Default, Clone, Copy)]
struct Seen {
    created: Option<Instant>,
    scheduled: Option<Instant>,
    started: Option<Instant>,
    pod_ready: Option<Instant>,
}

/// Sets `slot` to `now` the first time `cond` holds.
fn first(slot: &mut Option<Instant>, cond: bool, now: Instant) {
    if slot.is_none() && cond {
        *slot = Some(now);
    }
}

#[tokio::test]
#[ignore = "benchmark; needs a cluster with the chart installed (e2e/run-e2e.sh --bench)"]
async fn session_startup_benchmark() -> Result<()> {
    let n: usize = std::env::var("RSESSION_E2E_BENCH_N")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(20);
    let client = client().await?;
    let ns = sessions_ns()?;
    let token = sa_token(
        &client,
        &ns,
        "e2e-bench",
        Some(&env("RSESSION_E2E_USER_CLUSTERROLE")?),
    )
    .await?;
    let mcp = mcp_connect(&mcp_url()?, Some(&token)).await?;

    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    // Told of every pod event, so the loop below can await a pod's Ready without polling.
    let pod_event = Arc::new(tokio::sync::Notify::new());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let watch_seen = seen.clone();
    let watch_event = pod_event.clone();
    let watch = tokio::spawn(async move {
        let mut stream =
            watcher(pods, watcher::Config::default().labels(wk::LABEL_SESSION)).boxed();
        while let Some(ev) = stream.next().await {
            let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = ev else {
                continue;
            };
            let now = Instant::now();
            let Some(session) = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(wk::LABEL_SESSION))
                .cloned()
            else {
                continue;
            };
            let mut map = watch_seen.lock().expect("lock");
            let e = map.entry(session).or_default();
            first(&mut e.created, true, now);
            let scheduled = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some();
            first(&mut e.scheduled, scheduled, now);
            let status = pod.status.as_ref();
            let running = status
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some())
                });
            first(&mut e.started, running, now);
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            first(&mut e.pod_ready, ready, now);
            drop(map);
            watch_event.notify_waiters();
        }
    });
    let rs_ready = ReadyTimes::watch(Api::namespaced(client.clone(), &ns));

    // Per start: the watched stages (None when a watch missed one), then create_session and
    // the first eval, in seconds from the create_session call.
    let mut rows: Vec<([Option<f64>; 5], f64, f64)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        let created = call(&mcp, "create_session", json!({})).await?;
        if created.is_error == Some(true) {
            // counted and reported, not hidden: the table says how many starts failed
            failures.push(format!("create_session {i}: {}", text(&created)));
            continue;
        }
        let t_ready = t0.elapsed().as_secs_f64();
        let id = structured_field(&created, "session_id")
            .and_then(|v| v.as_str().map(str::to_owned))
            .context("session_id")?;
        let r = call(
            &mcp,
            "execute_in_session",
            json!({"session_id": id, "code": "1 + 1"}),
        )
        .await?;
        let t_eval = t0.elapsed().as_secs_f64();
        ensure!(text(&r).contains('2'), "eval {i}: {}", text(&r));
        // create_session may return before the pod is Ready (the frontend logs in to a starting
        // pod's Rserve); wait for Ready, up to 5 s, so the table still has that stage.
        let pod_ready = || {
            seen.lock()
                .expect("lock")
                .get(&id)
                .and_then(|s| s.pod_ready)
        };
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while pod_ready().is_none() {
            let notified = pod_event.notified();
            if pod_ready().is_some() || tokio::time::timeout_at(until, notified).await.is_err() {
                break;
            }
        }
        // The operator writes Ready a moment after the probe passes: wait for that too.
        let rs_ready_at = rs_ready.wait(&id, Duration::from_secs(5)).await;
        let s = seen
            .lock()
            .expect("lock")
            .get(&id)
            .copied()
            .unwrap_or_default();
        let since = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(t0).as_secs_f64());
        rows.push((
            [
                since(s.created),
                since(s.scheduled),
                since(s.started),
                since(s.pod_ready),
                since(rs_ready_at),
            ],
            t_ready,
            t_eval,
        ));
        call(&mcp, "close_session", json!({"session_id": id})).await?;
    }
    watch.abort();
    drop(rs_ready);
    mcp.cancel().await?;

    let stat = |mut v: Vec<f64>| -> (f64, f64, usize) {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            (f64::NAN, f64::NAN, 0)
        } else {
            (percentile(&v, 50.0), percentile(&v, 95.0), v.len())
        }
    };
    let mut out = format!(
        "Sessions: {n} sequential, image imported, times in seconds from `create_session`.\n\n\
        | stage | p50 | p95 | samples |\n|---|---|---|---|\n"
    );
    let watched = [
        "pod created (operator reconciled)",
        "scheduled (pod has a node)",
        "container started (running)",
        "pod Ready (readiness probe passed)",
        "RSession Ready (operator status)",
    ];
    let mut columns: Vec<(&str, Vec<f64>)> = watched
        .iter()
        .enumerate()
        .map(|(i, name)| (*name, rows.iter().filter_map(|r| r.0[i]).collect()))
        .collect();
    columns.push((
        "create_session returned (frontend connected)",
        rows.iter().map(|r| r.1).collect(),
    ));
    columns.push(("first eval returned", rows.iter().map(|r| r.2).collect()));
    for (name, col) in columns {
        let (p50, p95, k) = stat(col);
        out.push_str(&format!("| {name} | {p50:.2} | {p95:.2} | {k} |\n"));
    }
    out.push_str(&format!("\nFailed starts: {} of {n}\n", failures.len()));
    for f in &failures {
        out.push_str(&format!("- {f}\n"));
    }
    let path = std::env::var("RSESSION_E2E_BENCH_OUT").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("rsession-bench-startup.md")
            .display()
            .to_string()
    });
    std::fs::write(&path, &out)?;
    println!("{out}\n(written to {path})");
    ensure!(
        failures.len() * 10 <= n,
        "more than 10% of the starts failed"
    );
    Ok(())
}
