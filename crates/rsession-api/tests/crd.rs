//! The committed CRD YAML matches the Rust types, and key parts of both schemas (RSession and
//! RSessionPool) are pinned.

use kube::CustomResourceExt;
use rsession_api::{RSession, RSessionPool};
use serde_json::Value;

/// The `openAPIV3Schema` of the CRD's only version, as JSON.
fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
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

fn schema() -> Value {
    schema_of::<RSession>()
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

/// Paths under `spec` and `status` whose property has no (or an empty) description.
fn undescribed(schema: &Value) -> Vec<String> {
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
        if v["additionalProperties"].is_object() {
            walk(&format!("{path}{{}}"), &v["additionalProperties"], missing);
        }
    }
    let mut missing = Vec::new();
    for top in ["spec", "status"] {
        walk(top, &schema["properties"][top], &mut missing);
    }
    missing
}

fn print_columns<K: CustomResourceExt>() -> Vec<(String, String)> {
    K::crd().spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .expect("print columns")
        .iter()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect()
}

#[test]
fn committed_crd_yaml_matches_the_rust_types() {
    let files = rsession_api::crd_files().expect("CRDs render as YAML");
    let regenerate = "run `cargo run -q -p rsession-api --bin crdgen > crds/rsession.dev_rsessions.yaml && \
        cargo run -q -p rsession-api --bin crdgen rsessionpools > crds/rsession.dev_rsessionpools.yaml && \
        cp crds/rsession.dev_rsession*.yaml charts/rsession/crds/`";
    // The Helm chart carries its own copy (Helm installs only what is inside the chart).
    for copy in ["crds", "charts/rsession/crds"] {
        for (name, generated) in &files {
            let path = format!("{}/../../{copy}/{name}", env!("CARGO_MANIFEST_DIR"));
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{path}: {e}: {regenerate}"));
            assert!(
                committed == *generated,
                "{copy}/{name} is stale: {regenerate}"
            );
        }
    }
    let mut chart_crds: Vec<String> = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../charts/rsession/crds"
    ))
    .expect("the chart has a crds folder")
    .map(|e| {
        e.expect("readable entry")
            .file_name()
            .to_string_lossy()
            .into_owned()
    })
    .collect();
    chart_crds.sort();
    let mut want: Vec<String> = files.iter().map(|(name, _)| (*name).to_owned()).collect();
    want.sort();
    assert_eq!(
        chart_crds, want,
        "the chart installs exactly the generated CRDs"
    );
}

#[test]
fn crd_files_name_each_crd_after_its_plural() {
    let files = rsession_api::crd_files().expect("CRDs render as YAML");
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "rsession.dev_rsessions.yaml",
            "rsession.dev_rsessionpools.yaml"
        ]
    );
    for (name, yaml) in &files {
        let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            format!("{}_{}.yaml", parsed.spec.group, parsed.spec.names.plural),
            *name
        );
    }
}

#[test]
fn crd_yaml_parses_back_to_the_same_crd() {
    type Crd =
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let yaml = rsession_api::crd_yaml().expect("CRD renders as YAML");
    let parsed: Crd =
        serde_saphyr::from_str(&yaml).expect("YAML parses as a CustomResourceDefinition");
    assert_eq!(parsed, RSession::crd());
    let yaml = rsession_api::pool_crd_yaml().expect("pool CRD renders as YAML");
    let parsed: Crd =
        serde_saphyr::from_str(&yaml).expect("YAML parses as a CustomResourceDefinition");
    assert_eq!(parsed, RSessionPool::crd());
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
    let subresources = v.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some(), "status subresource");
    assert!(
        subresources.scale.is_none(),
        "RSession has no scale subresource"
    );
    let columns: Vec<String> = print_columns::<RSession>()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        columns,
        ["Phase", "Ready", "Age", "Idle", "Warm", "Endpoint"]
    );
    assert!(
        print_columns::<RSession>().contains(&("Warm".into(), ".status.claim.warm".into())),
        "the Warm column shows status.claim.warm"
    );
}

