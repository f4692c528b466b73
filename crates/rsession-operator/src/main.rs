//! `rsession-operator`: the RSession controller binary.
//!
//! Configuration comes from `--config <file.yaml>` (see `OperatorConfig`), then the flags
//! below override single keys. The Kubernetes connection is the in-cluster service account or
//! `KUBECONFIG` / `~/.kube/config`.
//!
//! ```text
//! rsession-operator --config /etc/rsession/operator.yaml --leader-elect --http-addr 0.0.0.0:8080
//! rsession-operator --default-image localhost/r-sandbox:dev --frontend-selector app.kubernetes.io/name=rsession-mcp
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use rsession_operator::{OperatorConfig, Runtime, default_identity, http, run};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Reconciles RSession resources into locked-down Rserve session pods.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// YAML configuration file (camelCase keys of OperatorConfig); flags override its keys.
    #[arg(long, env = "RSESSION_OPERATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Image for sessions that do not set spec.image.
    #[arg(long)]
    default_image: Option<String>,
    /// Label of the MCP frontend's pods allowed to reach port 6311, as key=value; repeatable;
    /// replaces the configured selector.
    #[arg(long = "frontend-selector", value_parser = parse_label)]
    frontend_selector: Vec<(String, String)>,
    /// Namespace of the MCP frontend's pods (default: each session's own namespace).
    #[arg(long)]
    frontend_namespace: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Enable leader election with a Lease (needed when running more than one replica).
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: POD_NAMESPACE, else "default").
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of this replica in the Lease and in Events (default: POD_NAME, else HOSTNAME).
    #[arg(long)]
    identity: Option<String>,
    /// Address for /metrics, /healthz and /readyz; "off" disables the server.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_addr: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

fn config_from(args: &Args) -> anyhow::Result<OperatorConfig> {
    let mut config = match &args.config {
        Some(path) => OperatorConfig::from_file(path)?,
        None => OperatorConfig::default(),
    };
    if let Some(image) = &args.default_image {
        config.default_image.clone_from(image);
    }
    if !args.frontend_selector.is_empty() {
        config.frontend_pod_selector = args.frontend_selector.iter().cloned().collect();
    }
    if args.frontend_namespace.is_some() {
        config
            .frontend_namespace
            .clone_from(&args.frontend_namespace);
    }
    if args.namespace.is_some() {
        config.watch_namespace.clone_from(&args.namespace);
    }
    if args.leader_elect {
        config.leader_election.enabled = true;
    }
    if args.lease_namespace.is_some() {
        config
            .leader_election
            .lease_namespace
            .clone_from(&args.lease_namespace);
    }
    config.validate()?;
    Ok(config)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_format);
    let config = config_from(&args)?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster or KUBECONFIG)")?;

    let shutdown = CancellationToken::new();
    let runtime = Arc::new(Runtime::default());
    let server = if args.http_addr == "off" {
        None
    } else {
        let addr: SocketAddr = args
            .http_addr
            .parse()
            .with_context(|| format!("--http-addr {:?} is not host:port", args.http_addr))?;
        Some(tokio::spawn(http::serve(
            addr,
            runtime.clone(),
            shutdown.clone(),
        )))
    };
    let signal = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            shutdown.cancel();
        })
    };

    let result = run(client, config, identity, runtime, shutdown.clone()).await;
    shutdown.cancel();
    signal.abort();
    if let Some(server) = server {
        server
            .await
            .context("HTTP server task")?
            .context("HTTP server")?;
    }
    result.map_err(Into::into)
}
