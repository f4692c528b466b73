//! The per-process memory limit of sandboxed sessions.
//!
//! An unprivileged server has no memory cgroup of its own to put a session in
//! (that needs root or a systemd delegation), so the guard does what the
//! kernel's OOM killer would: every [`PERIOD`] it walks the sandbox's process
//! tree (`/proc/<pid>/task/<pid>/children`, through the `procfs` crate) and
//! SIGKILLs any process whose resident set (`statm` resident pages) is over
//! the limit, recording the kill first so the lost connection is reported as
//! `session_lost` naming the limit rather than as a crash. A process can
//! overshoot by what it allocates and touches within one period.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::task::AbortOnDropHandle;

/// How often the guard looks.
pub const PERIOD: Duration = Duration::from_millis(100);

/// A process the guard killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardKill {
    /// Host PID of the killed process.
    pub pid: u32,
    /// Its resident set when killed, in bytes.
    pub rss_bytes: u64,
    /// The limit it was over, in bytes.
    pub limit_bytes: u64,
}

/// Watches one sandbox; stops when dropped.
#[derive(Debug)]
pub struct MemoryGuard {
    kills: Arc<Mutex<Option<GuardKill>>>,
    _task: AbortOnDropHandle<()>,
}

impl MemoryGuard {
    /// Watch every descendant of `root` (the sandbox's bubblewrap process)
    /// against `limit_bytes` of resident memory each.
    pub fn watch(root: u32, limit_bytes: u64) -> MemoryGuard {
        let kills = Arc::new(Mutex::new(None));
        let record = Arc::clone(&kills);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let page = procfs::page_size();
            loop {
                tick.tick().await;
                for (pid, rss_bytes) in over_limit(root, limit_bytes, page) {
                    let k = GuardKill {
                        pid,
                        rss_bytes,
                        limit_bytes,
                    };
                    *record.lock().unwrap_or_else(|p| p.into_inner()) = Some(k);
                    tracing::warn!(
                        pid,
                        rss_bytes,
                        limit_bytes,
                        "sandboxed R over its memory limit: killing it"
                    );
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        });
        MemoryGuard {
            kills,
            _task: AbortOnDropHandle::new(task),
        }
    }

    /// The last kill not yet taken, if any (each is reported once).
    pub fn take_kill(&self) -> Option<GuardKill> {
        self.kills.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Descendants of `root` (not `root` itself) with more than `limit` bytes
/// resident, as `(pid, rss_bytes)`. Processes that exit mid-walk are skipped.
fn over_limit(root: u32, limit: u64, page: u64) -> Vec<(u32, u64)> {
    let mut found = Vec::new();
    let mut stack = children(root);
    while let Some(pid) = stack.pop() {
        let Ok(p) = procfs::process::Process::new(pid as i32) else {
            continue;
        };
        if let Ok(statm) = p.statm() {
            let rss = statm.resident * page;
            if rss > limit {
                found.push((pid, rss));
            }
        }
        stack.extend(children(pid));
    }
    found
}

fn children(pid: u32) -> Vec<u32> {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.task_main_thread())
        .and_then(|t| t.children())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kills_a_child_over_the_limit_and_reports_it_once() {
        // A shell whose child (the `sleep`) is killed at a 1-byte limit.
        let mut sh = tokio::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let guard = MemoryGuard::watch(sh.id().unwrap(), 1);
        let status = tokio::time::timeout(Duration::from_secs(10), sh.wait())
            .await
            .expect("the shell ends once its child is killed")
            .unwrap();
        assert!(status.success(), "`wait` returns when the child dies");
        let k = guard.take_kill().expect("the kill is recorded");
        assert_eq!(k.limit_bytes, 1);
        assert!(k.rss_bytes > 1);
        assert_eq!(guard.take_kill(), None);
    }

    #[tokio::test]
    async fn leaves_processes_under_the_limit_alone() {
        let mut sh = tokio::process::Command::new("sh")
            .args(["-c", "sleep 0.5 & wait"])
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let guard = MemoryGuard::watch(sh.id().unwrap(), 1 << 40);
        assert!(sh.wait().await.unwrap().success());
        assert_eq!(guard.take_kill(), None);
    }
}
