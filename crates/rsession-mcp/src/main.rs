//! `rsession-mcp` binary: parse flags, start the backend, serve MCP over
//! stdio or HTTP, shut down cleanly on EOF (stdio), Ctrl-C or SIGTERM.

use anyhow::Context;
use axum::serve::Listener;
use clap::Parser;
use rmcp::ServiceExt;
use rsession_mcp::app::App;
use rsession_mcp::audit::{self, AuditLog};
use rsession_mcp::config::{Args, LogFormat, Transport};
use tokio_util::sync::CancellationToken;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Logs on stderr (filtered by `RSESSION_LOG`), and the audit trail
/// (target `audit`, JSON lines, see `rsession_mcp::audit`) on its own stream.
fn init_logging(format: LogFormat, audit: &AuditLog) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("RSESSION_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{}=off", audit::TARGET).parse()?);
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    let only_audit = Targets::new().with_target(audit::TARGET, Level::INFO);
    let trail = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_ansi(false);
    let trail: Option<Box<dyn Layer<Registry> + Send + Sync>> = match audit {
        AuditLog::Off => None,
        AuditLog::Stderr => Some(
            trail
                .with_writer(std::io::stderr)
                .with_filter(only_audit)
                .boxed(),
        ),
        AuditLog::Stdout => Some(
            trail
                .with_writer(std::io::stdout)
                .with_filter(only_audit)
                .boxed(),
        ),
        AuditLog::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the audit log {}", path.display()))?;
            Some(
                trail
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(only_audit)
                    .boxed(),
            )
        }
    };
    let mut layers = vec![logs];
    layers.extend(trail);
    tracing_subscriber::registry().with(layers).init();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let audit_log = args.audit_log().map_err(anyhow::Error::msg)?;
    init_logging(args.log_format, &audit_log)?;
    audit::configure(args.audit_code);
    let app = App::start(&args).await.context("starting rsession-mcp")?;
    let result = match args.transport {
        Transport::Stdio => serve_stdio(&app).await,
        Transport::Http => serve_http(&app, &args).await,
    };
    app.shutdown().await;
    result
}

async fn serve_stdio(app: &App) -> anyhow::Result<()> {
    tracing::info!("serving MCP over stdio");
    let service = app
        .server(&app.local_owner)
        .serve(rsession_mcp::stdio::streams())
        .await
        .context("MCP initialisation over stdio")?;
    let cancel = service.cancellation_token();
    tokio::select! {
        r = service.waiting() => { r.context("MCP stdio service")?; }
        _ = shutdown_signal() => { cancel.cancel(); }
    }
    Ok(())
}

async fn serve_http(app: &App, args: &Args) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let router =
        rsession_mcp::http::router_for(app.server("local"), &args.allowed_hosts, cancel.clone());
    let router = match &app.auth {
        Some(auth) => rsession_mcp::auth::layer(router, auth.clone()),
        None => router,
    };
    let listener = rsession_mcp::http::listen(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving MCP over streamable HTTP at /mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            cancel.cancel();
        })
        .await
        .context("HTTP server")?;
    Ok(())
}
