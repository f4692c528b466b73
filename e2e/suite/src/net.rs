//! Network probes: TCP connects made by R inside a session (through the frontend), the same
//! connects from this machine as a control, and a TCP listener on the node address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::Agent;

/// Seconds R waits for one TCP connect before it counts as blocked.
pub const CONNECT_TIMEOUT_SECS: u32 = 3;

/// A TCP destination to try.
#[derive(Debug, Clone)]
pub struct Target {
    /// What it is, e.g. `kube-apiserver (node address)`.
    pub name: String,
    /// IP address or DNS name.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Target {
    /// A target.
    pub fn new(name: impl Into<String>, host: impl Into<String>, port: u16) -> Target {
        Target {
            name: name.into(),
            host: host.into(),
            port,
        }
    }
}

/// How one connect from R went.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// The destination.
    pub target: Target,
    /// Whether R got a connection.
    pub open: bool,
    /// `open`, or the R condition message of the failure.
    pub outcome: String,
    /// How long the attempt took, in milliseconds.
    pub ms: f64,
}

/// `s` as a single-quoted R string literal.
pub fn r_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// R code that tries a TCP connect to each target (`socketConnection`, which does not fork,
/// with a [`CONNECT_TIMEOUT_SECS`] timeout inside `tryCatch`) and prints one line
/// `PROBE\t<index>\t<open | blocked: message>\t<milliseconds>` per target.
pub fn r_tcp_probe(targets: &[Target]) -> String {
    let hosts: Vec<String> = targets.iter().map(|t| r_str(&t.host)).collect();
    let ports: Vec<String> = targets.iter().map(|t| t.port.to_string()).collect();
    format!(
        "local({{
  probe <- function(h, p) {{
    t0 <- Sys.time()
    r <- tryCatch({{
      s <- socketConnection(h, p, open = 'r+b', blocking = TRUE, timeout = {CONNECT_TIMEOUT_SECS})
      close(s)
      'open'
    }}, warning = function(w) paste('blocked:', conditionMessage(w)),
        error = function(e) paste('blocked:', conditionMessage(e)))
    sprintf('%s\\t%.0f', gsub('[\\t\\n]', ' ', r), as.numeric(difftime(Sys.time(), t0, units = 'secs')) * 1000)
  }}
  hosts <- c({})
  ports <- c({})
  for (i in seq_along(hosts)) cat('PROBE\\t', i, '\\t', probe(hosts[i], ports[i]), '\\n', sep = '')
}})",
        hosts.join(", "),
        ports.join(", ")
    )
}

/// Runs [`r_tcp_probe`] in session `id` of `agent` and reads its lines back.
pub async fn probe_from_session(
    agent: &Agent,
    id: &str,
    targets: &[Target],
) -> Result<Vec<ProbeResult>> {
    let out = agent.eval(id, &r_tcp_probe(targets)).await?;
    let mut results = Vec::with_capacity(targets.len());
    for line in out.lines().filter(|l| l.starts_with("PROBE\t")) {
        let mut f = line.splitn(4, '\t').skip(1);
        let i: usize = f.next().context("index")?.parse()?;
        let outcome = f.next().context("outcome")?.to_owned();
        let ms: f64 = f.next().context("ms")?.trim().parse()?;
        let target = targets.get(i - 1).context("index out of range")?.clone();
        results.push(ProbeResult {
            target,
            open: outcome == "open",
            outcome,
            ms,
        });
    }
    ensure!(
        results.len() == targets.len(),
        "{} probe lines for {} targets in: {out}",
        results.len(),
        targets.len()
    );
    Ok(results)
}

/// Whether this machine (the node) gets a TCP connection to `host:port` within 3 s; `None`
/// when `host` is not an IP address (this machine cannot resolve cluster names).
pub async fn open_from_node(host: &str, port: u16) -> Option<bool> {
    let ip: std::net::IpAddr = host.parse().ok()?;
    let connect = tokio::net::TcpStream::connect(SocketAddr::new(ip, port));
    Some(matches!(
        tokio::time::timeout(Duration::from_secs(3), connect).await,
        Ok(Ok(_))
    ))
}

/// Prints the probe results as a table, with the node's own reachability as a control.
pub async fn print_probe_table(title: &str, results: &[ProbeResult]) {
    println!("{title}");
    println!("| target | address | from the session | ms | from the node (control) |");
    println!("|---|---|---|---|---|");
    for r in results {
        let control = match open_from_node(&r.target.host, r.target.port).await {
            Some(true) => "open",
            Some(false) => "not reachable (inconclusive)",
            None => "name, not tried",
        };
        println!(
            "| {} | {}:{} | {} | {:.0} | {control} |",
            r.target.name, r.target.host, r.target.port, r.outcome, r.ms
        );
    }
}

/// Greeting line [`Listener`] sends to every connection.
pub const GREETING: &str = "rsession-e2e-hello";

/// A TCP listener run by the test process: it sends [`GREETING`] and a newline to each
/// connection and counts them. Stopped when dropped.
pub struct Listener {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Listens on a free port of `ip` (for example the node address).
    pub async fn start(ip: &str) -> Result<Listener> {
        let listener = tokio::net::TcpListener::bind((ip.parse::<std::net::IpAddr>()?, 0))
            .await
            .with_context(|| format!("listen on {ip}"))?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = s.write_all(format!("{GREETING}\n").as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(Listener {
            addr,
            accepted,
            task,
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// R code that connects to `host:port`, reads one line and prints `GOT <line>`, or prints
/// `BLOCKED <message>`.
pub fn r_read_greeting(host: &str, port: u16) -> String {
    format!(
        "cat(tryCatch({{
  s <- socketConnection({}, {port}, open = 'r+b', blocking = TRUE, timeout = {CONNECT_TIMEOUT_SECS})
  l <- readLines(s, n = 1)
  close(s)
  paste('GOT', l)
}}, warning = function(w) paste('BLOCKED', conditionMessage(w)),
    error = function(e) paste('BLOCKED', conditionMessage(e))), '\\n')",
        r_str(host)
    )
}
