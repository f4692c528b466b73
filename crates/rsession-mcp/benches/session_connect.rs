//! What opening a session's R costs on the frontend's side, by stage: the QAP1 connect (TCP,
//! Rserve's fork of its parent R, the ID string, the login), the harness install (evaluating
//! `harness::HARNESS_R`), the workspace `init` call and the `cdm` set-up call, as
//! `RConn::open` does them, then the first and second `1 + 1` through the harness. The Rserve
//! parent attaches the operator's default preload packages before it forks, as pool pods do
//! (`--no-preload`: not, as cold session pods by default). With `--harness-preloaded` it also
//! sources the harness first, as pool pods do (`rsession_harness::preload_r`): then there is no
//! install, and `init` is the one call that asks whether the harness is there and runs.
//!
//! ```text
//! cargo bench -p rsession-mcp --bench session_connect [-- --connections 50 --no-preload --harness-preloaded]
//! ```
//!
//! Prints p50/p95 per stage as a Markdown table.

use std::time::{Duration, Instant};

use clap::Parser;
use rserve::{ConnectOptions, Connection};
use rsession_mcp::harness::{ExecLimits, HARNESS_R, HarnessCall, execute_call, init_call};
use rsession_mcp::local_rserve::{LocalRserve, LocalRserveOptions};

/// The operator's default `preloadPackages` (rsession-operator `config.rs`).
const PRELOAD: &str = r#"for (p in c("dplyr", "tidyr", "readr", "ggplot2", "DBI", "jsonlite")) if (requireNamespace(p, quietly = TRUE)) suppressPackageStartupMessages(library(p, character.only = TRUE))"#;

#[derive(Parser)]
struct Args {
    /// Connections to open, one after another.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Do not attach the preload packages in the Rserve parent.
    #[arg(long)]
    no_preload: bool,
    /// The Rserve parent preloads the harness too (as pool pods do).
    #[arg(long)]
    harness_preloaded: bool,
    /// Ignored (cargo bench passes it).
    #[arg(long)]
    bench: bool,
}

fn percentile(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 * q) as usize).min(v.len() - 1);
    v[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let harness_dir = tempfile::tempdir().expect("temp dir");
    let harness_file = harness_dir.path().join("harness.R");
    std::fs::write(&harness_file, HARNESS_R).expect("harness file");
    let mut preload: Vec<String> = Vec::new();
    if !args.no_preload {
        preload.push(PRELOAD.to_string());
    }
    if args.harness_preloaded {
        preload.push(rsession_harness::preload_r(
            &harness_file.display().to_string(),
            rsession_harness::Preload::Compiled,
        ));
    }
    let rserve = LocalRserve::start(&LocalRserveOptions {
        // Rserve's parent evaluates this before it listens, as the pod command does.
        preload: (!preload.is_empty()).then(|| preload.join("; ")),
        ..LocalRserveOptions::default()
    })
    .await
    .expect("Rserve");
    let opts = ConnectOptions {
        username: Some(rserve.credentials().username.clone()),
        password: Some(rserve.credentials().password.clone()),
        ..ConnectOptions::default()
    };
    let ws = rserve.dir().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let init = init_call(&ws.display().to_string()).unwrap();
    let preloaded_init = rsession_harness::if_preloaded(&init);
    let cdm = HarnessCall::CdmSetup.render().unwrap();
    let first = execute_call("1 + 1", &ExecLimits::default()).unwrap();
    let names = [
        "connect + login",
        if args.harness_preloaded {
            "init (the harness preloaded: no install)"
        } else {
            "harness install"
        },
        if args.harness_preloaded {
            "(no separate init)"
        } else {
            "init"
        },
        "cdm setup",
        "total (session usable)",
        "first execute `1 + 1`",
        "second execute `1 + 1`",
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for _ in 0..args.connections {
        let t0 = Instant::now();
        let mut c = Connection::connect(rserve.addr(), &opts)
            .await
            .expect("connect");
        let t1 = Instant::now();
        if args.harness_preloaded {
            // No install: the one init call that checks for the harness (RConn::open's path).
            let info = c.eval(&preloaded_init).await.expect("init");
            assert!(!info.is_null(), "the preloaded harness was not recognised");
        } else {
            c.void_eval(HARNESS_R).await.expect("harness");
        }
        let t2 = Instant::now();
        if !args.harness_preloaded {
            c.eval(&init).await.expect("init");
        }
        let t3 = Instant::now();
        c.eval(&cdm).await.expect("cdm");
        let t4 = Instant::now();
        c.eval(&first).await.expect("first execute");
        let t5 = Instant::now();
        c.eval(&first).await.expect("second execute");
        let t6 = Instant::now();
        for (i, d) in [
            t1 - t0,
            t2 - t1,
            t3 - t2,
            t4 - t3,
            t4 - t0,
            t5 - t4,
            t6 - t5,
        ]
        .into_iter()
        .enumerate()
        {
            samples[i].push(d);
        }
        drop(c);
    }
    println!(
        "session connect, {} connections, preload {}, harness preloaded {}\n\n| stage | p50 (ms) | p95 (ms) |\n|---|---|---|",
        args.connections, !args.no_preload, args.harness_preloaded
    );
    for (name, v) in names.iter().zip(samples.iter_mut()) {
        println!(
            "| {name} | {:.1} | {:.1} |",
            percentile(v, 0.5),
            percentile(v, 0.95)
        );
    }
}
