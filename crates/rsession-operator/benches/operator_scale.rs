//! Operator at scale: N RSessions (default 1,000) applied at once against a real kube-apiserver
//! (rsession-testenv: etcd, kube-apiserver, kube-controller-manager; no kubelet, so pods stay
//! Pending). Measures the time until every RSession has all its children and a current
//! `status.observedGeneration`, and the operator's peak RSS (`VmHWM` of the operator process,
//! run as the release `rsession-operator` binary, from `/proc/<pid>/status`).
//!
//! ```text
//! cargo bench -p rsession-operator --bench operator_scale [-- --sessions 1000]
//! ```
//!
//! With `--pool-replicas N` (default 50) an RSessionPool of N is applied with the sessions, and
//! "settled" also waits for its N pods, each with its credentials Secret, and its harness
//! ConfigMap.
//!
//! Not a test: it prints a report (and one JSON line) for docs/benchmarks.md. The baseline in
//! the same run is the time the apiserver takes to accept the N RSessions themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use rsession_api::RSession;
use rsession_api::well_known as wk;
use rsession_testenv::{ControlPlane, Options, PodSecurity, apply_crds, workspace_root};
use serde::de::DeserializeOwned;

/// 1,000 RSessions applied at once against the real apiserver.
#[derive(Debug, Parser)]
struct Args {
    /// Number of RSessions.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Concurrent apply requests used to submit them.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Every this many sessions has a Persistent workspace (a PVC as sixth child); 0 for none.
    #[arg(long, default_value_t = 4)]
    persistent_every: usize,
    /// Replicas of an RSessionPool applied with the sessions (0: no pool).
    #[arg(long, default_value_t = 50)]
    pool_replicas: usize,
    /// Extra argument for the operator binary (repeatable), for example
    /// `--operator-arg=--config --operator-arg=operator.yaml`.
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn rsession(name: &str, persistent: bool) -> serde_json::Value {
    let workspace = if persistent {
        serde_json::json!({"kind": "Persistent", "size": "1Gi"})
    } else {
        serde_json::json!({"kind": "Ephemeral"})
    };
    serde_json::json!({
        "apiVersion": "rsession.dev/v1alpha1",
        "kind": "RSession",
        "metadata": {"name": name},
        "spec": {"workspace": workspace, "lifecycle": {"idleTimeout": "1h"}},
    })
}

/// A metadata reflector over one child kind in `ns`, limited to the operator's objects.
fn child_store<K>(client: &Client, ns: &str) -> Store<PartialObjectMeta<K>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let config =
        watcher::Config::default().labels(&format!("{}={}", wk::LABEL_MANAGED_BY, wk::MANAGER));
    let stream = reflector::reflector(
        writer,
        watcher(
            Api::<PartialObjectMeta<K>>::namespaced(client.clone(), ns),
            config,
        ),
    )
    .default_backoff()
    .for_each(|_| futures::future::ready(()));
    tokio::spawn(stream);
    reader
}

fn session_label<K: Resource>(o: &K) -> Option<String> {
    o.labels().get(wk::LABEL_SESSION).cloned()
}

