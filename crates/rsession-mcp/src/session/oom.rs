//! Telling an out-of-memory kill from other ways R can go away.
//!
//! When a session goes over its memory limit, the kernel's OOM killer kills
//! the forked R of its connection, and all the server sees is the connection
//! ending. The cgroup counts those kills (`oom_kill N` in cgroup v1
//! `memory.oom_control`, cgroup v2 `memory.events`): the harness reads the
//! counter when a connection opens (`.rsession$memory_state()`, part of
//! `init`), and after a lost connection a short-lived fresh connection reads it
//! again; growth means the OOM killer struck.
//!
//! The counter is per cgroup, not per process. In a session pod (Kubernetes
//! backend) the cgroup holds only that session's Rserve, so growth is this
//! session's R. Sessions sharing one Rserve (direct backend) share the cgroup:
//! there an OOM kill of another session's R between this connection's open and
//! its loss is attributed to this one too.

use rserve::Sexp;
use serde_json::{Value, json};

/// `details.reason` of a `session_lost` caused by the OOM killer.
pub const REASON_OOM_KILLED: &str = "oom_killed";

/// The memory state of the cgroup an R process runs in, as
/// `.rsession$memory_state()` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryState {
    /// The cgroup's OOM-kill counter; `None` when R could not read it (NA).
    pub oom_kills: Option<u64>,
    /// The cgroup's memory limit in bytes; `None` when unlimited or unreadable.
    pub limit_bytes: Option<u64>,
}

/// A non-negative whole count from an R double (or integer); `None` for NA,
/// NaN, negative or fractional values.
fn count(s: Option<&Sexp>) -> Option<u64> {
    let x = s?.as_f64()?;
    (x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < u64::MAX as f64).then_some(x as u64)
}

impl MemoryState {
    /// Decode `list(cgroup, oom_kills, limit_bytes)`; a missing or malformed
    /// field reads as unknown, never as an error (the state is advisory).
    pub fn from_sexp(s: &Sexp) -> MemoryState {
        MemoryState {
            oom_kills: count(s.get("oom_kills")),
            limit_bytes: count(s.get("limit_bytes")),
        }
    }

    /// Whether the OOM-kill counter grew from `before` (read when the
    /// connection opened) to `self` (read after it was lost). Unknown on
    /// either side is `false`: without both readings nothing is claimed.
    pub fn oom_killed_since(&self, before: &MemoryState) -> bool {
        matches!((before.oom_kills, self.oom_kills), (Some(b), Some(a)) if a > b)
    }
}

/// Bytes as people read them: `512 MiB`, `1.5 GiB`, `800 B`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// An R process ended for using too much memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomKill {
    /// The session's memory limit in bytes, when known.
    pub limit_bytes: Option<u64>,
    /// Who killed it.
    pub killed_by: KilledBy,
}

/// Who ended an R process for its memory use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KilledBy {
    /// The kernel's OOM killer, at the cgroup's limit (a pod's
    /// `resources.limits.memory`).
    OomKiller,
    /// The direct backend sandbox's memory guard, at `--memory-limit`
    /// ([`crate::sandbox::memory_guard`]).
    MemoryGuard {
        /// Resident memory of the process when killed, in bytes.
        rss_bytes: u64,
    },
}

impl OomKill {
    /// Why R went away, for the reset notice of the next call: `killed by the
    /// out-of-memory killer because the session exceeded its memory limit (2 GiB)`.
    pub fn reason(&self) -> String {
        let limit = self
            .limit_bytes
            .map(|b| format!(" ({})", format_bytes(b)))
            .unwrap_or_default();
        match self.killed_by {
            KilledBy::OomKiller => format!(
                "killed by the out-of-memory killer because the session exceeded its memory limit{limit}"
            ),
            KilledBy::MemoryGuard { rss_bytes } => format!(
                "killed by the sandbox's memory guard because it used {} of memory, over the session's memory limit{limit} (--memory-limit)",
                format_bytes(rss_bytes)
            ),
        }
    }

    /// The `session_lost` message.
    pub fn message(&self) -> String {
        format!(
            "the R process of this session was {}. Use less memory (read fewer rows or columns at a time, rm() large objects you no longer need) or use a session with a larger memory limit. Retry: the next call starts a fresh R in the same workspace (R state lost, files kept).",
            self.reason()
        )
    }

