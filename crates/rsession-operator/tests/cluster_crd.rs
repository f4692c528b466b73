//! The RSession CRD against a real kube-apiserver (rsession-testenv): it installs and is
//! Established, `kubectl explain` shows the field docs, and invalid specs are rejected by the
//! OpenAPI schema or the CEL rules with readable messages.
//!
//! Needs the binaries from `e2e/local/build-binaries.sh` (see `RSESSION_K8S_BIN`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use rsession_testenv::{ControlPlane, PodSecurity, apply_crds, workspace_root};
use serde_json::{Value, json};

async fn install_crd(cp: &ControlPlane) -> CustomResourceDefinition {
    let crds = apply_crds(
        &cp.client().expect("client"),
        &workspace_root().join("crds"),
    )
    .await
    .expect("the committed CRD installs and becomes Established");
    crds.into_iter()
        .find(|c| c.metadata.name.as_deref() == Some("rsessions.rsession.dev"))
        .expect("crds/ holds rsessions.rsession.dev")
}

fn rsession_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "rsession.dev",
        "v1alpha1",
        "RSession",
    ))
}

fn rsession(name: &str, spec: Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, &rsession_resource());
    object.data = json!({ "spec": spec });
    object
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn workspace_schema(crd: &CustomResourceDefinition) -> JSONSchemaProps {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("v1alpha1 has a schema");
    let spec = &schema.properties.as_ref().expect("properties")["spec"];
    spec.properties.as_ref().expect("spec properties")["workspace"].clone()
}

#[tokio::test]
async fn crd_installs_and_kubectl_explain_shows_workspace_docs() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let crd = install_crd(cp).await;
    let explained = cp
        .kubectl(&["explain", "rsession.spec.workspace"])
        .await
        .expect("kubectl explain rsession.spec.workspace");
    let explained_flat = collapse(&explained);

    assert!(
        explained.contains("KIND:") && explained.contains("RSession"),
        "{explained}"
    );
    assert!(explained.contains("rsession.dev"), "{explained}");
    // Every documented field of spec.workspace is listed with its own description, word for
    // word as generated from the Rust doc comments (kubectl re-wraps lines, hence `collapse`).
    let workspace = workspace_schema(&crd);
    let own = workspace
        .description
        .as_deref()
        .expect("workspace is documented");
    assert!(
        explained_flat.contains(&collapse(own)),
        "{own:?} missing from:\n{explained}"
    );
    let fields = workspace.properties.expect("workspace has fields");
    assert!(fields.len() >= 5, "{:?}", fields.keys());
    for (field, schema) in &fields {
        assert!(
            explained.contains(field.as_str()),
            "field {field} missing:\n{explained}"
        );
        let doc = schema
            .description
            .as_deref()
            .unwrap_or_else(|| panic!("{field} undocumented"));
        assert!(
            explained_flat.contains(&collapse(doc)),
            "doc of {field} ({doc:?}) missing from:\n{explained}"
        );
    }

    // The short name resolves too, and a nested field is explained on its own.
    let nested = cp
        .kubectl(&["explain", "rsess.spec.workspace.existingClaim"])
        .await
        .expect("kubectl explain rsess.spec.workspace.existingClaim");
    assert!(
        nested.contains("existingClaim") && nested.contains("<string>"),
        "{nested}"
    );
}

/// A spec the apiserver must reject, the path it must name and words its message must contain.
struct Invalid {
    case: &'static str,
    name: &'static str,
    spec: Value,
    expect: &'static [&'static str],
}

