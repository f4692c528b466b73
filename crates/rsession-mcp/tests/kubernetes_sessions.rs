//! The `kubernetes` backend and in-cluster auth against a REAL kube-apiserver
//! (rsession-testenv), with real MCP clients (rmcp over streamable HTTP), real
//! service-account tokens (TokenRequest API), real RBAC, and real Rserve.
//!
//! No kubelet runs here: `kubernetes_support::StandIn` stands in ONLY for the
//! kubelet/operator pod path (it starts a local Rserve per RSession and marks it
//! Ready). The real operator + kubelet path is covered by the node e2e suite.
//!
//! Needs the binaries from `e2e/local/build-binaries.sh` (`RSESSION_K8S_BIN`)
//! and R with Rserve (`r-base-core`, `r-cran-rserve`).

mod kubernetes_support;

use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use kubernetes_support::{
    Frontend, StandIn, call, connect, control_plane, error_code, service_account_token,
    service_account_user, setup_identities, structured, teardown_identities, text,
};
use rsession_api::RSession;
use rsession_api::well_known as wk;
use rsession_mcp::session::Progress;
use rsession_mcp::session::kubernetes::{LABEL_OWNER, owner_label_value};
use rsession_testenv::PodSecurity;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn create_use_isolate_and_close_sessions_through_mcp_with_service_account_tokens() {
    let cp = control_plane().await;
    cp.with_temp_ns("mcp-k8s", PodSecurity::Restricted, |admin, ns| async move {
        setup_identities(&admin, &ns).await;
        let workspace = tempfile::tempdir().expect("workspace dir");
        let workspace_path = workspace.path().join("ws").display().to_string();
        let stand_in = StandIn::start(admin.clone(), &ns);
        let frontend = Frontend::start(cp, &ns, &workspace_path).await;
        let rsessions: Api<RSession> = Api::namespaced(admin.clone(), &ns);

        // Without a token: HTTP 401 with a JSON-RPC body, and an MCP client cannot even initialize.
        let raw = reqwest::Client::new()
            .post(&frontend.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#)
            .send()
            .await
            .expect("raw POST");
        assert_eq!(raw.status().as_u16(), 401);
        assert!(raw.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = raw.json().await.expect("JSON body");
        assert_eq!(body["error"]["data"]["code"], "unauthorized", "{body}");
        assert!(connect(&frontend.url, None).await.is_err(), "no token must not initialize");
        assert!(
            connect(&frontend.url, Some("not-a-real-token")).await.is_err(),
            "a token the cluster refuses must not initialize"
        );

        // alice creates a session and sees progress Pending → Starting → Ready.
        let alice_token = service_account_token(&admin, &ns, "alice").await.expect("TokenRequest");
        let alice = connect(&frontend.url, Some(&alice_token)).await.expect("alice connects");
        let created = call(&alice, "create_session", json!({})).await;
        assert_eq!(error_code(&created), None, "{}", text(&created));
        let id = structured(&created)["session_id"].as_str().expect("session_id").to_string();
        // No pool: a cold start, and the time to Ready the frontend measured.
        let start = &structured(&created)["start"];
        assert_eq!(start["warm"], false, "{start}");
        assert!(start["ready_ms"].as_u64().is_some(), "{start}");
        assert!(text(&created).contains("Started cold (a new pod); Ready in "), "{}", text(&created));
        let progress = alice.service().progress();
        let messages: Vec<String> = progress.iter().filter_map(|p| p.message.clone()).collect();
        let position = |prefix: &str| {
            messages
                .iter()
                .position(|m| m.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} progress in {messages:?}"))
        };
        assert!(position("Submitted") < position("Starting"), "{messages:?}");
        assert!(position("Starting") < position("Ready"), "{messages:?}");
        assert!(position("Ready") < position("Connected"), "{messages:?}");
        assert!(
            progress.windows(2).all(|w| w[0].progress <= w[1].progress),
            "progress must not go back: {progress:?}"
        );
        assert!(
            progress.iter().all(|p| p.progress_token == progress[0].progress_token),
            "one progress token, the request's: {progress:?}"
        );

        // A pool that does not exist, named: a structured error naming it.
        let nope = call(&alice, "create_session", json!({"pool": "nope"})).await;
        assert_eq!(error_code(&nope).as_deref(), Some("pool_not_found"), "{}", text(&nope));
        assert_eq!(structured(&nope)["details"]["pool"], "nope");

        // The RSession is labelled with alice's hashed identity, applied by rsession-mcp.
        let rs = rsessions.get(&id).await.expect("RSession exists");
        let alice_user = service_account_user(&ns, "alice");
        assert_eq!(rs.labels().get(LABEL_OWNER), Some(&owner_label_value(&alice_user)));
        assert!(
            rs.managed_fields().iter().any(|f| f.manager.as_deref() == Some("rsession-mcp")
                && f.operation.as_deref() == Some("Apply")),
            "server-side applied by rsession-mcp: {:?}",
            rs.managed_fields()
        );

        // R state is kept across calls; the working directory is the workspace.
        let r1 = call(&alice, "execute_in_session", json!({"session_id": id, "code": "x <- 41; writeLines('kept', 'kept.txt'); getwd()"})).await;
        assert_eq!(error_code(&r1), None, "{}", text(&r1));
        assert!(text(&r1).contains(&workspace_path), "{}", text(&r1));
        let r2 = call(&alice, "execute_in_session", json!({"session_id": id, "code": "x + 1"})).await;
        assert!(text(&r2).contains("42"), "{}", text(&r2));

        // Each evaluation stamps rsession.dev/last-activity (RFC 3339) on the RSession.
        let stamped = tokio::time::timeout(
            WAIT,
            await_condition(rsessions.clone(), &id, |rs: Option<&RSession>| {
                rs.is_some_and(|rs| rs.annotations().contains_key(wk::ANNOTATION_LAST_ACTIVITY))
            }),
        )
        .await
        .expect("last-activity stamped in time")
        .expect("watch")
        .expect("object");
        let stamp: jiff::Timestamp = stamped.annotations()[wk::ANNOTATION_LAST_ACTIVITY]
            .parse()
            .expect("RFC 3339 timestamp");
        let age = jiff::Timestamp::now().duration_since(stamp);
        assert!(age.as_secs() < 60 && age.as_secs() >= -2, "stamp {stamp} is not recent");
        assert!(
            stamped.managed_fields().iter().any(|f| f.manager.as_deref() == Some("rsession-mcp-activity")),
            "stamp applied by its own field manager"
        );
        assert!(stamped.labels().contains_key(LABEL_OWNER), "the stamp left the owner label alone");

        // list_sessions shows alice's session with its phase.
        let listed = call(&alice, "list_sessions", json!({})).await;
        let sessions = structured(&listed)["sessions"].as_array().cloned().expect("sessions");
        assert_eq!(sessions.len(), 1, "{listed:?}");
        assert_eq!(sessions[0]["session_id"], id.as_str());
        assert_eq!(sessions[0]["phase"], "Ready");

        // bob (get/list/delete but no create) sees nothing of alice's and may not create.
        let bob_token = service_account_token(&admin, &ns, "bob").await.expect("TokenRequest");
        let bob = connect(&frontend.url, Some(&bob_token)).await.expect("bob connects");
        let bob_list = call(&bob, "list_sessions", json!({})).await;
        assert_eq!(error_code(&bob_list), None);
        assert_eq!(structured(&bob_list)["sessions"], json!([]));
        let bob_exec = call(&bob, "execute_in_session", json!({"session_id": id, "code": "x"})).await;
        assert_eq!(error_code(&bob_exec).as_deref(), Some("session_not_found"), "{}", text(&bob_exec));
        // A leak would print alice's x as "[1] 41"; the bare digits can occur in the random
        // session id that the session_not_found message quotes.
        assert!(!text(&bob_exec).contains("[1] 41"), "nothing of alice's session leaks");
        let bob_close = call(&bob, "close_session", json!({"session_id": id})).await;
        assert_eq!(error_code(&bob_close).as_deref(), Some("session_not_found"));
        let bob_create = call(&bob, "create_session", json!({})).await;
        assert_eq!(error_code(&bob_create).as_deref(), Some("forbidden"), "{}", text(&bob_create));
        assert_eq!(rsessions.list(&Default::default()).await.unwrap().items.len(), 1, "bob created nothing");

        // carol (no RBAC at all) is authenticated but forbidden everything.
        let carol_token = service_account_token(&admin, &ns, "carol").await.expect("TokenRequest");
        let carol = connect(&frontend.url, Some(&carol_token)).await.expect("carol connects");
        let carol_list = call(&carol, "list_sessions", json!({})).await;
        assert_eq!(error_code(&carol_list).as_deref(), Some("forbidden"));
        let carol_exec = call(&carol, "execute_in_session", json!({"session_id": id, "code": "1"})).await;
        assert_eq!(error_code(&carol_exec).as_deref(), Some("forbidden"));

        // A restarted frontend (new process state, same RSession) connects lazily
        // and says the R state was reset.
        frontend.stop().await;
        let frontend = Frontend::start(cp, &ns, &workspace_path).await;
        let alice = connect(&frontend.url, Some(&alice_token)).await.expect("alice reconnects");
        let after = call(&alice, "execute_in_session", json!({"session_id": id, "code": "exists('x'); readLines('kept.txt')"})).await;
        assert_eq!(error_code(&after), None, "{}", text(&after));
        assert!(text(&after).contains("FALSE") && text(&after).contains("\"kept\""), "{}", text(&after));
        assert_eq!(structured(&after)["state_reset"], true, "{:?}", structured(&after));
        // The first result says so plainly, before the output.
        assert!(
            text(&after).starts_with("NOTE: R state was reset")
                && text(&after).contains("restart of the server")
                && text(&after).contains("files in the workspace survived"),
            "{}",
            text(&after)
        );
        let again = call(&alice, "execute_in_session", json!({"session_id": id, "code": "y <- 2; y * 21"})).await;
        assert!(text(&again).contains("42") && structured(&again)["state_reset"] == false, "{}", text(&again));

        // close_session deletes the RSession.
        let closed = call(&alice, "close_session", json!({"session_id": id})).await;
        assert_eq!(error_code(&closed), None, "{}", text(&closed));
        tokio::time::timeout(
            WAIT,
            await_condition(rsessions.clone(), &id, |rs: Option<&RSession>| rs.is_none()),
        )
        .await
        .expect("RSession deleted in time")
        .expect("watch");
        let gone = call(&alice, "execute_in_session", json!({"session_id": id, "code": "1"})).await;
        assert_eq!(error_code(&gone).as_deref(), Some("session_not_found"));

        frontend.stop().await;
        stand_in.stop().await;

        // Least privilege: everything the frontend did ran under the chart's
        // Role + auth-delegator without a single 403, and the reviews really
        // went through the apiserver.
        let frontend_user = service_account_user(&ns, "rsession-mcp");
        let events = cp.audit_events().expect("audit log");
        let by_frontend: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["impersonatedUser"]["username"] == frontend_user.as_str())
            .collect();
        let refused: Vec<&&serde_json::Value> = by_frontend
            .iter()
            .filter(|e| e["responseStatus"]["code"] == 403)
            .collect();
        assert!(refused.is_empty(), "403s for the frontend: {refused:?}");
        // events: the Created Event naming the caller, published in the background when the
        // first session was made, long before this point.
        for resource in [
            "tokenreviews",
            "subjectaccessreviews",
            "rsessions",
            "secrets",
            "events",
        ] {
            assert!(
                by_frontend.iter().any(|e| e["objectRef"]["resource"] == resource),
                "no {resource} request by the frontend in the audit log"
            );
        }
        // create_session waited for Ready on the frontend's one shared watch of its RSessions
        // (label rsession.dev/owner), not on a LIST and WATCH of its own RSession.
        let rsession_reads = |verb: &str, query: &str| {
            by_frontend
                .iter()
                .filter(|e| {
                    e["objectRef"]["resource"] == "rsessions"
                        && e["verb"] == verb
                        && e["requestURI"].as_str().is_some_and(|u| u.contains(query))
                })
                .count()
        };
        assert_eq!(rsession_reads("list", "fieldSelector=metadata.name"), 0, "a per-session LIST");
        assert_eq!(rsession_reads("watch", "fieldSelector=metadata.name"), 0, "a per-session WATCH");
        assert!(rsession_reads("watch", "labelSelector=rsession.dev%2Fowner") >= 1, "no shared watch");
        teardown_identities(&admin, &ns).await;
    })
    .await
    .expect("control plane setup");
}

#[tokio::test]
async fn a_session_that_never_gets_ready_answers_session_not_ready() {
    let cp = control_plane().await;
    cp.with_temp_ns(
        "mcp-k8s-slow",
        PodSecurity::Restricted,
        |admin, ns| async move {
            setup_identities(&admin, &ns).await;
            // No stand-in: nothing ever marks the RSession Ready.
            let client = cp
                .impersonate_service_account(&ns, "rsession-mcp")
                .expect("client");
            let mut config = rsession_mcp::session::kubernetes::KubernetesConfig::new(&ns);
            config.ready_timeout = Duration::from_secs(2);
            let backend = rsession_mcp::session::kubernetes::KubernetesBackend::new(client, config);
            let manager = rsession_mcp::session::SessionManager::new(
                std::sync::Arc::new(backend),
                Default::default(),
                std::sync::Arc::new(rsession_mcp::metrics::Metrics::new()),
            );
            let owner = service_account_user(&ns, "alice");
            let e = manager
                .create(&owner, &Progress::none())
                .await
                .expect_err("never ready");
            assert_eq!(e.code.as_str(), "session_not_ready", "{e}");
            let id = e.details["session_id"]
                .as_str()
                .expect("session id in details")
                .to_string();
            // The RSession is kept (it may still start) and shows up for its owner only.
            let listed = manager.list(&owner).await.expect("list");
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].session_id, id);
            assert!(manager.list("someone-else").await.expect("list").is_empty());
            let exec = manager
                .execute(&owner, &id, "1", None, None)
                .await
                .expect_err("not ready");
            assert_eq!(exec.code.as_str(), "session_not_ready");
            // Closing works even though this manager never connected to it.
            manager.close(&owner, &id).await.expect("close");
            let rsessions: Api<RSession> = Api::namespaced(admin.clone(), &ns);
            tokio::time::timeout(
                WAIT,
                await_condition(rsessions, &id, |rs: Option<&RSession>| rs.is_none()),
            )
            .await
            .expect("deleted in time")
            .expect("watch");
            teardown_identities(&admin, &ns).await;
        },
    )
    .await
    .expect("control plane setup");
}

