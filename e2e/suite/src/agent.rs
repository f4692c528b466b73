//! An agent: one ServiceAccount identity calling the in-cluster MCP frontend, with the tool
//! calls the tests make (each under a deadline) and the reading of their results.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use rmcp::model::CallToolResult;
use rsession_api::RSession;
use serde_json::{Value, json};

use crate::{
    LABEL_OWNER, McpClient, call, delete_rsession, env, mcp_connect, mcp_url, owner_label_value,
    sa_token, sessions_ns, text,
};

/// Deadline of one tool call unless the caller names another, in seconds (above the chart's
/// `readyTimeoutSecs`, 120, so `create_session` answers before it).
pub const CALL_SECS: u64 = 200;

/// A tool failure as the frontend reports it: `{code, message, retryable, details}`.
#[derive(Debug, Clone)]
pub struct ToolFailure {
    /// Stable code, e.g. `session_lost`.
    pub code: String,
    /// What happened.
    pub message: String,
    /// Whether the same call may succeed if retried.
    pub retryable: bool,
    /// Free-form details.
    pub details: Value,
}

impl std::fmt::Display for ToolFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (retryable {}): {} {}",
            self.code, self.retryable, self.message, self.details
        )
    }
}

/// The failure of a tool result with `isError: true` (from its structured content, else from
/// its JSON text); `None` for a successful result.
pub fn tool_failure(r: &CallToolResult) -> Option<ToolFailure> {
    if r.is_error != Some(true) {
        return None;
    }
    let body = r
        .structured_content
        .clone()
        .or_else(|| serde_json::from_str(&text(r)).ok())
        .unwrap_or_else(|| json!({"message": text(r)}));
    Some(ToolFailure {
        code: body["code"].as_str().unwrap_or_default().to_owned(),
        message: body["message"].as_str().unwrap_or_default().to_owned(),
        retryable: body["retryable"].as_bool().unwrap_or(false),
        details: body["details"].clone(),
    })
}

/// The `status` of an evaluation result (`ok`, `error`, ...).
pub fn exec_status(r: &CallToolResult) -> Option<String> {
    r.structured_content
        .as_ref()?
        .get("status")?
        .as_str()
        .map(str::to_owned)
}

