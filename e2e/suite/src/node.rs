//! This machine as the node (the suite runs on it, as root): its processes (`/proc`), the pods'
//! cgroups (`/sys/fs/cgroup`, cgroup v1 with the cgroupfs driver), the local cluster's
//! components (`RSESSION_E2E_COMPONENT_CTL`), and polls of what cannot be watched.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::Api;

use crate::{env, wait_for};

/// Polls `f` every `every` until it returns `Some`, for at most `secs` seconds (and so a
/// bounded number of attempts). For state that has no watch: `/proc`, cgroup files.
pub async fn poll_until<T, F, Fut>(what: &str, secs: u64, every: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let attempts = secs * 1000 / (every.as_millis().max(1) as u64) + 2;
    for _ in 0..attempts {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() + every > deadline {
            break;
        }
        tokio::time::sleep(every).await;
    }
    bail!("{what}: not within {secs} s")
}

/// A process on this machine.
#[derive(Debug, Clone)]
pub struct Process {
    /// Process id (in this machine's PID namespace).
    pub pid: u32,
    /// Its command line.
    pub argv: Vec<String>,
}

/// Every process whose command line can be read (kernel threads have none).
pub fn processes() -> Vec<Process> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (!argv.is_empty()).then_some(Process { pid, argv })
    })
    .collect()
}

/// Processes whose command line, joined by spaces, contains `needle`.
pub fn processes_matching(needle: &str) -> Vec<Process> {
    processes()
        .into_iter()
        .filter(|p| p.argv.join(" ").contains(needle))
        .collect()
}

/// Whether process `pid` runs in a cgroup of pod `pod_uid` (`/proc/<pid>/cgroup` names
/// `pod<uid>`; the systemd driver writes the uid with underscores).
pub fn in_pod(pid: u32, pod_uid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| {
        c.contains(&format!("pod{pod_uid}"))
            || c.contains(&format!("pod{}", pod_uid.replace('-', "_")))
    })
}

/// The processes of pod `pod_uid` whose executable (first argument) ends with `name`.
pub fn pod_processes(pod_uid: &str, name: &str) -> Vec<Process> {
    processes()
        .into_iter()
        .filter(|p| p.argv[0].ends_with(name) && in_pod(p.pid, pod_uid))
        .collect()
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`: peak resident set; `VmRSS`: current).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The cgroup v1 folder of pod `pod_uid` under `controller` (`pids`, `memory`, ...): the
/// kubelet's cgroupfs layout `kubepods[/burstable|/besteffort]/pod<uid>`.
pub fn pod_cgroup_dir(controller: &str, pod_uid: &str) -> Option<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join("kubepods");
    ["", "burstable", "besteffort"]
        .iter()
        .map(|qos| root.join(qos).join(format!("pod{pod_uid}")))
        .find(|d| d.is_dir())
}

/// A cgroup file's content, trimmed.
pub fn cgroup_file(dir: &std::path::Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("read {}", path.display()))?
        .trim()
        .to_owned())
}

/// Runs `$RSESSION_E2E_COMPONENT_CTL <action> <component>` (stop, start, restart), which
/// returns when the component is stopped or healthy; bounded by 300 s.
pub async fn component(action: &str, name: &str) -> Result<()> {
    let ctl = env("RSESSION_E2E_COMPONENT_CTL")?;
    let run = tokio::process::Command::new(&ctl)
        .args([action, name])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .with_context(|| format!("{ctl} {action} {name}: not done within 300 s"))?
        .with_context(|| format!("run {ctl}"))?;
    if !out.status.success() {
        bail!(
            "{ctl} {action} {name}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Starts component `name` when dropped, unless [`ComponentGuard::disarm`]ed: a failing test
/// never leaves the cluster with a component stopped.
pub struct ComponentGuard {
    name: String,
    armed: bool,
}

impl ComponentGuard {
    /// A guard for `name`.
    pub fn new(name: &str) -> ComponentGuard {
        ComponentGuard {
            name: name.to_owned(),
            armed: true,
        }
    }

    /// The component is running again; nothing to do on drop.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ComponentGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(ctl) = env("RSESSION_E2E_COMPONENT_CTL") else {
            return;
        };
        eprintln!("guard: {ctl} start {}", self.name);
        match std::process::Command::new(&ctl)
            .args(["start", &self.name])
            .status()
        {
            Ok(s) if s.success() => {}
            other => eprintln!("guard: {ctl} start {} failed: {other:?}", self.name),
        }
    }
}

/// The one node of the cluster (the local cluster has one) and whether it is Ready.
pub async fn the_node(client: &Client) -> Result<(String, bool)> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&Default::default()).await?;
    let node = list.items.first().context("no node")?;
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Ok((kube::ResourceExt::name_any(node), ready))
}

/// The node's InternalIP.
pub async fn node_ip(client: &Client) -> Result<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&Default::default()).await?;
    list.items
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .context("no node InternalIP")
}

/// Waits up to `secs` seconds for the kubelet to renew its node Lease after `since`: the
/// kubelet is alive and reaches the apiserver.
pub async fn wait_lease_renewed(
    client: &Client,
    node: &str,
    since: jiff::Timestamp,
    secs: u64,
) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    wait_for(
        &leases,
        node,
        secs,
        "a node Lease renewal",
        move |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref()?.renew_time.as_ref())
                .is_some_and(|t| t.0 > since)
        },
    )
    .await?;
    Ok(())
}

/// Process ids of the executables named `name` on this machine (e.g. `kube-apiserver`): a
/// changed set shows a component really restarted.
pub fn pids_of(name: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = processes()
        .into_iter()
        .filter(|p| p.argv[0].rsplit('/').next() == Some(name))
        .map(|p| p.pid)
        .collect();
    pids.sort_unstable();
    pids
}