fn invalid_specs() -> Vec<Invalid> {
    vec![
        Invalid {
            case: "unknown workspace kind (enum)",
            name: "bad-kind",
            spec: json!({"workspace": {"kind": "Temporary"}}),
            expect: &[
                "spec.workspace.kind",
                "Unsupported value: \"Temporary\"",
                "\"Ephemeral\"",
                "\"Persistent\"",
            ],
        },
        Invalid {
            case: "existingClaim with an Ephemeral workspace (CEL)",
            name: "claim-ephemeral",
            spec: json!({"workspace": {"kind": "Ephemeral", "existingClaim": "data"}}),
            expect: &[
                "spec.workspace.existingClaim",
                "workspace.existingClaim is only allowed when workspace.kind is Persistent",
            ],
        },
        Invalid {
            case: "Persistent without size or existingClaim (CEL)",
            name: "persistent-no-size",
            spec: json!({"workspace": {"kind": "Persistent"}}),
            expect: &[
                "spec.workspace.size",
                "workspace.size is required when workspace.kind is Persistent",
            ],
        },
        Invalid {
            case: "storageClassName on an Ephemeral workspace (CEL)",
            name: "class-ephemeral",
            spec: json!({"workspace": {"kind": "Ephemeral", "storageClassName": "fast"}}),
            expect: &[
                "spec.workspace",
                "only allowed when workspace.kind is Persistent",
            ],
        },
        Invalid {
            case: "idleTimeout longer than maxLifetime (CEL across fields)",
            name: "idle-over-lifetime",
            spec: json!({"lifecycle": {"idleTimeout": "2h", "maxLifetime": "1h"}}),
            expect: &[
                "spec.lifecycle.idleTimeout",
                "lifecycle.idleTimeout must not be longer than lifecycle.maxLifetime",
            ],
        },
        Invalid {
            case: "idleTimeout that is not a duration (pattern)",
            name: "idle-not-duration",
            spec: json!({"lifecycle": {"idleTimeout": "soon"}}),
            expect: &["spec.lifecycle.idleTimeout", "should match"],
        },
        Invalid {
            case: "zero idleTimeout (CEL)",
            name: "idle-zero",
            spec: json!({"lifecycle": {"idleTimeout": "0s"}}),
            expect: &[
                "spec.lifecycle.idleTimeout",
                "lifecycle.idleTimeout must be at least 1s",
            ],
        },
        Invalid {
            case: "checkpoint timeout over an hour (CEL)",
            name: "checkpoint-timeout-long",
            spec: json!({"lifecycle": {"checkpoint": {"timeout": "2h"}}}),
            expect: &[
                "spec.lifecycle.checkpoint.timeout",
                "lifecycle.checkpoint.timeout must be between 1s and 1h",
            ],
        },
        Invalid {
            case: "zero checkpoint interval (CEL)",
            name: "checkpoint-interval-zero",
            spec: json!({"lifecycle": {"checkpoint": {"interval": "0s"}}}),
            expect: &[
                "spec.lifecycle.checkpoint.interval",
                "lifecycle.checkpoint.interval must be at least 1s",
            ],
        },
        Invalid {
            case: "egress cidr that is not a CIDR (CEL isCIDR)",
            name: "bad-cidr",
            spec: json!({"network": {"egress": [{"cidr": "10.0.0.300/8", "ports": [443]}]}}),
            expect: &[
                "spec.network.egress[0].cidr",
                "cidr must be a valid CIDR such as 10.0.0.0/8",
            ],
        },
        Invalid {
            case: "egress port out of range (maximum)",
            name: "bad-port",
            spec: json!({"network": {"egress": [{"cidr": "10.0.0.0/8", "ports": [70000]}]}}),
            expect: &[
                "spec.network.egress[0].ports[0]",
                "should be less than or equal to 65535",
            ],
        },
        Invalid {
            case: "unknown imagePullPolicy (enum)",
            name: "bad-pull-policy",
            spec: json!({"imagePullPolicy": "Sometimes"}),
            expect: &["spec.imagePullPolicy", "Unsupported value: \"Sometimes\""],
        },
        Invalid {
            case: "database without secretRef (required)",
            name: "db-no-secret",
            spec: json!({"database": {}}),
            expect: &["spec.database.secretRef", "Required value"],
        },
        Invalid {
            case: "name that is not a DNS-1035 label (CEL on metadata.name)",
            name: "9lives",
            spec: json!({}),
            expect: &["metadata.name must be a DNS-1035 label"],
        },
    ]
}

#[tokio::test]
async fn invalid_specs_are_rejected_with_readable_messages() {
    let cp = ControlPlane::shared().await.expect("control plane");
    install_crd(cp).await;
    cp.with_temp_ns(
        "crd-invalid",
        PodSecurity::Unlabelled,
        |client, ns| async move {
            let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &rsession_resource());
            let cases = invalid_specs();
            assert!(cases.len() >= 8);
            for case in cases {
                let err = api
                    .create(
                        &PostParams::default(),
                        &rsession(case.name, case.spec.clone()),
                    )
                    .await
                    .expect_err(case.case);
                let kube::Error::Api(status) = err else {
                    panic!("{}: expected an API status, got {err}", case.case)
                };
                assert_eq!(status.code, 422, "{}: {status:?}", case.case);
                assert_eq!(status.reason, "Invalid", "{}: {status:?}", case.case);
                for words in case.expect {
                    assert!(
                        status.message.contains(words),
                        "{}: {words:?} not in {:?}",
                        case.case,
                        status.message
                    );
                }
            }
            // The same specs without the fault are accepted, so each rejection above is the rule
            // under test and not something else in the object.
            for (name, spec) in [
                (
                    "ok-persistent",
                    json!({"workspace": {"kind": "Persistent", "size": "1Gi"}}),
                ),
                (
                    "ok-claim",
                    json!({"workspace": {"kind": "Persistent", "existingClaim": "data"}}),
                ),
                (
                    "ok-lifecycle",
                    json!({"lifecycle": {"idleTimeout": "30m", "maxLifetime": "1h"}}),
                ),
                (
                    "ok-egress",
                    json!({"network": {"egress": [{"cidr": "10.0.0.0/8", "ports": [443]}]}}),
                ),
                ("ok-defaults", json!({})),
            ] {
                api.create(&PostParams::default(), &rsession(name, spec))
                    .await
                    .unwrap_or_else(|e| panic!("{name} should be valid: {e}"));
            }
        },
    )
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn immutable_workspace_fields_cannot_change() {
    let cp = ControlPlane::shared().await.expect("control plane");
    install_crd(cp).await;
    cp.with_temp_ns("crd-immutable", PodSecurity::Unlabelled, |client, ns| async move {
        let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &rsession_resource());
        let apply = PatchParams::apply("cluster-crd-test");
        let original = rsession("keep", json!({"workspace": {"kind": "Persistent", "size": "1Gi"}}));
        api.patch("keep", &apply, &Patch::Apply(&original)).await.expect("create");
        for (spec, words) in [
            (json!({"workspace": {"kind": "Ephemeral"}}), "workspace.kind is immutable"),
            (json!({"workspace": {"kind": "Persistent", "size": "2Gi"}}), "workspace.size is immutable"),
            (
                json!({"workspace": {"kind": "Persistent", "size": "1Gi", "storageClassName": "fast"}}),
                "workspace.storageClassName is immutable",
            ),
        ] {
            let err = api
                .patch("keep", &apply, &Patch::Apply(&rsession("keep", spec.clone())))
                .await
                .expect_err("immutable field changed");
            assert!(err.to_string().contains(words), "{spec}: {err}");
        }
        // A mutable field still changes.
        let suspended = rsession(
            "keep",
            json!({"workspace": {"kind": "Persistent", "size": "1Gi"}, "lifecycle": {"suspend": true}}),
        );
        api.patch("keep", &apply, &Patch::Apply(&suspended)).await.expect("suspend is mutable");
    })
    .await
    .expect("temp namespace");
}