    /// The `session_lost` details: `reason = "oom_killed"`,
    /// `memory_limit_bytes` when known, the connection error as
    /// `connection_error`, and `state_kept = false`.
    pub fn details(&self, connection_error: &str) -> Value {
        let mut d = json!({
            "state_kept": false,
            "reason": REASON_OOM_KILLED,
            "connection_error": connection_error,
        });
        if let Some(map) = d.as_object_mut() {
            if let Some(limit) = self.limit_bytes {
                map.insert("memory_limit_bytes".into(), json!(limit));
            }
            let by = match self.killed_by {
                KilledBy::OomKiller => "oom_killer",
                KilledBy::MemoryGuard { rss_bytes } => {
                    map.insert("rss_bytes".into(), json!(rss_bytes));
                    "memory_guard"
                }
            };
            map.insert("killed_by".into(), json!(by));
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rserve::Value as RValue;

    fn state(oom_kills: RValue, limit: RValue) -> Sexp {
        Sexp::named_list([
            ("cgroup", Sexp::string("v1")),
            ("oom_kills", Sexp::from(oom_kills)),
            ("limit_bytes", Sexp::from(limit)),
        ])
    }

    #[test]
    fn decodes_numbers_and_na() {
        let s = state(
            RValue::Double(vec![3.0]),
            RValue::Double(vec![536_870_912.0]),
        );
        assert_eq!(
            MemoryState::from_sexp(&s),
            MemoryState {
                oom_kills: Some(3),
                limit_bytes: Some(512 << 20)
            }
        );
        let na = state(
            RValue::Double(vec![rserve::na_real()]),
            RValue::Double(vec![rserve::na_real()]),
        );
        assert_eq!(MemoryState::from_sexp(&na), MemoryState::default());
        let int = state(RValue::Int(vec![2]), RValue::Double(vec![-1.0]));
        assert_eq!(
            MemoryState::from_sexp(&int),
            MemoryState {
                oom_kills: Some(2),
                limit_bytes: None
            }
        );
        assert_eq!(MemoryState::from_sexp(&Sexp::NULL), MemoryState::default());
        assert_eq!(
            MemoryState::from_sexp(&state(RValue::Double(vec![0.5]), RValue::Null)),
            MemoryState::default()
        );
    }

    #[test]
    fn only_a_grown_counter_is_an_oom_kill() {
        let at = |n: Option<u64>| MemoryState {
            oom_kills: n,
            limit_bytes: None,
        };
        assert!(at(Some(1)).oom_killed_since(&at(Some(0))));
        assert!(at(Some(7)).oom_killed_since(&at(Some(5))));
        assert!(!at(Some(0)).oom_killed_since(&at(Some(0))));
        // a new cgroup (container restarted) starts from zero again
        assert!(!at(Some(0)).oom_killed_since(&at(Some(4))));
        assert!(!at(None).oom_killed_since(&at(Some(0))));
        assert!(!at(Some(1)).oom_killed_since(&at(None)));
        assert!(!at(None).oom_killed_since(&at(None)));
    }

    #[test]
    fn bytes_read_as_binary_units() {
        assert_eq!(format_bytes(800), "800 B");
        assert_eq!(format_bytes(512 << 20), "512 MiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes(2 << 30), "2 GiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn the_message_names_the_oom_killer_and_the_limit() {
        let kill = OomKill {
            limit_bytes: Some(1 << 30),
            killed_by: KilledBy::OomKiller,
        };
        let m = kill.message();
        assert!(
            m.contains("killed by the out-of-memory killer")
                && m.contains("exceeded its memory limit (1 GiB)"),
            "{m}"
        );
        let unknown = OomKill {
            limit_bytes: None,
            killed_by: KilledBy::OomKiller,
        };
        assert!(unknown.message().contains("exceeded its memory limit."));
        let d = kill.details("connection closed");
        assert_eq!(d["reason"], "oom_killed");
        assert_eq!(d["memory_limit_bytes"], 1u64 << 30);
        assert_eq!(d["connection_error"], "connection closed");
        assert_eq!(d["state_kept"], false);
        assert!(unknown.details("x").get("memory_limit_bytes").is_none());
    }
}
