//! The CRD's CEL rules (`x-kubernetes-validations`) evaluated client-side with kube's CEL
//! validator against the generated schema: each rule rejects what it should, with its message,
//! and accepts the valid counterpart. The real apiserver tests (rsession-operator
//! `tests/cluster_*.rs`) check the same rules end to end.

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use rsession_api::RSession;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = RSession::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("json")
}

fn object(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "rsession.dev/v1alpha1", "kind": "RSession",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": spec,
    })
}

/// A spec with the schema defaults the apiserver would fill in.
fn defaulted(mut spec: Value) -> Value {
    let ws = spec["workspace"].as_object_mut().map(|_| ()).is_some();
    if !ws {
        spec["workspace"] = json!({"kind": "Ephemeral", "retainPolicy": "Delete"});
    }
    if spec["lifecycle"].is_null() {
        spec["lifecycle"] = json!({});
    }
    for (k, v) in [("idleTimeout", "3600s"), ("maxLifetime", "86400s")] {
        if spec["lifecycle"][k].is_null() {
            spec["lifecycle"][k] = json!(v);
        }
    }
    spec
}

fn errors(name: &str, spec: Value, old: Option<Value>) -> Vec<String> {
    let new = object(name, defaulted(spec));
    let old = old.map(|o| object(name, defaulted(o)));
    match Validator::new().validate(&schema(), &new, old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

fn assert_rejected(name: &str, spec: Value, old: Option<Value>, message: &str) {
    let errs = errors(name, spec, old);
    assert!(
        errs.iter().any(|e| e.contains(message)),
        "expected {message:?} in {errs:?}"
    );
}

#[test]
fn valid_specs_pass() {
    assert_eq!(errors("basic", json!({}), None), Vec::<String>::new());
    let persistent = json!({"workspace": {"kind": "Persistent", "size": "5Gi", "retainPolicy": "Retain"},
                            "lifecycle": {"idleTimeout": "30m", "maxLifetime": "8h"},
                            "network": {"egress": [{"cidr": "10.0.0.0/8", "ports": [443]}]}});
    assert_eq!(errors("analysis", persistent, None), Vec::<String>::new());
}

#[test]
fn existing_claim_requires_a_persistent_workspace() {
    assert_rejected(
        "s",
        json!({"workspace": {"kind": "Ephemeral", "existingClaim": "x", "retainPolicy": "Delete"}}),
        None,
        "existingClaim is only allowed when workspace.kind is Persistent",
    );
}

#[test]
fn persistent_workspace_needs_a_size_or_an_existing_claim() {
    assert_rejected(
        "s",
        json!({"workspace": {"kind": "Persistent", "retainPolicy": "Delete"}}),
        None,
        "workspace.size is required",
    );
    assert_eq!(
        errors(
            "s",
            json!({"workspace": {"kind": "Persistent", "existingClaim": "x", "retainPolicy": "Delete"}}),
            None
        ),
        Vec::<String>::new()
    );
}

#[test]
fn idle_timeout_may_not_exceed_max_lifetime() {
    assert_rejected(
        "s",
        json!({"lifecycle": {"idleTimeout": "2h", "maxLifetime": "1h"}}),
        None,
        "idleTimeout must not be longer than lifecycle.maxLifetime",
    );
    assert_eq!(
        errors(
            "s",
            json!({"lifecycle": {"idleTimeout": "1h30m", "maxLifetime": "2h"}}),
            None
        ),
        Vec::<String>::new()
    );
}

#[test]
fn workspace_kind_is_immutable() {
    let old = json!({"workspace": {"kind": "Ephemeral", "retainPolicy": "Delete"}});
    let new = json!({"workspace": {"kind": "Persistent", "size": "1Gi", "retainPolicy": "Delete"}});
    assert_rejected("s", new, Some(old), "workspace.kind is immutable");
}

#[test]
fn workspace_size_is_immutable_but_retain_policy_is_not() {
    let old = json!({"workspace": {"kind": "Persistent", "size": "1Gi", "retainPolicy": "Delete"}});
    assert_rejected(
        "s",
        json!({"workspace": {"kind": "Persistent", "size": "2Gi", "retainPolicy": "Delete"}}),
        Some(old.clone()),
        "workspace.size is immutable",
    );
    assert_eq!(
        errors(
            "s",
            json!({"workspace": {"kind": "Persistent", "size": "1Gi", "retainPolicy": "Retain"}}),
            Some(old)
        ),
        Vec::<String>::new()
    );
}

#[test]
fn egress_cidr_must_be_a_cidr() {
    assert_rejected(
        "s",
        json!({"network": {"egress": [{"cidr": "10.0.0.300/8"}]}}),
        None,
        "cidr must be a valid CIDR",
    );
}

#[test]
fn session_name_must_fit_a_service_name() {
    assert_rejected(
        &"a".repeat(49),
        json!({}),
        None,
        "metadata.name must be a DNS-1035 label",
    );
    assert_rejected(
        "9lives",
        json!({}),
        None,
        "metadata.name must be a DNS-1035 label",
    );
}

#[test]
fn pool_ref_leaves_the_pod_fields_to_the_pool() {
    let pool = json!({"name": "warm"});
    assert_eq!(
        errors("s", json!({"poolRef": pool}), None),
        Vec::<String>::new()
    );
    for (field, value) in [
        ("image", json!("r:4")),
        ("resources", json!({"limits": {"cpu": "1"}})),
        ("network", json!({"egress": [{"cidr": "10.0.0.0/8"}]})),
        ("runtimeClassName", json!("gvisor")),
        ("nodeSelector", json!({"pool": "r"})),
    ] {
        let mut spec = json!({"poolRef": pool});
        spec[field] = value;
        assert_rejected(
            "s",
            spec,
            None,
            "with spec.poolRef the pod comes from the pool's template",
        );
    }
}

#[test]
fn pool_ref_needs_an_ephemeral_workspace() {
    assert_rejected(
        "s",
        json!({"poolRef": {"name": "warm"},
               "workspace": {"kind": "Persistent", "size": "1Gi", "retainPolicy": "Delete"}}),
        None,
        "spec.poolRef needs an Ephemeral workspace",
    );
}

#[test]
fn pool_ref_is_immutable() {
    let with = json!({"poolRef": {"name": "warm"}});
    assert_rejected(
        "s",
        json!({"poolRef": {"name": "other"}}),
        Some(with.clone()),
        "spec.poolRef is immutable",
    );
    assert_rejected(
        "s",
        json!({}),
        Some(with.clone()),
        "spec.poolRef is immutable",
    );
    assert_rejected(
        "s",
        with.clone(),
        Some(json!({})),
        "spec.poolRef is immutable",
    );
    assert_eq!(errors("s", with.clone(), Some(with)), Vec::<String>::new());
}
