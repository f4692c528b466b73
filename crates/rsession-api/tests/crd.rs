//! The committed CRD YAML matches the Rust types, and key parts of the schema are pinned.

use kube::CustomResourceExt;
use rsession_api::RSession;
use serde_json::Value;

fn schema() -> Value {
    let crd = RSession::crd();
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("the derived CRD has an openAPIV3Schema"),
    )
    .expect("schema serialises")
}

fn rules(v: &Value) -> Vec<String> {
    v["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let generated = rsession_api::crd_yaml().expect("CRD renders as YAML");
    // The Helm chart carries its own copy (Helm installs only what is inside the chart).
    for copy in ["crds", "charts/rsession/crds"] {
        let path = format!(
            "{}/../../{copy}/rsession.dev_rsessions.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            committed == generated,
            "{copy}/rsession.dev_rsessions.yaml is stale: run `cargo run -p rsession-api --bin crdgen > crds/rsession.dev_rsessions.yaml && cp crds/rsession.dev_rsessions.yaml charts/rsession/crds/`"
        );
    }
    let chart_crds: Vec<_> = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../charts/rsession/crds"
    ))
    .expect("the chart has a crds folder")
    .map(|e| e.expect("readable entry").file_name())
    .collect();
    assert_eq!(
        chart_crds,
        ["rsession.dev_rsessions.yaml"],
        "the chart installs exactly the generated CRD"
    );
}

#[test]
fn crd_yaml_parses_back_to_the_same_crd() {
    let yaml = rsession_api::crd_yaml().expect("CRD renders as YAML");
    let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_saphyr::from_str(&yaml).expect("YAML parses as a CustomResourceDefinition");
    assert_eq!(parsed, RSession::crd());
}

#[test]
fn crd_names_scope_and_subresources() {
    let crd = RSession::crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("rsessions.rsession.dev"));
    assert_eq!(crd.spec.group, "rsession.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "RSession");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["rsess".to_owned()][..])
    );
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.served && v.storage);
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status subresource"
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .as_ref()
        .expect("print columns")
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Phase", "Ready", "Age", "Idle", "Endpoint"]);
}

#[test]
fn every_schema_property_has_a_description() {
    fn walk(path: &str, v: &Value, missing: &mut Vec<String>) {
        if let Some(props) = v["properties"].as_object() {
            for (name, prop) in props {
                let p = format!("{path}.{name}");
                if prop["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(p.clone());
                }
                walk(&p, prop, missing);
            }
        }
        if v["items"].is_object() {
            walk(&format!("{path}[]"), &v["items"], missing);
        }
    }
    let schema = schema();
    let mut missing = Vec::new();
    walk("spec", &schema["properties"]["spec"], &mut missing);
    walk("status", &schema["properties"]["status"], &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn schema_pins_defaults_patterns_and_cel_rules() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    let lifecycle = &spec["lifecycle"];
    assert_eq!(lifecycle["properties"]["idleTimeout"]["default"], "3600s");
    assert_eq!(lifecycle["properties"]["maxLifetime"]["default"], "86400s");
    assert_eq!(
        lifecycle["properties"]["idleTimeout"]["pattern"],
        rsession_api::v1alpha1::DURATION_PATTERN
    );
    assert!(
        rules(lifecycle)
            .contains(&"duration(self.idleTimeout) <= duration(self.maxLifetime)".to_owned())
    );

    let workspace = &spec["workspace"];
    assert_eq!(
        workspace["properties"]["kind"]["enum"],
        serde_json::json!(["Ephemeral", "Persistent"])
    );
    assert_eq!(workspace["properties"]["kind"]["default"], "Ephemeral");
    assert_eq!(rules(&workspace["properties"]["kind"]), ["self == oldSelf"]);
    let ws_rules = rules(workspace);
    assert!(
        ws_rules
            .iter()
            .any(|r| r.contains("existingClaim") && r.contains("'Persistent'"))
    );
    assert!(ws_rules.iter().any(|r| r.contains("has(self.size)")));

    assert_eq!(
        rules(&spec["network"]["properties"]["egress"]["items"]["properties"]["cidr"]),
        ["isCIDR(self)"]
    );
    let ports = &spec["network"]["properties"]["egress"]["items"]["properties"]["ports"]["items"];
    assert_eq!(
        (ports["minimum"].as_f64(), ports["maximum"].as_f64()),
        (Some(1.0), Some(65535.0))
    );

    let conditions = &s["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
}
