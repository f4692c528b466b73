//! Starts the test control plane (etcd, kube-apiserver, kube-controller-manager) in the
//! foreground for manual use: prints the kubeconfig path, runs until SIGINT/SIGTERM, then tears
//! everything down. `e2e/local/control-plane.sh` wraps it.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use rsession_testenv::{ControlPlane, Options, apply_crds};
use tokio::signal::unix::{SignalKind, signal};

/// Run a throw-away Kubernetes control plane on loopback.
#[derive(Debug, Parser)]
struct Args {
    /// Do not start kube-controller-manager (no garbage collection, no namespace deletion).
    #[arg(long)]
    no_controller_manager: bool,
    /// Also copy the admin kubeconfig to this path.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Apply the CRDs in this file or folder once the apiserver is ready (for example `crds/`).
    #[arg(long)]
    crds: Option<PathBuf>,
    /// Keep the temp folder (logs, certificates, etcd data) after shutdown.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "rsession_testenv=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut terminate = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let cp = ControlPlane::start(Options {
        controller_manager: !args.no_controller_manager,
        ..Options::default()
    })
    .await?;
    if let Some(path) = &args.kubeconfig {
        std::fs::copy(cp.kubeconfig_path(), path)
            .with_context(|| format!("copy the kubeconfig to {}", path.display()))?;
    }
    if let Some(crds) = &args.crds {
        let applied = apply_crds(&cp.client()?, crds).await?;
        eprintln!("applied {} CRD(s) from {}", applied.len(), crds.display());
    }
    println!("export KUBECONFIG={}", cp.kubeconfig_path().display());
    eprintln!(
        "control plane at {} (logs in {}); Ctrl-C to stop",
        cp.server_url(),
        cp.dir().display()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    if args.keep {
        cp.mark_failed();
    }
    drop(cp);
    eprintln!("control plane stopped");
    Ok(())
}
