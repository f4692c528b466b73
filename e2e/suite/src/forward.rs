//! A loopback TCP forwarder to the MCP frontend's Service.
//!
//! The frontend checks the HTTP `Host` header against DNS rebinding (its Service names,
//! `localhost`, `127.0.0.1`), and this machine cannot resolve Service names. Connecting to
//! `127.0.0.1:<port>` here and forwarding each connection to the Service's ClusterIP gives an
//! accepted `Host` header, and unlike `kubectl port-forward` (bound to one pod) it reaches the
//! frontend again after its pod is replaced.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::env;

static URL: OnceLock<Result<String, String>> = OnceLock::new();

/// The frontend's streamable-HTTP URL: `RSESSION_E2E_MCP_URL` when set, else
/// `http://127.0.0.1:<port>/mcp` of a forwarder to `RSESSION_E2E_MCP_ADDR` (started on first
/// use, on a thread of its own so it outlives each test's runtime).
pub fn mcp_url() -> Result<String> {
    if let Ok(url) = std::env::var("RSESSION_E2E_MCP_URL") {
        return Ok(url);
    }
    let target = env("RSESSION_E2E_MCP_ADDR")?;
    URL.get_or_init(|| start(target).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("MCP forwarder: {e}"))
}

fn start(target: String) -> Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("mcp-forwarder".into())
        .spawn(move || runtime.block_on(serve(listener, target)))?;
    Ok(format!("http://127.0.0.1:{port}/mcp"))
}

async fn serve(listener: std::net::TcpListener, target: String) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("MCP forwarder: {e}");
            return;
        }
    };
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            // A connection that cannot reach the frontend is closed; the client sees the error.
            let connect = tokio::net::TcpStream::connect(&target);
            if let Ok(Ok(mut outbound)) =
                tokio::time::timeout(Duration::from_secs(10), connect).await
            {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