/// What R printed to stdout in an evaluation, in order (structured `stdout` events).
pub fn stdout(r: &CallToolResult) -> String {
    r.structured_content
        .as_ref()
        .and_then(|s| s.get("events"))
        .and_then(Value::as_array)
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "stdout")
                .filter_map(|e| e["text"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Codes after which the same call succeeds once the session or the backend is back.
pub const RECOVERABLE: [&str; 4] = [
    "session_not_ready",
    "backend_unavailable",
    "session_lost",
    "session_busy",
];

/// Connects an MCP client, retrying for up to `secs` seconds (the frontend may be restarting).
pub async fn mcp_connect_retrying(token: &str, secs: u64) -> Result<McpClient> {
    let url = mcp_url()?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut delay = Duration::from_millis(200);
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(30), mcp_connect(&url, Some(token)))
            .await
            .map(|r| r.map_err(anyhow::Error::from))
            .unwrap_or_else(|_| Err(anyhow!("MCP initialize at {url}: no answer within 30 s")));
        match attempt {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() + delay < deadline => {
                eprintln!("MCP connect failed ({e:#}); retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            Err(e) => return Err(e.context(format!("MCP connect for {secs} s"))),
        }
    }
}

/// One identity (ServiceAccount `sa` in the sessions namespace, bound to the chart's user
/// ClusterRole) with an MCP client.
pub struct Agent {
    /// The MCP client.
    pub mcp: McpClient,
    /// ServiceAccount name.
    pub sa: String,
    /// Sessions namespace.
    pub ns: String,
    token: String,
    kube: Client,
}

impl Agent {
    /// Creates the identity, removes sessions an earlier (failed) run left for it, connects.
    pub async fn new(kube: &Client, sa: &str) -> Result<Agent> {
        let ns = sessions_ns()?;
        let role = env("RSESSION_E2E_USER_CLUSTERROLE")?;
        let token = sa_token(kube, &ns, sa, Some(&role)).await?;
        let mcp = mcp_connect_retrying(&token, 60).await?;
        let agent = Agent {
            mcp,
            sa: sa.to_owned(),
            ns,
            token,
            kube: kube.clone(),
        };
        agent.close_all().await?;
        Ok(agent)
    }

    /// The user name the frontend sees (TokenReview of a ServiceAccount token).
    pub fn username(&self) -> String {
        rsession_testkit::mcp::service_account_user(&self.ns, &self.sa)
    }

    /// The owner label value of this identity's sessions.
    pub fn owner_label(&self) -> Result<String> {
        owner_label_value(&self.username())
    }

    /// A new MCP client with the same token (after a frontend restart), retried for `secs`.
    pub async fn reconnect(&mut self, secs: u64) -> Result<()> {
        let fresh = mcp_connect_retrying(&self.token, secs).await?;
        let old = std::mem::replace(&mut self.mcp, fresh);
        let _ = tokio::time::timeout(Duration::from_secs(5), old.cancel()).await;
        Ok(())
    }

    /// Calls `tool` with `args` under a deadline of `secs` seconds.
    pub async fn call_within(&self, tool: &str, args: Value, secs: u64) -> Result<CallToolResult> {
        Ok(
            tokio::time::timeout(Duration::from_secs(secs), call(&self.mcp, tool, args))
                .await
                .map_err(|_| anyhow!("{tool}: no answer within {secs} s"))??,
        )
    }

    /// Calls `tool` with `args` under [`CALL_SECS`].
    pub async fn call(&self, tool: &str, args: Value) -> Result<CallToolResult> {
        self.call_within(tool, args, CALL_SECS).await
    }

    /// `create_session`; its failure is an error. Returns the session id.
    pub async fn create_session(&self) -> Result<String> {
        let r = self.call("create_session", json!({})).await?;
        if let Some(f) = tool_failure(&r) {
            bail!("create_session failed: {f}");
        }
        r.structured_content
            .as_ref()
            .and_then(|s| s["session_id"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no session_id in {r:?}"))
    }

    /// `create_session` until it succeeds, for at most `secs` seconds and 20 attempts,
    /// retrying failures the frontend marks retryable. Returns the id and the failures seen.
    pub async fn create_session_until_ok(&self, secs: u64) -> Result<(String, Vec<ToolFailure>)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        let mut delay = Duration::from_millis(250);
        for _ in 0..20 {
            let r = self.call("create_session", json!({})).await?;
            match tool_failure(&r) {
                None => {
                    let id = r
                        .structured_content
                        .as_ref()
                        .and_then(|s| s["session_id"].as_str());
                    return Ok((
                        id.with_context(|| format!("no session_id in {r:?}"))?
                            .to_owned(),
                        seen,
                    ));
                }
                Some(f) if f.retryable && Instant::now() + delay < deadline => {
                    seen.push(f);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(4));
                }
                Some(f) => bail!("create_session failed: {f}; before: {seen:#?}"),
            }
        }
        bail!("create_session: no success within {secs} s; failures: {seen:#?}")
    }

    /// `execute_in_session` with the default limits.
    pub async fn exec(&self, id: &str, code: &str) -> Result<CallToolResult> {
        self.call(
            "execute_in_session",
            json!({"session_id": id, "code": code}),
        )
        .await
    }

    /// `execute_in_session` with a deadline of `max_secs` seconds in R.
    pub async fn exec_for(&self, id: &str, code: &str, max_secs: u64) -> Result<CallToolResult> {
        self.call_within(
            "execute_in_session",
            json!({"session_id": id, "code": code, "limits": {"max_duration_secs": max_secs}}),
            max_secs + 60,
        )
        .await
    }

    /// Runs `code` and returns its stdout; a tool failure or an R error is an error.
    pub async fn eval(&self, id: &str, code: &str) -> Result<String> {
        let r = self.exec(id, code).await?;
        ok_stdout(&r, code)
    }

    /// Runs `code` until it succeeds, for at most `secs` seconds and 40 attempts, retrying
    /// the [`RECOVERABLE`] failures with backoff. Returns the result and the failures seen.
    pub async fn eval_until_ok(
        &self,
        id: &str,
        code: &str,
        secs: u64,
    ) -> Result<(CallToolResult, Vec<ToolFailure>)> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        let mut delay = Duration::from_millis(250);
        for _ in 0..40 {
            let r = self.exec(id, code).await?;
            match tool_failure(&r) {
                None => {
                    ok_stdout(&r, code)?;
                    return Ok((r, seen));
                }
                Some(f) if RECOVERABLE.contains(&f.code.as_str()) => {
                    seen.push(f);
                    if Instant::now() + delay >= deadline {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(4));
                }
                Some(f) => bail!("{code}: {f}"),
            }
        }
        bail!("{code}: not answered within {secs} s; failures: {seen:#?}")
    }

    /// `close_session`; its failure is an error.
    pub async fn close_session(&self, id: &str) -> Result<()> {
        let r = self
            .call("close_session", json!({"session_id": id}))
            .await?;
        if let Some(f) = tool_failure(&r) {
            bail!("close_session {id}: {f}");
        }
        Ok(())
    }

    /// The RSessions carrying this identity's owner label.
    pub async fn owned_rsessions(&self) -> Result<Vec<RSession>> {
        let api: Api<RSession> = Api::namespaced(self.kube.clone(), &self.ns);
        let lp = ListParams::default().labels(&format!("{LABEL_OWNER}={}", self.owner_label()?));
        Ok(api.list(&lp).await?.items)
    }

    /// Closes every session of this identity through the frontend (so it forgets them too)
    /// and deletes what is left through the API; waits until all are gone.
    pub async fn close_all(&self) -> Result<()> {
        let names: Vec<String> = self
            .owned_rsessions()
            .await?
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        let deletions = names.iter().map(|name| async move {
            if let Err(e) = self.close_session(name).await {
                eprintln!("cleanup of {name}: {e:#}; deleting the RSession");
            }
            delete_rsession(&self.kube, &self.ns, name).await
        });
        for r in futures::future::join_all(deletions).await {
            r?;
        }
        Ok(())
    }

    /// [`Agent::close_all`], then closes the MCP client.
    pub async fn finish(self) -> Result<()> {
        self.close_all().await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.mcp.cancel()).await;
        Ok(())
    }
}

/// The stdout of a successful evaluation; a tool failure or an R error (status not `ok`) is
/// an error naming `code`.
pub fn ok_stdout(r: &CallToolResult, code: &str) -> Result<String> {
    if let Some(f) = tool_failure(r) {
        bail!("{code}: {f}");
    }
    ensure!(
        exec_status(r).as_deref() == Some("ok"),
        "{code}: status {:?}: {}",
        exec_status(r),
        text(r)
    );
    Ok(stdout(r))
}
