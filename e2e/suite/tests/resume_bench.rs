//! Resume benchmark: how long the first evaluation takes on a Persistent session whose pod
//! ended for idleness after the checkpoint handshake (activity stamp → new pod → Ready →
//! connect → restore → the evaluation), against the same session's cold start in the same run
//! (`create_session` → first evaluation). R state of 10 MB and 100 MB (numeric vectors),
//! `RSESSION_E2E_RESUME_N` cycles each (default 3), through a local MCP frontend over stdio
//! (`rsession_e2e::local_frontend`).
//!
//! `cargo test -p rsession-e2e --test resume_bench -- --ignored --nocapture` (with the
//! `RSESSION_E2E_*` variables `e2e/run-e2e.sh` exports, and `RSESSION_E2E_MCP_BIN`).

use std::time::Instant;

use anyhow::{Result, ensure};
use kube::api::Api;
use rsession_api::{Phase, RSession};
use rsession_e2e::local_frontend::{self, HOSTPATH_CLASS};
use rsession_e2e::{client, delete_persistent, ok_stdout, sessions_ns, wait_for};

const PV: &str = "e2e-bench-resume-pv";

#[tokio::test]
#[ignore = "benchmark; needs a cluster with the chart installed (e2e/run-e2e.sh)"]
async fn resume_benchmark() -> Result<()> {
    let n: usize = std::env::var("RSESSION_E2E_RESUME_N")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(3);
    let kube = client().await?;
    let ns = sessions_ns()?;
    local_frontend::fresh_volume(&kube, &ns, PV, "bench-resume").await?;
    let mcp = local_frontend::start(
        &ns,
        &format!(
            "workspace: {{kind: Persistent, size: 1Gi, storageClassName: {HOSTPATH_CLASS}}}\n\
             lifecycle: {{idleTimeout: 10s}}\n"
        ),
    )
    .await?;
    let cold_started = Instant::now();
    let id = local_frontend::create_session(&mcp).await?;
    ok_stdout(
        &local_frontend::exec(&mcp, &id, "cat(1 + 1)").await?,
        "1 + 1",
    )?;
    let cold = cold_started.elapsed().as_secs_f64();

    let api: Api<RSession> = Api::namespaced(kube.clone(), &ns);
    let mut rows = Vec::new();
    for mb in [10u32, 100] {
        let make = format!("big <- runif({} * 131072); cat(length(big))", mb);
        for _ in 0..n {
            ok_stdout(&local_frontend::exec(&mcp, &id, &make).await?, &make)?;
            wait_for(
                &api,
                &id,
                180,
                "Expired after the checkpoint",
                |o: Option<&RSession>| {
                    o.is_some_and(|rs| {
                        rs.status.as_ref().and_then(|s| s.phase) == Some(Phase::Expired)
                    })
                },
            )
            .await?;
            let started = Instant::now();
            let r = local_frontend::exec(&mcp, &id, "cat(length(big))").await?;
            let secs = started.elapsed().as_secs_f64();
            let out = ok_stdout(&r, "cat(length(big))")?;
            ensure!(
                out.trim() == (u64::from(mb) * 131_072).to_string(),
                "restored length {out}"
            );
            let notice = local_frontend::reset_notice(&r);
            ensure!(notice.contains("restored"), "{notice}");
            rows.push((mb, secs));
        }
    }
    let mut out = format!(
        "| R state | resumes | p50 s | max s | p50 ratio to the cold start |\n| --- | ---: | ---: | ---: | ---: |\n| cold start (create_session + first eval, same session) | 1 | {cold:.2} | {cold:.2} | 1.00× |\n"
    );
    for mb in [10u32, 100] {
        let mut secs: Vec<f64> = rows.iter().filter(|r| r.0 == mb).map(|r| r.1).collect();
        secs.sort_by(f64::total_cmp);
        let p50 = secs[(secs.len() - 1) / 2];
        let max = secs.last().copied().unwrap_or(0.0);
        out.push_str(&format!(
            "| {mb} MB of objects | {} | {p50:.2} | {max:.2} | {:.2}× |\n",
            secs.len(),
            p50 / cold
        ));
    }
    println!("{out}");
    mcp.cancel().await.ok();
    delete_persistent(&kube, &ns, &id, PV).await
}
