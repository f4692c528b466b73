//! The `rsession-mcp` binary itself with `--backend kubernetes` against a REAL
//! kube-apiserver (rsession-testenv), configured only through `KUBECONFIG` and
//! the `RSESSION_*` variables the Helm chart sets: HTTP with bearer-token auth,
//! and stdio with the kubeconfig's identity as owner.
//!
//! As in `kubernetes_sessions.rs`, `StandIn` stands in only for the kubelet
//! (local Rserve per RSession); the real pod path is the node e2e suite's.

mod kubernetes_support;

use kube::ResourceExt;
use kube::api::Api;
use kubernetes_support::{
    StandIn, call, connect, control_plane, error_code, server_bin, service_account_token,
    setup_identities, spawn_http_server, structured, teardown_identities, text,
};
use rmcp::transport::ConfigureCommandExt;
use rsession_api::RSession;
use rsession_mcp::session::kubernetes::{ANNOTATION_OWNER_NAME, LABEL_OWNER, owner_label_value};
use rsession_testenv::{ADMIN_USER, PodSecurity};
use serde_json::json;

#[tokio::test]
async fn the_binary_serves_kubernetes_sessions_over_http_and_stdio() {
    let cp = control_plane().await;
    cp.with_temp_ns("mcp-bin", PodSecurity::Restricted, |admin, ns| async move {
        setup_identities(&admin, &ns).await;
        let stand_in = StandIn::start(admin.clone(), &ns);
        let workspace = tempfile::tempdir().expect("workspace");
        let rsessions: Api<RSession> = Api::namespaced(admin.clone(), &ns);
        let port = rserve::testing::free_port().expect("free port");

        // HTTP, configured like the chart's Deployment (auth on by default).
        let mut command = tokio::process::Command::new(server_bin());
        command
            .env("KUBECONFIG", cp.kubeconfig_path())
            .env("RSESSION_TRANSPORT", "http")
            .env("RSESSION_LISTEN", format!("127.0.0.1:{port}"))
            .env("RSESSION_BACKEND", "kubernetes")
            .env("RSESSION_NAMESPACE", &ns)
            .env("RSESSION_WORKSPACE_ROOT", workspace.path())
            .env("RSESSION_LOG", "info");
        let mut server = spawn_http_server(command).await;
        let url = format!("http://127.0.0.1:{port}/mcp");

        assert!(connect(&url, None).await.is_err(), "no token: refused");
        let token = service_account_token(&admin, &ns, "alice")
            .await
            .expect("TokenRequest");
        let alice = connect(&url, Some(&token)).await.expect("alice connects");
        let created = call(&alice, "create_session", json!({})).await;
        assert_eq!(error_code(&created), None, "{}", text(&created));
        let id = structured(&created)["session_id"]
            .as_str()
            .expect("id")
            .to_string();
        let r = call(
            &alice,
            "execute_in_session",
            json!({"session_id": id, "code": "6 * 7"}),
        )
        .await;
        assert!(text(&r).contains("42"), "{}", text(&r));
        let bob_token = service_account_token(&admin, &ns, "bob")
            .await
            .expect("TokenRequest");
        let bob = connect(&url, Some(&bob_token)).await.expect("bob connects");
        let denied = call(&bob, "create_session", json!({})).await;
        assert_eq!(error_code(&denied).as_deref(), Some("forbidden"));

        // SIGTERM: the server exits cleanly and leaves the RSession in place
        // (sessions outlive a frontend restart).
        let pid = server.id().expect("pid").to_string();
        let killed = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(killed.success());
        let status = server.wait().await.expect("wait");
        assert!(status.success(), "clean exit on SIGTERM: {status}");
        assert!(
            rsessions.get_opt(&id).await.expect("get").is_some(),
            "shutdown must not delete RSessions"
        );

        // stdio: no token; the owner is who the kubeconfig authenticates as.
        let cmd = tokio::process::Command::new(server_bin()).configure(|c| {
            c.env("KUBECONFIG", cp.kubeconfig_path())
                .env("RSESSION_BACKEND", "kubernetes")
                .env("RSESSION_NAMESPACE", &ns)
                .env("RSESSION_WORKSPACE_ROOT", workspace.path())
                .env("RSESSION_LOG", "warn");
        });
        let (local, _pid) = rsession_testkit::mcp::connect_stdio(cmd)
            .await
            .expect("MCP over stdio");
        let listed = local
            .call_tool(rmcp::model::CallToolRequestParams::new("list_sessions"))
            .await
            .expect("list");
        assert_eq!(
            listed
                .structured_content
                .as_ref()
                .map(|s| s["sessions"].clone()),
            Some(json!([])),
            "the admin sees none of alice's sessions"
        );
        let made = local
            .call_tool(rmcp::model::CallToolRequestParams::new("create_session"))
            .await
            .expect("create");
        let local_id = made
            .structured_content
            .as_ref()
            .and_then(|s| s["session_id"].as_str().map(String::from))
            .expect("id");
        let rs = rsessions.get(&local_id).await.expect("RSession");
        assert_eq!(
            rs.labels().get(LABEL_OWNER),
            Some(&owner_label_value(ADMIN_USER))
        );
        assert_eq!(
            rs.annotations()
                .get(ANNOTATION_OWNER_NAME)
                .map(String::as_str),
            Some(ADMIN_USER)
        );
        local.cancel().await.expect("stop stdio client");

        stand_in.stop().await;
        teardown_identities(&admin, &ns).await;
    })
    .await
    .expect("control plane setup");
}