#[test]
fn pool_crd_names_scope_and_subresources() {
    let crd = RSessionPool::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("rsessionpools.rsession.dev")
    );
    assert_eq!(crd.spec.group, "rsession.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    let names = &crd.spec.names;
    assert_eq!(names.kind, "RSessionPool");
    assert_eq!(names.plural, "rsessionpools");
    assert_eq!(names.singular.as_deref(), Some("rsessionpool"));
    assert_eq!(
        names.short_names.as_deref(),
        Some(&["rspool".to_owned()][..])
    );
    // `kubectl get rsession` lists sessions and pools together.
    assert_eq!(
        names.categories.as_deref(),
        Some(&["rsession".to_owned()][..])
    );
    assert_eq!(
        RSession::crd().spec.names.categories,
        names.categories,
        "both kinds share the category"
    );
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(v.served && v.storage);
    let subresources = v.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some(), "status subresource");
    let scale = subresources.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    assert_eq!(
        print_columns::<RSessionPool>(),
        [
            ("Desired", ".spec.replicas"),
            ("Ready", ".status.readyReplicas"),
            ("Claimed", ".status.claimedReplicas"),
            ("Age", ".metadata.creationTimestamp"),
        ]
        .map(|(n, p)| (n.to_owned(), p.to_owned()))
    );
}

#[test]
fn every_schema_property_has_a_description() {
    let missing = undescribed(&schema());
    assert!(
        missing.is_empty(),
        "RSession fields without a description: {missing:?}"
    );
}

#[test]
fn every_pool_schema_property_has_a_description() {
    let schema = schema_of::<RSessionPool>();
    // The walk must reach the template's nested fields, or it proves nothing.
    assert!(
        schema
            .pointer("/properties/spec/properties/template/properties/network/properties/egress")
            .is_some(),
        "the pool template carries the RSession network field"
    );
    let missing = undescribed(&schema);
    assert!(
        missing.is_empty(),
        "RSessionPool fields without a description: {missing:?}"
    );
}

#[test]
fn pool_schema_pins_replicas_and_status() {
    let s = schema_of::<RSessionPool>();
    let spec = &s["properties"]["spec"];
    let replicas = &spec["properties"]["replicas"];
    assert_eq!(replicas["type"], "integer");
    assert_eq!(
        (replicas["minimum"].as_f64(), replicas["maximum"].as_f64()),
        (Some(0.0), Some(200.0))
    );
    assert_eq!(spec["required"], serde_json::json!(["replicas"]));
    // The template holds only the pod-shaping fields of an RSession spec.
    let mut template: Vec<&str> = spec["properties"]["template"]["properties"]
        .as_object()
        .expect("template properties")
        .keys()
        .map(String::as_str)
        .collect();
    template.sort_unstable();
    assert_eq!(
        template,
        [
            "database",
            "image",
            "imagePullPolicy",
            "network",
            "nodeSelector",
            "resources",
            "runtimeClassName",
            "tolerations"
        ]
    );
    let status = &s["properties"]["status"]["properties"];
    assert_eq!(status["selector"]["type"], "string");
    let conditions = &status["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    assert!(
        rules(&s)
            .iter()
            .any(|r| r.contains("self.metadata.name.size() <= 40")),
        "pool names leave room for the pod name suffix"
    );
}

#[test]
fn pool_ref_and_claim_are_in_the_rsession_schema() {
    let s = schema();
    let pool_ref = &s["properties"]["spec"]["properties"]["poolRef"];
    assert_eq!(pool_ref["required"], serde_json::json!(["name"]));
    let name = &pool_ref["properties"]["name"];
    assert_eq!(
        (name["minLength"].as_u64(), name["maxLength"].as_u64()),
        (Some(1), Some(40))
    );
    let claim = &s["properties"]["status"]["properties"]["claim"]["properties"];
    for field in ["pool", "warm", "podName", "claimedAt", "bindMilliseconds"] {
        assert!(claim[field].is_object(), "status.claim.{field}");
    }
    // Whole-object rules: the pod comes from the pool, Ephemeral only, poolRef immutable.
    let root = rules(&s);
    let pod_fields = [
        "image",
        "imagePullPolicy",
        "resources",
        "network",
        "database",
        "runtimeClassName",
        "nodeSelector",
        "tolerations",
    ];
    assert!(
        root.iter().any(|r| r.starts_with("!has(self.spec.poolRef)")
            && pod_fields
                .iter()
                .all(|f| r.contains(&format!("!has(self.spec.{f})")))),
        "a rule forbids every pod field next to poolRef: {root:#?}"
    );
    assert!(
        root.contains(
            &"!has(self.spec.poolRef) || self.spec.workspace.kind == 'Ephemeral'".to_owned()
        ),
        "a rule limits poolRef to Ephemeral workspaces: {root:#?}"
    );
    assert!(
        root.iter().any(
            |r| r.contains("has(self.spec.poolRef) == has(oldSelf.spec.poolRef)")
                && r.contains("self.spec.poolRef.name == oldSelf.spec.poolRef.name")
        ),
        "a transition rule keeps poolRef immutable: {root:#?}"
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
