//! `rsession-mcp` binary: parse flags, start the backend, serve MCP over
//! stdio or HTTP, shut down cleanly on EOF (stdio), Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use rmcp::ServiceExt;
use rsession_mcp::app::App;
use rsession_mcp::config::{Args, LogFormat, Transport};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RSESSION_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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
    init_logging(args.log_format);
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
        .serve(rmcp::transport::stdio())
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
    let listener = tokio::net::TcpListener::bind(args.listen)
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