/// Reads the `rsession.dev/session` label of every cached child of one kind.
type SessionLabels = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// Children per session, from the reflectors.
struct Observer {
    rsessions: Store<RSession>,
    children: Vec<(&'static str, SessionLabels)>,
}

impl Observer {
    fn new(client: &Client, ns: &str) -> Observer {
        let (rsessions, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(
                Api::<RSession>::namespaced(client.clone(), ns),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .for_each(|_| futures::future::ready(()));
        tokio::spawn(stream);
        macro_rules! kind {
            ($k:ty, $name:literal) => {{
                let store = child_store::<$k>(client, ns);
                let f: SessionLabels = Box::new(move || {
                    store
                        .state()
                        .iter()
                        .filter_map(|o| session_label(&**o))
                        .collect()
                });
                ($name, f)
            }};
        }
        let children = vec![
            kind!(Secret, "Secret"),
            kind!(Pod, "Pod"),
            kind!(Service, "Service"),
            kind!(NetworkPolicy, "NetworkPolicy"),
            kind!(PersistentVolumeClaim, "PersistentVolumeClaim"),
        ];
        Observer {
            rsessions,
            children,
        }
    }

    /// (settled sessions, total sessions, children by kind).
    fn progress(
        &self,
        expected: &BTreeMap<String, bool>,
    ) -> (usize, usize, BTreeMap<&'static str, usize>) {
        let mut by_session: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for (kind, list) in &self.children {
            let labels = list();
            counts.insert(*kind, labels.len());
            for session in labels {
                by_session.entry(session).or_default().insert(kind);
            }
        }
        let mut settled = 0;
        for rs in self.rsessions.state() {
            let name = rs.name_any();
            let Some(&persistent) = expected.get(&name) else {
                continue;
            };
            let current = rs.status.as_ref().and_then(|s| s.observed_generation)
                == rs.metadata.generation
                && rs.metadata.generation.is_some();
            let kinds = by_session.get(&name).map_or(0, BTreeSet::len);
            if current && kinds == if persistent { 5 } else { 4 } {
                settled += 1;
            }
        }
        (settled, expected.len(), counts)
    }
}

/// Whether the pool has `replicas` pods, each with its Secret (children of pool pods carry the
/// pool label too), and its harness ConfigMap. Only asked once the sessions settled, so it adds few requests.
async fn pool_settled(
    client: &Client,
    ns: &str,
    selector: &str,
    replicas: usize,
) -> anyhow::Result<bool> {
    if replicas == 0 {
        return Ok(true);
    }
    let lp = kube::api::ListParams::default().labels(selector);
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list_metadata(&lp)
        .await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), ns)
        .list_metadata(&lp)
        .await?;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list_metadata(&lp)
        .await?;
    Ok([pods.items.len(), secrets.items.len()] == [replicas; 2] && config_maps.items.len() == 1)
}

fn vm_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system, all threads) of process `pid` in seconds, from `/proc/<pid>/stat`
/// fields 14 and 15 (clock ticks of `USER_HZ`, 100 on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The 1-minute load average from `/proc/loadavg`, as printed there.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(args.sessions > 0, "--sessions must be positive");
    let operator_bin = PathBuf::from(env!("CARGO_BIN_EXE_rsession-operator"));

    eprintln!("[bench] starting the control plane");
    let started = Instant::now();
    let cp = ControlPlane::start(Options {
        // The audit log would add a write per request to what is measured.
        audit: false,
        ..Options::default()
    })
    .await?;
    eprintln!(
        "[bench] control plane ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let client = cp.client()?;
    apply_crds(&client, &workspace_root().join("crds")).await?;
    let ns = cp
        .create_namespace(&client, "bench", PodSecurity::Restricted)
        .await?;

    let log_path = cp.dir().join("rsession-operator.log");
    let log = std::fs::File::create(&log_path)?;
    let mut operator = tokio::process::Command::new(&operator_bin)
        .args(["--http-addr", "off", "--namespace", &ns])
        .args(&args.operator_args)
        .env("KUBECONFIG", cp.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", operator_bin.display()))?;
    let pid = operator.id().context("operator pid")?;
    let load_before = load_average();

    let observer = Observer::new(&client, &ns);
    let rsessions: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<RSession>(&()));
    let apply = PatchParams::apply("operator-scale-bench");

    // Warm-up: one session settled proves the operator is up and watching.
    let mut expected = BTreeMap::from([("warmup".to_owned(), false)]);
    rsessions
        .patch("warmup", &apply, &Patch::Apply(rsession("warmup", false)))
        .await?;
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    while observer.progress(&expected).0 < 1 {
        if let Some(status) = operator.try_wait()? {
            bail!("operator exited ({status}); log: {}", log_path.display());
        }
        ensure!(
            Instant::now() < warm_deadline,
            "warm-up session not settled in 60 s; log: {}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle_kib = vm_field(pid, "VmRSS:").unwrap_or(0);
    let mut processes = cp.pids();
    processes.push(("rsession-operator", pid));
    let cpu_before: Vec<f64> = processes.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    eprintln!(
        "[bench] operator ready (RSS {} MiB); applying {} RSessions",
        rss_idle_kib / 1024,
        args.sessions
    );

    let names: Vec<(String, bool)> = (0..args.sessions)
        .map(|i| {
            (
                format!("s{i:05}"),
                args.persistent_every > 0 && i % args.persistent_every == 0,
            )
        })
        .collect();
    expected = names.iter().cloned().collect();
    let t0 = Instant::now();
    stream::iter(names.iter().map(|(name, persistent)| {
        let rsessions = rsessions.clone();
        let apply = apply.clone();
        async move {
            rsessions
                .patch(name, &apply, &Patch::Apply(rsession(name, *persistent)))
                .await
        }
    }))
    .buffer_unordered(args.concurrency)
    .try_collect::<Vec<_>>()
    .await
    .context("apply RSessions")?;
    if args.pool_replicas > 0 {
        let pools: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &ApiResource::erase::<rsession_api::RSessionPool>(&()),
        );
        // No kubelet: pool pods never turn Ready, so no start cap (spec.maxStarting).
        let pool = serde_json::json!({
            "apiVersion": "rsession.dev/v1alpha1", "kind": "RSessionPool",
            "metadata": {"name": "bench"}, "spec": {"replicas": args.pool_replicas, "maxStarting": 200},
        });
        pools.patch("bench", &apply, &Patch::Apply(pool)).await?;
    }
    let applied = t0.elapsed();
    eprintln!(
        "[bench] {} RSessions accepted by the apiserver in {:.2} s",
        args.sessions,
        applied.as_secs_f64()
    );

    let deadline = t0 + Duration::from_secs(args.timeout_secs);
    // Open file descriptors of the operator (mostly its TCP connections to the apiserver).
    let open_fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    let mut peak_fds = open_fds();
    let mut last_report = Instant::now();
    let pool_selector = format!("{}=bench", wk::LABEL_POOL);
    let (settled_at, counts) = loop {
        let (settled, total, counts) = observer.progress(&expected);
        peak_fds = peak_fds.max(open_fds());
        if settled == total
            && pool_settled(&client, &ns, &pool_selector, args.pool_replicas).await?
        {
            break (t0.elapsed(), counts);
        }
        if let Some(status) = operator.try_wait()? {
            bail!("operator exited ({status}); log: {}", log_path.display());
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "[bench] {:5.1} s: {settled}/{total} settled, children {counts:?}",
                t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        ensure!(
            Instant::now() < deadline,
            "only {settled}/{total} settled after {} s; log: {}",
            args.timeout_secs,
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let peak_kib = vm_field(pid, "VmHWM:").context("VmHWM of the operator")?;
    let cpu: BTreeMap<&str, f64> = processes
        .iter()
        .zip(&cpu_before)
        .map(|((name, p), before)| (*name, cpu_seconds(*p) - before))
        .collect();
    let rss_kib = vm_field(pid, "VmRSS:").unwrap_or(0);
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    // The control plane's folder goes with it; keep the operator's log for a look afterwards.
    let kept_log = std::env::temp_dir().join("rsession-operator-scale.log");
    std::fs::write(&kept_log, &log_text)?;
    let failed_reconciles = log_text
        .lines()
        .filter(|l| l.contains("reconcile failed"))
        .count();
    operator.start_kill()?;
    let _ = operator.wait().await;

    let load_after = load_average();
    let persistent = names.iter().filter(|(_, p)| *p).count();
    let children: usize = counts.values().sum();
    let settle = settled_at.as_secs_f64();
    println!(
        "Operator at scale: {} RSessions ({persistent} Persistent), {children} children; a pool of {}",
        args.sessions, args.pool_replicas
    );
    println!(
        "  apiserver accepted the RSessions (baseline): {:8.2} s",
        applied.as_secs_f64()
    );
    println!(
        "  all settled (children + observedGeneration):  {settle:8.2} s  ({:.1}x baseline, {:.0} sessions/s)",
        settle / applied.as_secs_f64(),
        args.sessions as f64 / settle
    );
    println!(
        "  operator peak RSS (VmHWM):                    {:8.1} MiB (idle {:.1} MiB, at end {:.1} MiB)",
        peak_kib as f64 / 1024.0,
        rss_idle_kib as f64 / 1024.0,
        rss_kib as f64 / 1024.0
    );
    println!(
        "  reconcile failures logged (retried):          {failed_reconciles:8}  (log: {})",
        kept_log.display()
    );
    let cpu_text: Vec<String> = cpu.iter().map(|(n, s)| format!("{n} {s:.1}")).collect();
    println!("  operator open file descriptors, peak:         {peak_fds:8}");
    println!(
        "  CPU seconds from apply to settled:            {}",
        cpu_text.join(", ")
    );
    println!(
        "  machine load average (1 min) before/after:    {load_before} / {load_after} on {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "  targets: < 30 s {}, < 100 MB {}",
        if settle < 30.0 { "met" } else { "MISSED" },
        if (peak_kib as f64) * 1024.0 < 100e6 {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "{}",
        serde_json::json!({
            "sessions": args.sessions, "persistent": persistent, "children": children,
            "pool_replicas": args.pool_replicas,
            "apply_seconds": applied.as_secs_f64(), "settle_seconds": settle,
            "peak_rss_bytes": peak_kib * 1024, "failed_reconciles": failed_reconciles,
            "children_by_kind": counts,
            "load_before": load_before, "load_after": load_after, "cpu_seconds": cpu, "peak_fds": peak_fds,
        })
    );
    Ok(())
}
