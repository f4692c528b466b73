//! The operator under the RBAC of `config/rbac/` against a real kube-apiserver: every request
//! is made as `system:serviceaccount:rsession-system:rsession-operator` (impersonation), and the
//! apiserver's audit log must show no `403 Forbidden` for it while the operator creates,
//! updates, suspends and resumes sessions of every sample, watching all namespaces, with leader
//! election on.
//!
//! Own test binary: the operator watches all namespaces and the RBAC objects are cluster-wide.

mod common;

use std::time::{Duration, Instant};

use common::{Operator, State, config_for, control_plane, wait_settled};
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use rsession_api::{Phase, RSession};
use rsession_testenv::{PodSecurity, apply_manifests, workspace_root};
use serde_json::{Value, json};

const OPERATOR_NS: &str = "rsession-system";
const OPERATOR_SA: &str = "rsession-operator";

fn is_operator(event: &Value) -> bool {
    event["impersonatedUser"]["username"]
        == format!("system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}").as_str()
}

fn describe(event: &Value) -> String {
    let o = &event["objectRef"];
    format!(
        "{} {}/{} {} in {} -> {}",
        event["verb"].as_str().unwrap_or("?"),
        o["apiGroup"].as_str().unwrap_or(""),
        o["resource"].as_str().unwrap_or("?"),
        o["subresource"].as_str().unwrap_or(""),
        o["namespace"].as_str().unwrap_or("(cluster)"),
        event["responseStatus"]["code"]
    )
}

async fn wait_phase(api: &Api<RSession>, name: &str, phase: Phase) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rs = api.get(name).await.expect("get RSession");
        let status = rs.status.as_ref();
        if status.and_then(|s| s.phase) == Some(phase)
            && status.and_then(|s| s.observed_generation) == rs.metadata.generation
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not {phase:?}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn operator_runs_under_config_rbac_without_forbidden_errors() {
    let cp = control_plane().await;
    let admin = cp.client().expect("admin client");
    let config = workspace_root().join("config");
    apply_manifests(&admin, &config.join("namespace/namespace.yaml"), None)
        .await
        .expect("apply config/namespace/namespace.yaml");
    let rbac = apply_manifests(&admin, &config.join("rbac"), None)
        .await
        .expect("apply config/rbac");
    assert!(rbac.len() >= 5, "{rbac:?}");

    cp.with_temp_ns("rbac", PodSecurity::Restricted, |admin, ns| async move {
        let cp = control_plane().await;
        let as_operator = cp
            .impersonate_service_account(OPERATOR_NS, OPERATOR_SA)
            .expect("impersonating client");
        let mut settings = config_for(None);
        settings.leader_election.enabled = true;
        settings.leader_election.lease_namespace = Some(OPERATOR_NS.into());
        let audit_start = cp.audit_events().expect("audit log").len();
        let operator = Operator::start(as_operator, settings);

        let samples = workspace_root().join("config/samples");
        apply_manifests(&admin, &samples, Some(&ns))
            .await
            .expect("apply samples");
        let state = wait_settled(&admin, &ns, 4).await;

        // Suspend deletes the pod, resume recreates it: the remaining verbs.
        let rsessions: Api<RSession> = Api::namespaced(admin.clone(), &ns);
        let name = state.sessions[0].name_any();
        let set_suspend =
            |suspend: bool| Patch::Merge(json!({"spec": {"lifecycle": {"suspend": suspend}}}));
        rsessions
            .patch(&name, &PatchParams::default(), &set_suspend(true))
            .await
            .expect("suspend");
        wait_phase(&rsessions, &name, Phase::Suspended).await;
        assert!(
            State::read(&admin, &ns).await.of("Pod", &name).is_empty(),
            "pod kept while suspended"
        );
        rsessions
            .patch(&name, &PatchParams::default(), &set_suspend(false))
            .await
            .expect("resume");
        wait_settled(&admin, &ns, 4).await;

        let lease = Api::<Lease>::namespaced(admin.clone(), OPERATOR_NS)
            .get("rsession-operator")
            .await
            .expect("the operator took the leader Lease");
        assert!(lease.spec.and_then(|s| s.holder_identity).is_some());
        assert!(
            operator.error_lines().is_empty(),
            "{:?}",
            operator.error_lines()
        );
        operator.stop().await;

        let events = cp.audit_events().expect("audit log");
        let mine: Vec<&Value> = events[audit_start..]
            .iter()
            .filter(|e| is_operator(e))
            .collect();
        let forbidden: Vec<String> = mine
            .iter()
            .filter(|e| e["responseStatus"]["code"] == 403)
            .map(|e| describe(e))
            .collect();
        assert!(
            forbidden.is_empty(),
            "forbidden requests of the operator: {forbidden:#?}"
        );
        // The check above saw the operator's real traffic: watches, applies, status, delete.
        let verbs: std::collections::BTreeSet<&str> =
            mine.iter().filter_map(|e| e["verb"].as_str()).collect();
        for verb in ["list", "watch", "patch", "delete", "create", "update"] {
            assert!(
                verbs.contains(verb),
                "no {verb} by the operator in the audit log: {verbs:?}"
            );
        }
    })
    .await
    .expect("temp namespace");
}
