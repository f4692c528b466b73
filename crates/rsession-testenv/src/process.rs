//! Control-plane processes: each runs in its own process group, logs to a file, and is killed
//! with its group. A watchdog and a pidfile make sure no process outlives the test binary.
//!
//! Teardown has three layers, so a panicking or killed test leaves nothing behind:
//! 1. [`Daemon::kill`] (called from `ControlPlane`'s `Drop`) kills the group and reaps it.
//! 2. A watchdog shell holds the read end of a pipe whose write end only this process holds;
//!    when this process exits for any reason (a `static` fixture is never dropped, a panic
//!    aborts, SIGKILL), the pipe reaches EOF and the watchdog kills every registered group and
//!    removes the temp folder (kept for a day when a test failed, see [`KEEP_MARKER`]).
//! 3. `pids` in the temp folder lists the owner pid and the groups; the next fixture start
//!    kills groups whose owner is gone ([`reap_strays`]), in case the watchdog was killed too.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// A file in the temp folder whose presence tells the watchdog to keep the folder (logs,
/// certificates, etcd data) for a post-mortem.
pub const KEEP_MARKER: &str = "keep";

const PIDFILE: &str = "pids";

/// One long-running binary of the control plane.
#[derive(Debug)]
pub(crate) struct Daemon {
    pub(crate) name: &'static str,
    pub(crate) log: PathBuf,
    child: Child,
}

impl Daemon {
    /// Starts `program args...` in a new process group, stdout and stderr appended to `log`.
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Result<Daemon> {
        let out = File::create(&log).map_err(Error::io(format!("create {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(Error::io(format!("dup {}", log.display())))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(Error::io(format!("spawn {}", program.display())))?;
        tracing::debug!(name, pid = child.id(), "started");
        Ok(Daemon { name, log, child })
    }

    /// Process id, which is also its process-group id.
    pub(crate) fn pgid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An [`Error::Exited`] for this daemon when it has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                name: self.name,
                status: status.to_string(),
                tail: tail(&self.log, 40),
                log: self.log.clone(),
            }),
        }
    }

    /// Sends SIGKILL to the whole process group and reaps the process.
    pub(crate) fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = killpg(pid(self.pgid()), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn pid(id: u32) -> Pid {
    Pid::from_raw(i32::try_from(id).unwrap_or(i32::MAX))
}

/// Kills registered process groups when this process exits (see the module docs).
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
    pidfile: PathBuf,
}

const WATCHDOG_SCRIPT: &str = r#"
trap '' INT HUP
dir="$1"
groups=()
while IFS= read -r group; do groups+=("$group"); done
for group in "${groups[@]}"; do kill -KILL -- "-$group" 2>/dev/null; done
for _ in $(seq 100); do
  alive=0
  # A leader that is gone or a zombie (orphans may never be reaped in a container) holds no files.
  for group in "${groups[@]}"; do
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$group/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ] && alive=1
  done
  [ "$alive" = 0 ] && break
  sleep 0.05
done
[ -e "$dir/keep" ] || rm -rf -- "$dir"
"#;

impl Watchdog {
    /// Starts the watchdog for the temp folder `dir` and writes the pidfile's owner line.
    pub(crate) fn spawn(dir: &Path) -> Result<Watchdog> {
        let pidfile = dir.join(PIDFILE);
        std::fs::write(&pidfile, format!("owner {}\n", std::process::id()))
            .map_err(Error::io("write pidfile"))?;
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("rsession-testenv-watchdog")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(Error::io("spawn the watchdog (bash)"))?;
        let pipe = child.stdin.take();
        Ok(Watchdog {
            child,
            pipe,
            pidfile,
        })
    }

    /// Registers a process group with the watchdog and in the pidfile.
    pub(crate) fn guard(&mut self, daemon: &Daemon) -> Result<()> {
        let line = format!("{}\n", daemon.pgid());
        if let Some(pipe) = self.pipe.as_mut() {
            pipe.write_all(line.as_bytes())
                .and_then(|()| pipe.flush())
                .map_err(Error::io("register with the watchdog"))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.pidfile)
            .map_err(Error::io("open pidfile"))?;
        writeln!(file, "group {} {}", daemon.pgid(), daemon.name)
            .map_err(Error::io("append pidfile"))
    }

    /// Closes the pipe, so the watchdog kills the groups and removes the folder, and waits.
    pub(crate) fn finish(&mut self) {
        drop(self.pipe.take());
        let _ = self.child.wait();
    }
}

/// Kills the process groups of fixtures under `base` whose owning process is gone, and removes
/// their folders unless they carry a [`KEEP_MARKER`] younger than a day. Groups are only killed when their leader's
/// command line still names the folder, so a recycled pid is never hit.
pub(crate) fn reap_strays(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(text) = std::fs::read_to_string(dir.join(PIDFILE)) else {
            continue;
        };
        let mut owner_alive = false;
        let mut groups = Vec::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match (
                words.next(),
                words.next().and_then(|w| w.parse::<u32>().ok()),
            ) {
                (Some("owner"), Some(owner)) => owner_alive = kill(pid(owner), None).is_ok(),
                (Some("group"), Some(group)) => groups.push(group),
                _ => {}
            }
        }
        if owner_alive {
            continue;
        }
        let needle = dir.to_string_lossy().into_owned();
        for group in groups {
            let cmdline = std::fs::read(format!("/proc/{group}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                tracing::warn!(group, dir = %dir.display(), "killing a stray control-plane process group");
                let _ = killpg(pid(group), Signal::SIGKILL);
            }
        }
        if !dir.join(KEEP_MARKER).exists() || kept_long_enough(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Folders kept for a post-mortem are removed by a later start once they are a day old.
fn kept_long_enough(dir: &Path) -> bool {
    const KEEP_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    std::fs::metadata(dir.join(KEEP_MARKER))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > KEEP_FOR)
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
