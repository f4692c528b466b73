//! Every sample in config/samples/ parses as the Rust types, so a renamed field breaks this test
//! rather than a user's `kubectl apply`.

use rsession_api::{RSession, WorkspaceKind};
use serde_json::Value;

fn sessions(file: &str) -> Vec<RSession> {
    let path = format!("{}/../../config/samples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    docs.into_iter()
        .filter(|d| d["kind"] == "RSession")
        .map(|d| serde_json::from_value(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

#[test]
fn basic_sample_is_ephemeral() {
    let s = sessions("rsession-basic.yaml");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].spec.workspace.kind, WorkspaceKind::Ephemeral);
    assert_eq!(s[0].spec.lifecycle.idle_timeout.to_string(), "3600s");
}

#[test]
fn persistent_sample_has_a_sized_persistent_workspace() {
    let s = sessions("rsession-persistent.yaml");
    assert_eq!(s[0].spec.workspace.kind, WorkspaceKind::Persistent);
    assert!(s[0].spec.workspace.size.is_some());
}

#[test]
fn omop_sample_references_its_secret() {
    let s = sessions("rsession-omop.yaml");
    assert_eq!(
        s[0].spec
            .database
            .as_ref()
            .map(|d| d.secret_ref.name.as_str()),
        Some("omop-cdm")
    );
}

#[test]
fn egress_sample_has_an_allow_list() {
    let s = sessions("rsession-egress.yaml");
    let egress = &s[0].spec.network.as_ref().expect("network").egress;
    assert_eq!(egress.len(), 2);
    assert_eq!(egress[0].ports, [443]);
}
