//! The operator against a real kube-apiserver, etcd and kube-controller-manager
//! (rsession-testenv), run in-process with `rsession_operator::run`. There is no kubelet, so
//! session pods stay Pending; everything up to admission, ownership and garbage collection is
//! real.
//!
//! Needs the binaries from `e2e/local/build-binaries.sh` (see `RSESSION_K8S_BIN`).

mod common;

use std::time::{Duration, Instant};

use common::{
    Operator, State, assert_owned_by, config_for, control_plane, expected_kinds, wait_settled,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use rsession_api::{RSession, RetainPolicy};
use rsession_testenv::{PodSecurity, apply_manifests, workspace_root};

fn samples() -> Vec<std::path::PathBuf> {
    let dir = workspace_root().join("config/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("config/samples")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_none_or(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    files
}

/// Applies multi-document YAML into `ns`.
async fn apply_yaml(client: &Client, ns: &str, yaml: &str) {
    rsession_testenv::apply_yaml(client, yaml, Some(ns))
        .await
        .expect("apply");
}

fn basic_rsession_yaml(name: &str) -> String {
    format!(
        "apiVersion: rsession.dev/v1alpha1\nkind: RSession\nmetadata:\n  name: {name}\nspec:\n  lifecycle:\n    idleTimeout: 1h\n"
    )
}

fn persistent_rsession_yaml(name: &str) -> String {
    format!(
        "apiVersion: rsession.dev/v1alpha1\nkind: RSession\nmetadata:\n  name: {name}\nspec:\n  workspace:\n    kind: Persistent\n    size: 1Gi\n"
    )
}

#[tokio::test]
async fn every_sample_creates_every_child_with_owner_references() {
    let cp = control_plane().await;
    let files = samples();
    assert!(files.len() >= 4, "samples: {files:?}");
    cp.with_temp_ns(
        "samples",
        PodSecurity::Restricted,
        |client, ns| async move {
            let operator = Operator::start(client.clone(), config_for(Some(&ns)));
            let mut names = Vec::new();
            for file in &files {
                let objects = apply_manifests(&client, file, Some(&ns))
                    .await
                    .unwrap_or_else(|e| panic!("apply {}: {e}", file.display()));
                names.extend(
                    objects
                        .iter()
                        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "RSession"))
                        .map(ResourceExt::name_any),
                );
            }
            assert_eq!(
                names.len(),
                files.len(),
                "one RSession per sample: {names:?}"
            );

            let state = wait_settled(&client, &ns, names.len()).await;
            for rs in &state.sessions {
                let name = rs.name_any();
                let kinds = expected_kinds(rs);
                for kind in &kinds {
                    let found = state.of(kind, &name);
                    assert_eq!(found.len(), 1, "{name}: exactly one {kind}, got {found:?}");
                    let retained_pvc = *kind == "PersistentVolumeClaim"
                        && rs.spec.workspace.retain_policy == RetainPolicy::Retain;
                    if retained_pvc {
                        // retainPolicy: Retain keeps the PVC out of garbage collection on purpose.
                        assert!(
                            found[0].owner_references.is_none(),
                            "{name}: retained PVC is owned"
                        );
                    } else {
                        assert_owned_by(kind, found[0], rs);
                    }
                }
                let status = rs.status.as_ref().expect("status");
                let pod = state.of("Pod", &name)[0];
                assert_eq!(status.pod_name.as_deref(), pod.name.as_deref(), "{name}");
                assert_eq!(
                    status.credentials_secret.as_deref(),
                    state.of("Secret", &name)[0].name.as_deref(),
                    "{name}"
                );
                // No kubelet here, so no pod turns Ready: status.endpoint (a Ready pod's IP)
                // stays unset rather than naming an address nothing has connected to.
                assert_eq!(status.endpoint, None, "{status:?}");
            }
            // The persistent sample is among them and got its claim.
            assert!(
                state
                    .sessions
                    .iter()
                    .any(|rs| expected_kinds(rs).contains(&"PersistentVolumeClaim"))
            );
            assert!(
                operator.error_lines().is_empty(),
                "{:?}",
                operator.error_lines()
            );
            operator.stop().await;
        },
    )
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn session_pod_is_admitted_under_restricted_while_a_noncompliant_pod_is_rejected() {
    let cp = control_plane().await;
    cp.with_temp_ns("pss", PodSecurity::Restricted, |client, ns| async move {
        let operator = Operator::start(client.clone(), config_for(Some(&ns)));
        apply_yaml(&client, &ns, &basic_rsession_yaml("locked")).await;
        let state = wait_settled(&client, &ns, 1).await;
        operator.stop().await;

        // The operator's pod passed PodSecurity admission at `restricted`.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pod_name = state.of("Pod", "locked")[0].name.clone().expect("pod name");
        let admitted = pods.get(&pod_name).await.expect("session pod exists");

        // The same pod with one restricted-profile violation is rejected, proving enforcement.
        let mut bad = admitted.clone();
        bad.metadata = kube::api::ObjectMeta {
            name: Some("noncompliant".into()),
            ..Default::default()
        };
        bad.status = None;
        let spec = bad.spec.as_mut().expect("spec");
        spec.node_name = None;
        let container = &mut spec.containers[0];
        container
            .security_context
            .as_mut()
            .expect("container securityContext")
            .allow_privilege_escalation = Some(true);
        let err = pods
            .create(&PostParams::default(), &bad)
            .await
            .expect_err("a pod allowing privilege escalation must be rejected");
        let kube::Error::Api(status) = err else {
            panic!("expected an API status: {err}")
        };
        assert_eq!(status.code, 403, "{status:?}");
        assert!(
            status
                .message
                .contains("violates PodSecurity \"restricted:latest\""),
            "{}",
            status.message
        );
        assert!(
            status.message.contains("allowPrivilegeEscalation != false"),
            "{}",
            status.message
        );

        // And a plain pod with no security settings at all is rejected as well.
        let plain: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "plain"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .expect("pod");
        let err = pods
            .create(&PostParams::default(), &plain)
            .await
            .expect_err("plain pod rejected");
        assert!(err.to_string().contains("runAsNonRoot != true"), "{err}");
    })
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn reapplying_an_unchanged_rsession_writes_nothing() {
    let cp = control_plane().await;
    cp.with_temp_ns("noop", PodSecurity::Restricted, |client, ns| async move {
        let operator = Operator::start(client.clone(), config_for(Some(&ns)));
        let yaml = persistent_rsession_yaml("steady");
        apply_yaml(&client, &ns, &yaml).await;
        let before = wait_settled(&client, &ns, 1).await;
        // Let the reconciles triggered by the operator's own writes run out first: stop it.
        operator.stop().await;
        let settled = State::read(&client, &ns).await;
        assert_eq!(
            before.resource_versions(),
            settled.resource_versions(),
            "writes after settling"
        );

        // A fresh operator reconciles every RSession it lists at start; wait for that
        // reconcile to finish (its writes, if any, are done by then).
        let fresh_reconcile = || async {
            let operator = Operator::start(client.clone(), config_for(Some(&ns)));
            operator.wait_reconciles(1).await;
            let state = State::read(&client, &ns).await;
            operator.stop().await;
            state
        };
        // The first operator applied its children once (it skips re-applying identical ones
        // for a minute), so this is the PVC's second apply, and the API server stores a PVC's
        // first update after its creation even when the apply changes nothing (kubectl apply
        // --server-side of one PVC: the second apply bumps resourceVersion, the third does not).
        // That is the only write allowed here.
        let first = fresh_reconcile().await;
        let rv_before = settled.resource_versions();
        assert_eq!(rv_before.len(), 6, "RSession + 5 children: {rv_before:?}");
        let rv_first = first.resource_versions();
        let changed: Vec<&(String, String)> = rv_before
            .iter()
            .filter(|(k, rv)| rv_first.get(*k) != Some(*rv) && k.0 != "PersistentVolumeClaim")
            .map(|(k, _)| k)
            .collect();
        assert!(
            changed.is_empty(),
            "writes of {changed:?} by a fresh operator"
        );

        // The same manifest again: the apiserver sees no change, and neither does anything else.
        apply_yaml(&client, &ns, &yaml).await;
        let after = fresh_reconcile().await;
        assert_eq!(
            first.resource_versions(),
            after.resource_versions(),
            "a write happened"
        );
    })
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn deleting_the_rsession_garbage_collects_its_children() {
    let cp = control_plane().await;
    assert!(cp.has_controller_manager());
    cp.with_temp_ns("gc", PodSecurity::Restricted, |client, ns| async move {
        let operator = Operator::start(client.clone(), config_for(Some(&ns)));
        apply_yaml(&client, &ns, &basic_rsession_yaml("gone")).await;
        apply_yaml(&client, &ns, &persistent_rsession_yaml("gone-too")).await;
        apply_yaml(
            &client,
            &ns,
            "apiVersion: rsession.dev/v1alpha1\nkind: RSession\nmetadata:\n  name: keeper\nspec:\n  workspace:\n    kind: Persistent\n    size: 1Gi\n    retainPolicy: Retain\n",
        )
        .await;
        let state = wait_settled(&client, &ns, 3).await;
        let owned: usize = state.children.values().map(Vec::len).sum();
        assert_eq!(owned, 4 + 5 + 5, "children before deletion: {:#?}", state.children);
        // Stop the operator: from here only the garbage collector can remove children.
        operator.stop().await;

        let rsessions: Api<RSession> = Api::namespaced(client.clone(), &ns);
        for rs in &state.sessions {
            rsessions.delete(&rs.name_any(), &DeleteParams::default()).await.expect("delete");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = State::read(&client, &ns).await;
            let left: Vec<String> = now
                .children
                .iter()
                .flat_map(|(kind, metas)| {
                    metas.iter().map(move |m| format!("{kind}/{}", m.name.as_deref().unwrap_or("")))
                })
                .collect();
            // Pods without a node are deleted at once; PVCs go after their protection finalizer.
            if now.sessions.is_empty() && left == ["PersistentVolumeClaim/keeper-workspace"] {
                break;
            }
            assert!(Instant::now() < deadline, "not collected within 60 s: {left:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The retained claim stays, unowned, for a later session to mount as existingClaim.
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client, &ns)
            .get("keeper-workspace")
            .await
            .expect("retained PVC");
        assert!(pvc.metadata.deletion_timestamp.is_none());
    })
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn restarting_the_operator_mid_reconcile_leaves_no_duplicates_or_orphans() {
    const SESSIONS: usize = 24;
    let cp = control_plane().await;
    cp.with_temp_ns(
        "restart",
        PodSecurity::Restricted,
        |client, ns| async move {
            let mut yaml = String::new();
            for i in 0..SESSIONS {
                yaml.push_str("---\n");
                if i % 3 == 0 {
                    yaml.push_str(&persistent_rsession_yaml(&format!("s{i}")));
                } else {
                    yaml.push_str(&basic_rsession_yaml(&format!("s{i}")));
                }
            }
            apply_yaml(&client, &ns, &yaml).await;

            // Crash the operator as soon as it has started creating children.
            let operator = Operator::start(client.clone(), config_for(Some(&ns)));
            let deadline = Instant::now() + Duration::from_secs(60);
            let partial = loop {
                let state = State::read(&client, &ns).await;
                if state.children.values().any(|c| !c.is_empty()) {
                    break state;
                }
                assert!(
                    Instant::now() < deadline,
                    "the operator created nothing within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            operator.crash().await;
            assert!(
                !partial.missing().is_empty(),
                "the crash came too late to be mid-reconcile"
            );

            let operator = Operator::start(client.clone(), config_for(Some(&ns)));
            wait_settled(&client, &ns, SESSIONS).await;
            operator.stop().await;
            // Settled and stopped: read again so late writes of the first operator are included.
            let state = State::read(&client, &ns).await;
            assert!(state.missing().is_empty(), "{:#?}", state.missing());

            for rs in &state.sessions {
                let name = rs.name_any();
                for kind in expected_kinds(rs) {
                    let found = state.of(kind, &name);
                    assert_eq!(
                        found.len(),
                        1,
                        "{name}: duplicate or missing {kind}: {found:?}"
                    );
                    assert_owned_by(kind, found[0], rs);
                }
                let status = rs.status.as_ref().expect("status");
                assert_eq!(
                    status.pod_name.as_deref(),
                    state.of("Pod", &name)[0].name.as_deref()
                );
            }
            // No orphans: every managed object belongs to an existing RSession.
            let total: usize = state.children.values().map(Vec::len).sum();
            let expected: usize = state
                .sessions
                .iter()
                .map(|rs| expected_kinds(rs).len())
                .sum();
            assert_eq!(total, expected, "stray children: {:#?}", state.children);
        },
    )
    .await
    .expect("temp namespace");
}