fn pool_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "rsession.dev",
        "v1alpha1",
        "RSessionPool",
    ))
}

#[tokio::test]
async fn pool_rules_are_enforced_and_explained_by_the_apiserver() {
    let cp = ControlPlane::shared().await.expect("control plane");
    install_crd(cp).await;
    let explained = cp
        .kubectl(&["explain", "rsessionpool.spec"])
        .await
        .expect("kubectl explain rsessionpool.spec");
    for words in ["replicas", "template", "scale subresource"] {
        assert!(
            collapse(&explained).contains(words),
            "{words:?} in {explained}"
        );
    }
    cp.with_temp_ns("crd-pool", PodSecurity::Unlabelled, |client, ns| async move {
        let sessions: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &rsession_resource());
        let pools: Api<DynamicObject> = Api::namespaced_with(client, &ns, &pool_resource());
        let reject = |err: kube::Error, words: &str, case: &str| {
            let kube::Error::Api(status) = err else {
                panic!("{case}: expected an API status, got {err}")
            };
            assert_eq!(status.code, 422, "{case}: {status:?}");
            assert!(status.message.contains(words), "{case}: {words:?} not in {:?}", status.message);
        };
        for (case, spec, words) in [
            (
                "pool-with-image",
                json!({"poolRef": {"name": "p"}, "image": "r:1"}),
                "the pod comes from the pool's template",
            ),
            (
                "pool-persistent",
                json!({"poolRef": {"name": "p"}, "workspace": {"kind": "Persistent", "size": "1Gi"}}),
                "needs an Ephemeral workspace",
            ),
        ] {
            let err = sessions
                .create(&PostParams::default(), &rsession(case, spec))
                .await
                .expect_err(case);
            reject(err, words, case);
        }
        // poolRef can be neither added nor changed after creation.
        let apply = PatchParams::apply("cluster-crd-test");
        sessions
            .patch("later", &apply, &Patch::Apply(&rsession("later", json!({}))))
            .await
            .expect("create without a pool");
        let err = sessions
            .patch("later", &apply, &Patch::Apply(&rsession("later", json!({"poolRef": {"name": "p"}}))))
            .await
            .expect_err("poolRef added");
        reject(err, "spec.poolRef is immutable", "poolRef added");

        let pool = |name: &str, spec: Value| {
            let mut o = DynamicObject::new(name, &pool_resource());
            o.data = json!({ "spec": spec });
            o
        };
        for (case, name, spec, words) in [
            ("too-many", "big", json!({"replicas": 201}), "spec.replicas"),
            ("negative", "neg", json!({"replicas": -1}), "spec.replicas"),
            ("long-name", "a-pool-name-that-is-much-longer-than-forty-chars", json!({"replicas": 1}), "at most 40 characters"),
        ] {
            let err = pools.create(&PostParams::default(), &pool(name, spec)).await.expect_err(case);
            reject(err, words, case);
        }
        // Without the fault: accepted.
        pools
            .create(&PostParams::default(), &pool("ok", json!({"replicas": 3, "template": {"image": "r:1"}})))
            .await
            .expect("a valid pool");
        sessions
            .create(&PostParams::default(), &rsession("pooled", json!({"poolRef": {"name": "ok"}, "lifecycle": {"idleTimeout": "10m"}})))
            .await
            .expect("a valid pooled session");
    })
    .await
    .expect("temp namespace");
}