#[tokio::test]
async fn a_session_from_a_pool_passes_the_crd_rules_and_reports_its_warm_claim() {
    use kube::api::PostParams;
    use rsession_api::{RSessionPool, RSessionPoolSpec};
    use rsession_mcp::session::PoolRequest;
    use rsession_mcp::session::kubernetes::{KubernetesBackend, KubernetesConfig};

    let cp = control_plane().await;
    cp.with_temp_ns(
        "mcp-k8s-pool",
        PodSecurity::Restricted,
        |admin, ns| async move {
            setup_identities(&admin, &ns).await;
            let pool = RSessionPool::new(
                "warm",
                RSessionPoolSpec {
                    replicas: 1,
                    ..RSessionPoolSpec::default()
                },
            );
            Api::<RSessionPool>::namespaced(admin.clone(), &ns)
                .create(&PostParams::default(), &pool)
                .await
                .expect("RSessionPool warm");
            let stand_in = StandIn::start(admin.clone(), &ns);
            let workspace = tempfile::tempdir().expect("workspace dir");
            let client = cp
                .impersonate_service_account(&ns, "rsession-mcp")
                .expect("client");
            let mut config = KubernetesConfig::new(&ns);
            config.workspace = workspace.path().join("ws").display().to_string();
            config.default_pool = Some("gone".into());
            let manager = rsession_mcp::session::SessionManager::new(
                std::sync::Arc::new(KubernetesBackend::new(client, config)),
                Default::default(),
                std::sync::Arc::new(rsession_mcp::metrics::Metrics::new()),
            );
            let owner = service_account_user(&ns, "alice");
            let rsessions: Api<RSession> = Api::namespaced(admin.clone(), &ns);

            // Named: the apiserver's CEL rules accept the RSession (poolRef, no pod fields).
            let warm = manager
                .create_with_pool(
                    &owner,
                    &PoolRequest::Named("warm".into()),
                    &Progress::none(),
                )
                .await
                .expect("a session from pool warm");
            let start = warm.start.clone().expect("how it started");
            assert!(start.warm, "{start:?}");
            assert_eq!(start.pool.as_deref(), Some("warm"));
            assert_eq!(start.pod_name.as_deref(), Some("warm-stand"));
            let rs = rsessions.get(&warm.session_id).await.expect("RSession");
            assert_eq!(
                rs.spec.pool_ref.as_ref().map(|p| p.name.as_str()),
                Some("warm")
            );
            assert!(
                rsession_mcp::session::kubernetes::pod_fields_set(&rs.spec).is_empty(),
                "{:?}",
                rs.spec
            );
            let two = manager
                .execute(&owner, &warm.session_id, "1 + 1", None, None)
                .await
                .expect("R answers in the pooled session");
            assert_eq!(
                two.outcome.status,
                rsession_mcp::harness::ExecStatus::Ok,
                "{two:?}"
            );

            // A pool that does not exist, named: pool_not_found, nothing created.
            let e = manager
                .create_with_pool(
                    &owner,
                    &PoolRequest::Named("nope".into()),
                    &Progress::none(),
                )
                .await
                .expect_err("no pool nope");
            assert_eq!(e.code.as_str(), "pool_not_found", "{e}");
            assert_eq!(e.details["pool"], "nope");

            // The default pool does not exist: a cold start, no poolRef.
            let cold = manager
                .create(&owner, &Progress::none())
                .await
                .expect("a cold start despite the missing default pool");
            let start = cold.start.clone().expect("how it started");
            assert!(!start.warm && start.pool.is_none(), "{start:?}");
            let rs = rsessions.get(&cold.session_id).await.expect("RSession");
            assert!(rs.spec.pool_ref.is_none());
            assert_eq!(manager.list(&owner).await.expect("list").len(), 2);

            for id in [&warm.session_id, &cold.session_id] {
                manager.close(&owner, id).await.expect("close");
            }
            stand_in.stop().await;
            teardown_identities(&admin, &ns).await;
        },
    )
    .await
    .expect("control plane setup");
}

#[tokio::test]
async fn stdio_identity_is_the_kubeconfig_user() {
    let cp = control_plane().await;
    let client = cp
        .impersonate_service_account("default", "someone")
        .expect("client");
    let who = rsession_mcp::auth::local_identity(&client, Some("kubeconfig-user")).await;
    assert_eq!(who, "system:serviceaccount:default:someone");
}
