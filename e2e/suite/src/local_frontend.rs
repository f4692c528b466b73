//! A second MCP frontend run here, as a child process over stdio, with its own session spec
//! (`rsession-mcp --backend kubernetes --session-spec`): for tests and benches that need
//! sessions shaped differently from the in-cluster frontend's (Persistent workspaces on a
//! hostPath volume made here, short idle timeouts, periodic checkpoints). Its sessions' owner
//! is the admin kubeconfig's user, [`LOCAL_OWNER`].

use anyhow::{Context, Result, ensure};
use kube::api::Api;
use kube::{Client, ResourceExt};
use rmcp::model::CallToolResult;
use rsession_api::RSession;
use rsession_api::well_known as wk;
use rsession_testkit::mcp::{Client as McpClient, call, connect_stdio};
use serde_json::json;

use crate::{delete_persistent, env, hostpath_pv, text, tool_failure};

/// The user of the admin kubeconfig the local frontend runs with.
pub const LOCAL_OWNER: &str = "rsession-admin";
/// StorageClass name of the hostPath volumes these tests make.
pub const HOSTPATH_CLASS: &str = "e2e-hostpath";

/// A fresh hostPath PersistentVolume `pv` of class [`HOSTPATH_CLASS`] in an emptied folder
/// (`$RSESSION_E2E_PV_DIR-<suffix>`), after deleting what an earlier run that stopped half-way
/// left: the local frontend's sessions (with their claims) and the volume. Returns the folder.
pub async fn fresh_volume(kube: &Client, ns: &str, pv: &str, suffix: &str) -> Result<String> {
    let dir =
        std::env::var("RSESSION_E2E_PV_DIR").unwrap_or_else(|_| "/var/lib/rsession-e2e/pv".into());
    let dir = format!("{dir}-{suffix}");
    let api: Api<RSession> = Api::namespaced(kube.clone(), ns);
    for rs in api.list(&Default::default()).await?.items {
        if rs
            .annotations()
            .get(wk::ANNOTATION_OWNER_NAME)
            .map(String::as_str)
            == Some(LOCAL_OWNER)
        {
            delete_persistent(kube, ns, &rs.name_any(), pv).await?;
        }
    }
    // Only the volume, when no session of ours held it.
    delete_persistent(kube, ns, "no-such-session", pv).await?;
    let _ = std::fs::remove_dir_all(&dir);
    hostpath_pv(kube, pv, &dir, HOSTPATH_CLASS).await?;
    Ok(dir)
}

/// Starts `RSESSION_E2E_MCP_BIN` over stdio against namespace `ns`, creating RSessions with
/// the spec `spec_yaml` and stamping activity after every evaluation.
pub async fn start(ns: &str, spec_yaml: &str) -> Result<McpClient> {
    let bin = env("RSESSION_E2E_MCP_BIN")?;
    let spec_file =
        std::env::temp_dir().join(format!("rsession-e2e-spec-{}.yaml", std::process::id()));
    std::fs::write(&spec_file, spec_yaml)?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args([
        "--backend",
        "kubernetes",
        "--namespace",
        ns,
        "--activity-interval-secs",
        "0",
    ])
    .arg("--session-spec")
    .arg(&spec_file)
    .env("RUST_LOG", "info");
    let (mcp, _pid) = connect_stdio(cmd)
        .await
        .context("start the local frontend")?;
    Ok(mcp)
}

/// `create_session` on `mcp`; returns the session id.
pub async fn create_session(mcp: &McpClient) -> Result<String> {
    let created = call(mcp, "create_session", json!({})).await?;
    ensure!(
        tool_failure(&created).is_none(),
        "create_session: {}",
        text(&created)
    );
    Ok(created
        .structured_content
        .as_ref()
        .and_then(|s| s["session_id"].as_str())
        .context("no session_id")?
        .to_owned())
}

/// `execute_in_session` of `code` in session `id`.
pub async fn exec(mcp: &McpClient, id: &str, code: &str) -> Result<CallToolResult> {
    Ok(call(
        mcp,
        "execute_in_session",
        json!({"session_id": id, "code": code}),
    )
    .await?)
}

/// The `state_reset_notice` of an `execute_in_session` result (what was restored), or "".
pub fn reset_notice(r: &CallToolResult) -> String {
    r.structured_content
        .as_ref()
        .and_then(|s| s["state_reset_notice"].as_str())
        .unwrap_or_default()
        .to_owned()
}
