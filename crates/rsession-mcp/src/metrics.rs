//! Prometheus metrics (served at `/metrics` in the HTTP transport), in the
//! OpenMetrics text format.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabel {
    tool: String,
    outcome: String,
}

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    executions: Family<StatusLabel, Counter>,
    execution_seconds: Histogram,
    tool_calls: Family<ToolLabel, Counter>,
    sessions: Gauge,
    sessions_lost: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register every metric under the `rsession_mcp` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rsession_mcp");
        let executions = Family::<StatusLabel, Counter>::default();
        let execution_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        let tool_calls = Family::<ToolLabel, Counter>::default();
        let sessions = Gauge::default();
        let sessions_lost = Counter::default();
        registry.register(
            "executions",
            "Evaluations by status (ok, error, parse_error, interrupted, timeout, killed, lost)",
            executions.clone(),
        );
        registry.register(
            "execution_duration_seconds",
            "Wall-clock time of evaluations in seconds",
            execution_seconds.clone(),
        );
        registry.register(
            "tool_calls",
            "MCP tool calls by tool and outcome (ok or an error code)",
            tool_calls.clone(),
        );
        registry.register("sessions", "Sessions currently open", sessions.clone());
        registry.register(
            "sessions_lost",
            "Times a session's R process was lost (killed, quit, crashed)",
            sessions_lost.clone(),
        );
        Metrics {
            registry,
            executions,
            execution_seconds,
            tool_calls,
            sessions,
            sessions_lost,
        }
    }

    /// Count an evaluation that ended with `status` after `elapsed`.
    pub fn execution(&self, status: &str, elapsed: Duration) {
        self.executions
            .get_or_create(&StatusLabel {
                status: status.to_string(),
            })
            .inc();
        self.execution_seconds.observe(elapsed.as_secs_f64());
    }

    /// Count a tool call; `outcome` is `ok` or the error code.
    pub fn tool_call(&self, tool: &str, outcome: &str) {
        self.tool_calls
            .get_or_create(&ToolLabel {
                tool: tool.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Set the number of open sessions.
    pub fn set_sessions(&self, n: usize) {
        self.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Count a lost R process.
    pub fn session_lost(&self) {
        self.sessions_lost.inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_and_counts() {
        let m = Metrics::new();
        m.execution("ok", Duration::from_millis(3));
        m.tool_call("execute_in_session", "ok");
        m.set_sessions(2);
        let text = m.encode();
        assert!(
            text.contains("rsession_mcp_executions_total{status=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "rsession_mcp_tool_calls_total{tool=\"execute_in_session\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("rsession_mcp_sessions 2"), "{text}");
        assert!(
            text.contains("rsession_mcp_execution_duration_seconds_count 1"),
            "{text}"
        );
    }
}
