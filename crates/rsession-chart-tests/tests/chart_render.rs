//! The chart and the kustomize install, rendered with the cached `helm` and `kubectl`
//! (`e2e/local/build-binaries.sh helm kubectl`): lint, deterministic output, CRDs and RBAC
//! identical to their sources, restricted pods, kustomize rendering the same objects, and the
//! configuration and flags accepted by the binaries the chart runs.

use std::collections::BTreeSet;

use assert_json_diff::{CompareMode, Config, NumericMode, assert_json_matches_no_panic};
use clap::{CommandFactory, Parser};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use rsession_chart_tests::{
    RELEASE_NAMESPACE, Tools, chart_dir, kustomize, object_key, of_kind, parse_manifests, rbac,
    render_chart, render_kustomize, repo_root, restricted, strip_helm_metadata, typed,
};
use serde_json::Value;

/// Values files the render tests cover: the defaults, the local cluster's values, and a
/// high-availability variant with a namespace-scoped operator.
const VARIANTS: &[(&str, &[&str])] = &[
    ("defaults", &[]),
    (
        "ci/local-values.yaml",
        &["-f", "charts/rsession/ci/local-values.yaml"],
    ),
    (
        "two operator replicas watching the sessions namespace, two frontends",
        &[
            "--set",
            "operator.replicaCount=2",
            "--set",
            "operator.watchNamespace=rsession-sessions",
            "--set",
            "mcp.replicaCount=2",
        ],
    ),
    (
        "a warm pool of three with a template",
        &[
            "--set",
            "pool.enabled=true",
            "--set",
            "pool.replicas=3",
            "--set",
            "pool.template.image=ghcr.io/rsession/r-sandbox:0.1.0",
        ],
    ),
];

fn tools() -> Tools {
    Tools::locate().unwrap_or_else(|e| panic!("{e}"))
}

fn render(tools: &Tools, extra: &[&str]) -> Vec<Value> {
    let text = render_chart(tools, extra).unwrap_or_else(|e| panic!("{e}"));
    parse_manifests("helm template", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o.get("kind").and_then(Value::as_str) == Some(kind)
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

#[test]
fn helm_lint_is_clean_in_strict_mode() {
    let tools = tools();
    for (label, extra) in VARIANTS {
        let mut args = vec![
            "lint",
            "--strict",
            "charts/rsession",
            "--namespace",
            RELEASE_NAMESPACE,
        ];
        args.extend_from_slice(extra);
        let out = tools
            .helm(&args)
            .unwrap_or_else(|e| panic!("helm lint ({label}): {e}"));
        assert!(
            out.contains("0 chart(s) failed"),
            "helm lint ({label}):\n{out}"
        );
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "helm lint ({label}):\n{out}"
        );
    }
}

#[test]
fn helm_template_is_byte_identical_from_run_to_run() {
    let tools = tools();
    for (label, extra) in VARIANTS {
        let first = render_chart(&tools, extra).unwrap_or_else(|e| panic!("{e}"));
        let second = render_chart(&tools, extra).unwrap_or_else(|e| panic!("{e}"));
        assert!(!first.trim().is_empty(), "{label}: empty render");
        assert!(
            first == second,
            "{label}: two renders differ (random or time-dependent values?)"
        );
    }
    // Nothing in the templates may draw on randomness or the clock.
    let forbidden = [
        "randAlpha",
        "randNumeric",
        "randAscii",
        "randBytes",
        "uuidv4",
        "now",
        "genCA",
        "genPrivateKey",
        "genSelfSignedCert",
        "genSignedCert",
        "lookup",
    ];
    for entry in std::fs::read_dir(chart_dir().join("templates")).expect("templates folder") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("template text");
        for word in forbidden {
            let used = text.match_indices(word).any(|(i, _)| {
                let before = text[..i].chars().next_back().unwrap_or(' ');
                let after = text[i + word.len()..].chars().next().unwrap_or(' ');
                !before.is_alphanumeric() && !after.is_alphanumeric()
            });
            assert!(!used, "{} uses {word}", path.display());
        }
    }
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let names = |dir: std::path::PathBuf| -> BTreeSet<String> {
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            // crds/ may hold a kustomization.yaml for config/crd; Helm would read it as a CRD.
            .filter(|name| !name.starts_with("kustomization."))
            .collect()
    };
    let generated = names(repo_root().join("crds"));
    let in_chart = names(chart_dir().join("crds"));
    assert_eq!(
        in_chart, generated,
        "charts/rsession/crds must hold exactly the files of crds/"
    );
    for name in generated {
        let a = std::fs::read(repo_root().join("crds").join(&name)).expect("crd");
        let b = std::fs::read(chart_dir().join("crds").join(&name)).expect("chart crd");
        assert!(
            a == b,
            "charts/rsession/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/rsession/crds/"
        );
    }
}

#[test]
fn operator_rbac_matches_config_rbac() {
    let tools = tools();
    let chart = render(&tools, &[]);
    let kustomized = parse_manifests(
        "config/rbac",
        &render_kustomize(&tools, "config/rbac").unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut compared = 0;
    for object in &kustomized {
        let key = object_key(object);
        let chart_object = chart
            .iter()
            .find(|o| object_key(o) == key)
            .unwrap_or_else(|| panic!("config/rbac has {key}; the chart does not render it"));
        match object["kind"].as_str() {
            Some("ClusterRole" | "Role") => {
                let want = rbac::grants_of(object).unwrap_or_else(|e| panic!("{e}"));
                let have = rbac::grants_of(chart_object).unwrap_or_else(|e| panic!("{e}"));
                assert!(
                    want == have,
                    "{key}: chart rules differ from config/rbac (- config/rbac only, + chart only):\n{}",
                    rbac::diff(&want, &have)
                );
                compared += 1;
            }
            Some("ClusterRoleBinding" | "RoleBinding") => {
                for field in ["roleRef", "subjects"] {
                    assert_eq!(object[field], chart_object[field], "{key}: {field} differs");
                }
                compared += 1;
            }
            _ => {}
        }
    }
    assert!(
        compared >= 4,
        "expected the operator's ClusterRole, Role and their bindings in config/rbac, compared {compared}"
    );
}

#[test]
fn operator_rbac_grants_what_the_controllers_use() {
    let chart = render(&tools(), &[]);
    let role: ClusterRole =
        typed(find(&chart, "ClusterRole", "rsession-operator")).expect("ClusterRole");
    let grants = rbac::grants(&role.rules.unwrap_or_default());
    let want = rbac::operator_grants();
    assert_eq!(
        grants,
        want,
        "operator ClusterRole (- pinned only, + chart only):\n{}",
        rbac::diff(&want, &grants)
    );
}

#[test]
fn user_cluster_role_covers_sessions_and_pools() {
    for extra in [
        &[][..],
        &["--set", "rbac.userClusterRole.aggregateToEdit=true"][..],
    ] {
        let chart = render(&tools(), extra);
        let object = find(&chart, "ClusterRole", "rsession-user");
        let role: ClusterRole = typed(object).expect("ClusterRole");
        let grants = rbac::grants(&role.rules.unwrap_or_default());
        let want = rbac::user_grants();
        assert_eq!(
            grants,
            want,
            "{extra:?}: user ClusterRole (- pinned only, + chart only):\n{}",
            rbac::diff(&want, &grants)
        );
        let aggregated = object
            .pointer("/metadata/labels/rbac.authorization.k8s.io~1aggregate-to-edit")
            .is_some();
        assert_eq!(
            aggregated,
            !extra.is_empty(),
            "{extra:?}: aggregate-to-edit label"
        );
    }
}

#[test]
fn mcp_frontend_rbac_is_least_privilege() {
    let chart = render(&tools(), &[]);
    let role: Role = typed(find(&chart, "Role", "rsession-mcp")).expect("Role");
    assert_eq!(
        role.metadata.namespace.as_deref(),
        Some("rsession-sessions"),
        "the frontend's rights are limited to the sessions namespace"
    );
    let grants = rbac::grants(&role.rules.unwrap_or_default());
    // RSessions, the RSessionPool a create_session names (read only), Secrets (get only),
    // Events naming the caller.
    let want = rbac::mcp_grants();
    assert_eq!(
        grants,
        want,
        "sessions-namespace Role:\n{}",
        rbac::diff(&want, &grants)
    );
    let auth: ClusterRole =
        typed(find(&chart, "ClusterRole", "rsession-mcp-auth")).expect("ClusterRole");
    let grants = rbac::grants(&auth.rules.unwrap_or_default());
    let want: BTreeSet<rbac::Grant> = [
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ]
    .iter()
    .map(|(g, r)| ((*g).into(), (*r).into(), String::new(), "create".into()))
    .collect();
    assert_eq!(
        grants,
        want,
        "cluster-wide rules of the frontend:\n{}",
        rbac::diff(&want, &grants)
    );
}

#[test]
fn every_deployment_pod_meets_pod_security_restricted() {
    let tools = tools();
    for (label, extra) in VARIANTS {
        let objects = render(&tools, extra);
        let deployments = of_kind(&objects, "Deployment");
        assert_eq!(
            deployments.len(),
            2,
            "{label}: operator and MCP frontend Deployments"
        );
        for object in deployments {
            let deployment: Deployment = typed(object).unwrap_or_else(|e| panic!("{e}"));
            let spec = deployment
                .spec
                .and_then(|s| s.template.spec)
                .expect("pod spec");
            let found = restricted::violations(&spec);
            assert!(
                found.is_empty(),
                "{label}: {}: {found:#?}",
                object_key(object)
            );
            assert_ne!(
                spec.automount_service_account_token,
                Some(false),
                "{label}: both pods talk to the API server"
            );
        }
    }
}

#[test]
fn sessions_namespace_enforces_restricted() {
    let chart = render(&tools(), &[]);
    let ns = find(&chart, "Namespace", "rsession-sessions");
    assert_eq!(
        ns.pointer("/metadata/labels/pod-security.kubernetes.io~1enforce"),
        Some(&Value::from("restricted"))
    );
    let deny = find(&chart, "NetworkPolicy", "rsession-default-deny");
    assert_eq!(
        deny.pointer("/metadata/namespace"),
        Some(&Value::from("rsession-sessions"))
    );
    assert_eq!(
        deny.pointer("/spec/podSelector"),
        Some(&serde_json::json!({}))
    );
    assert!(
        deny.pointer("/spec/ingress").is_none() && deny.pointer("/spec/egress").is_none(),
        "default deny allows nothing"
    );
}

#[test]
fn network_policies_select_the_pods_they_protect() {
    let chart = render(&tools(), &[]);
    for name in ["rsession-operator", "rsession-mcp"] {
        let policy = find(&chart, "NetworkPolicy", name);
        let deployment = find(&chart, "Deployment", name);
        let selector = policy
            .pointer("/spec/podSelector/matchLabels")
            .expect("podSelector");
        let labels = deployment
            .pointer("/spec/template/metadata/labels")
            .and_then(Value::as_object)
            .expect("pod labels");
        for (k, v) in selector.as_object().expect("map") {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{name}: policy selects {k}={v} but the pods do not carry it"
            );
        }
        assert_eq!(
            policy.pointer("/spec/policyTypes"),
            Some(&serde_json::json!(["Ingress", "Egress"])),
            "{name}"
        );
    }
    // The operator admits exactly the frontend's pods to sessions: its configured selector is
    // the frontend Deployment's selector.
    let config: ConfigMap =
        typed(find(&chart, "ConfigMap", "rsession-operator")).expect("ConfigMap");
    let text = &config.data.expect("data")["operator.yaml"];
    let parsed: Value = serde_saphyr::from_str(text).expect("operator.yaml is YAML");
    let mcp = find(&chart, "Deployment", "rsession-mcp");
    assert_eq!(
        parsed.get("frontendPodSelector"),
        mcp.pointer("/spec/selector/matchLabels")
    );
    assert_eq!(
        parsed.get("frontendNamespace"),
        Some(&Value::from(RELEASE_NAMESPACE))
    );
}

#[test]
fn operator_config_is_accepted_by_the_operator() {
    let tools = tools();
    for (label, extra) in VARIANTS {
        let chart = render(&tools, extra);
        let config: ConfigMap =
            typed(find(&chart, "ConfigMap", "rsession-operator")).expect("ConfigMap");
        let text = &config.data.expect("data")["operator.yaml"];
        let parsed = rsession_operator::OperatorConfig::from_yaml(text).unwrap_or_else(|e| {
            panic!("{label}: the operator rejects the chart's config: {e}\n{text}")
        });
        assert!(
            parsed.leader_election.enabled,
            "{label}: leader election is on by default"
        );
        assert_eq!(
            parsed.leader_election.lease_namespace.as_deref(),
            Some(RELEASE_NAMESPACE)
        );
    }
}

/// The command line `rsession-mcp` would see in the chart's frontend container: its `args`,
/// then each `RSESSION_*` environment variable as the flag that reads it (`--<long>=<value>`).
fn mcp_argv(chart: &[Value]) -> Vec<String> {
    let command = rsession_mcp::config::Args::command();
    let deployment: Deployment =
        typed(find(chart, "Deployment", "rsession-mcp")).expect("Deployment");
    let container = &deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec")
        .containers[0];
    let mut argv = vec!["rsession-mcp".to_owned()];
    argv.extend(container.args.iter().flatten().cloned());
    for var in container
        .env
        .iter()
        .flatten()
        .filter(|e| e.name.starts_with("RSESSION_"))
    {
        // The log filter is read by tracing's EnvFilter in main.rs, not by a flag.
        if var.name == "RSESSION_LOG" {
            let main = std::fs::read_to_string(repo_root().join("crates/rsession-mcp/src/main.rs"))
                .expect("main.rs");
            assert!(
                main.contains("\"RSESSION_LOG\""),
                "rsession-mcp no longer reads RSESSION_LOG"
            );
            continue;
        }
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == var.name.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "the chart sets {}, which no rsession-mcp flag reads",
                    var.name
                )
            });
        let long = arg
            .get_long()
            .expect("flags read from the environment have a long name");
        argv.push(format!(
            "--{long}={}",
            var.value.as_deref().unwrap_or_default()
        ));
    }
    argv
}

/// The frontend's settings go through environment variables; each must be one that
/// `rsession-mcp` reads for a flag, with a value the flag accepts. The variables become the
/// equivalent command line, which clap parses as the binary would.
#[test]
fn mcp_environment_is_accepted_by_rsession_mcp() {
    let argv = mcp_argv(&render(&tools(), &[]));
    let args = rsession_mcp::config::Args::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("rsession-mcp refuses the chart's settings {argv:?}: {e}"));
    args.manager_config()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert_eq!(format!("{:?}", args.transport), "Http");
    assert_eq!(
        format!("{:?}", args.backend),
        "Kubernetes",
        "the in-cluster frontend uses the kubernetes backend"
    );
    assert_eq!(
        format!("{:?}", args.auth),
        "Some(Kubernetes)",
        "callers are authenticated"
    );
    assert_eq!(args.namespace.as_deref(), Some("rsession-sessions"));
    assert_eq!(args.listen.port(), 8080);
    assert!(
        args.listen.ip().is_unspecified(),
        "listens on every pod address"
    );
    assert!(
        args.allowed_hosts
            .iter()
            .any(|h| h == "rsession-mcp.rsession-system.svc"),
        "{:?}",
        args.allowed_hosts
    );
}

#[test]
fn values_schema_rejects_typos_and_unsafe_combinations() {
    let tools = tools();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "operator.replicas=2"],
            "additional properties 'replicas' not allowed",
        ),
        (&["--set", "mcp.service.type=Ingress"], "mcp/service/type"),
        (
            &["--set", "operator.image.pullPolicy=Sometimes"],
            "pullPolicy",
        ),
        (
            &[
                "--set",
                "operator.replicaCount=2",
                "--set",
                "operator.leaderElection.enabled=false",
            ],
            "needs operator.leaderElection.enabled=true",
        ),
        (
            &["--set", "operator.leaderElection.renewIntervalSeconds=20"],
            "renewIntervalSeconds must be below",
        ),
        (
            &["--set", "operator.watchNamespace=team-a"],
            "operator.watchNamespace must equal sessions.namespace",
        ),
        (
            &["--set", "sessions.namespace=rsession-system"],
            "sessions.namespace equals the release namespace",
        ),
        (
            &[
                "--set",
                "operator.sessionDefaults.defaultResources.limits.cpu=null",
            ],
            "cpu",
        ),
        (
            &["--set", "pool.replica=3"],
            "additional properties 'replica'",
        ),
        (&["--set", "pool.replicas=201"], "pool/replicas"),
        (&["--set", "pool.name=Warm_Pool"], "pool/name"),
        (&["--set", "pool.name="], "pool/name"),
        // Pool pods are named <pool>-<5 characters>: 40 is the CRD's limit.
        (
            &[
                "--set",
                "pool.name=a23456789-123456789-123456789-12345678901",
            ],
            "pool/name",
        ),
        (
            &["--set", "pool.template.imag=r:4"],
            "additional properties 'imag' not allowed",
        ),
        (
            &[
                "--set",
                "pool.enabled=true",
                "--set",
                "mcp.enabled=false",
                "--set",
                "operator.watchNamespace=team-a",
            ],
            "operator.watchNamespace must equal sessions.namespace while pool.enabled",
        ),
    ];
    for (args, needle) in cases {
        let err = render_chart(&tools, args).expect_err(&format!("{args:?} must be refused"));
        assert!(
            err.to_string().contains(needle),
            "{args:?}: expected {needle:?} in:\n{err}"
        );
    }
}

#[test]
fn kustomize_files_are_generated_from_the_chart() {
    let tools = tools();
    for file in kustomize::generate(&tools).unwrap_or_else(|e| panic!("{e}")) {
        let committed = std::fs::read_to_string(repo_root().join(&file.path)).unwrap_or_default();
        assert!(
            committed == file.text,
            "{} is stale: run `cargo run -p rsession-chart-tests --bin kustomize-gen` and commit",
            file.path.display()
        );
    }
}

/// `kubectl kustomize config/default` with kustomize's default file-loading rules, the way
/// `kubectl apply -k config/default`, Argo CD and Flux build it.
#[test]
fn config_default_builds_with_default_load_restrictions() {
    render_kustomize(&tools(), "config/default").unwrap_or_else(|e| {
        panic!("config/default does not build as `kubectl apply -k` would build it: {e}")
    });
}

#[test]
fn kustomize_renders_the_same_objects_as_the_chart() {
    let tools = tools();
    let text = render_kustomize(&tools, "config/default").unwrap_or_else(|e| panic!("{e}"));
    let mut kustomized = parse_manifests("config/default", &text).unwrap_or_else(|e| panic!("{e}"));
    kustomized.iter_mut().for_each(strip_helm_metadata);
    let chart = kustomize::chart_objects(&tools).unwrap_or_else(|e| panic!("{e}"));

    let chart_keys: BTreeSet<String> = chart.iter().map(object_key).collect();
    let kustomize_keys: BTreeSet<String> = kustomized.iter().map(object_key).collect();
    // Helm users create the release namespace with --create-namespace; kustomize renders it.
    let expected: BTreeSet<String> = chart_keys
        .iter()
        .cloned()
        .chain([format!("Namespace//{RELEASE_NAMESPACE}")])
        .collect();
    assert_eq!(kustomize_keys, expected, "object sets differ");

    for object in &kustomized {
        let key = object_key(object);
        let Some(chart_object) = chart.iter().find(|o| object_key(o) == key) else {
            continue;
        };
        // Labels: what kustomize sets must be what the chart sets (config/rbac carries fewer).
        let labels = |o: &Value| {
            o.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let chart_labels = labels(chart_object);
        for (k, v) in labels(object) {
            assert_eq!(chart_labels.get(&k), Some(&v), "{key}: label {k}");
        }
        let without_labels = |o: &Value| {
            let mut o = o.clone();
            o["metadata"].as_object_mut().map(|m| m.remove("labels"));
            o
        };
        // YAML writers differ on `65535` vs `65535.0`; numbers compare by value.
        let config = Config::new(CompareMode::Strict).numeric_mode(NumericMode::AssumeFloat);
        if let Err(diff) = assert_json_matches_no_panic(
            &without_labels(object),
            &without_labels(chart_object),
            config,
        ) {
            panic!("{key} differs between config/default (lhs) and the chart (rhs):\n{diff}");
        }
    }
}

/// The YAML examples in docs/gitops.md parse, point at folders that exist, and their chart
/// values pass the chart's schema and templates.
#[test]
fn gitops_doc_examples_are_valid() {
    let tools = tools();
    let doc = std::fs::read_to_string(repo_root().join("docs/gitops.md")).expect("docs/gitops.md");
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or_default())
        .collect();
    assert!(
        blocks.len() >= 4,
        "expected the Argo CD and Flux examples, found {} YAML blocks",
        blocks.len()
    );
    let mut values_checked = 0;
    for block in blocks {
        let objects =
            parse_manifests("docs/gitops.md", block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        for object in objects {
            for pointer in ["/spec/source/path", "/spec/path", "/spec/chart/spec/chart"] {
                if let Some(path) = object.pointer(pointer).and_then(Value::as_str) {
                    assert!(
                        repo_root().join(path.trim_start_matches("./")).is_dir(),
                        "{}: {path} does not exist",
                        object_key(&object)
                    );
                }
            }
            for pointer in ["/spec/source/helm/valuesObject", "/spec/values"] {
                if let Some(values) = object.pointer(pointer) {
                    let file = tempfile::NamedTempFile::new().expect("temp file");
                    std::fs::write(file.path(), values.to_string()).expect("write values");
                    render_chart(&tools, &["-f", file.path().to_string_lossy().as_ref()])
                        .unwrap_or_else(|e| panic!("{}: values refused: {e}", object_key(&object)));
                    values_checked += 1;
                }
            }
        }
    }
    assert_eq!(
        values_checked, 2,
        "the Argo CD and Flux Helm examples carry values"
    );
}

/// The frontend's egress rule to Rserve selects the pods the operator builds for sessions
/// (labels from `rsession_operator::build::labels`), in the sessions namespace, on port 6311.
#[test]
fn mcp_egress_reaches_the_session_pods_the_operator_builds() {
    use rsession_operator::build::{Component, labels};
    let chart = render(&tools(), &[]);
    let policy = find(&chart, "NetworkPolicy", "rsession-mcp");
    let session_pod_labels = labels("any-session", Component::Session);
    let rules = policy
        .pointer("/spec/egress")
        .and_then(Value::as_array)
        .expect("egress rules");
    let to_sessions = rules
        .iter()
        .find(|rule| {
            rule.pointer("/ports/0/port")
                == Some(&Value::from(rsession_api::well_known::RSERVE_PORT))
        })
        .expect("an egress rule for the Rserve port");
    let peer = &to_sessions["to"][0];
    assert_eq!(
        peer.pointer("/namespaceSelector/matchLabels/kubernetes.io~1metadata.name"),
        Some(&Value::from("rsession-sessions"))
    );
    let selector = peer
        .pointer("/podSelector/matchLabels")
        .and_then(Value::as_object)
        .expect("podSelector");
    for (k, v) in selector {
        assert_eq!(
            session_pod_labels.get(k).map(String::as_str),
            v.as_str(),
            "session pods do not carry {k}={v}"
        );
    }
}

/// Both the operator (database host names) and the frontend (session Service names) resolve
/// names, so both policies allow DNS to the cluster DNS pods, on UDP and TCP 53, and nothing
/// else on port 53.
#[test]
fn operator_and_frontend_egress_allow_cluster_dns() {
    let chart = render(&tools(), &[]);
    for name in ["rsession-operator", "rsession-mcp"] {
        let policy = find(&chart, "NetworkPolicy", name);
        let rules = policy
            .pointer("/spec/egress")
            .and_then(Value::as_array)
            .expect("egress rules");
        let dns: Vec<&Value> = rules
            .iter()
            .filter(|rule| rule.pointer("/ports/0/port") == Some(&Value::from(53)))
            .collect();
        assert_eq!(dns.len(), 1, "{name}: one DNS egress rule");
        let peer = &dns[0]["to"][0];
        assert_eq!(
            peer.pointer("/namespaceSelector/matchLabels/kubernetes.io~1metadata.name"),
            Some(&Value::from("kube-system")),
            "{name}"
        );
        assert_eq!(
            peer.pointer("/podSelector/matchLabels/k8s-app"),
            Some(&Value::from("kube-dns")),
            "{name}"
        );
        let protocols: Vec<&str> = dns[0]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p["protocol"].as_str())
            .collect();
        assert_eq!(protocols, ["UDP", "TCP"], "{name}");
    }
}

/// Container `args` of the MCP frontend (none unless a value adds some).
fn mcp_args(chart: &[Value]) -> Option<Value> {
    find(chart, "Deployment", "rsession-mcp")
        .pointer("/spec/template/spec/containers/0/args")
        .cloned()
}

/// With the defaults there is no pool and the frontend gets no `--default-pool`; with
/// `pool.enabled` the chart renders exactly one RSessionPool in the sessions namespace, built
/// from `pool.name`, `pool.replicas` and `pool.template`, and the frontend names it.
#[test]
fn session_pool_and_default_pool_flag_only_when_enabled() {
    let tools = tools();
    let defaults = render(&tools, &[]);
    assert!(
        of_kind(&defaults, "RSessionPool").is_empty(),
        "no RSessionPool by default"
    );
    assert_eq!(mcp_args(&defaults), None, "no frontend args by default");

    let template = serde_json::json!({
        "image": "ghcr.io/rsession/r-sandbox:0.1.0",
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
        "nodeSelector": {"rsession.dev/pool": "warm"},
    });
    let set_template = format!("pool.template={template}");
    let mut chart = render(
        &tools,
        &[
            "--set",
            "pool.enabled=true",
            "--set",
            "pool.name=warm",
            "--set",
            "pool.replicas=3",
            "--set-json",
            &set_template,
        ],
    );
    let pools = of_kind(&chart, "RSessionPool");
    assert_eq!(pools.len(), 1, "one RSessionPool");
    let pool: rsession_api::RSessionPool =
        typed(pools[0]).unwrap_or_else(|e| panic!("the rendered pool is not an RSessionPool: {e}"));
    assert_eq!(pool.spec.replicas, 3);
    assert_eq!(
        pool.spec.template.image.as_deref(),
        Some("ghcr.io/rsession/r-sandbox:0.1.0")
    );
    chart.iter_mut().for_each(strip_helm_metadata);
    assert_eq!(
        of_kind(&chart, "RSessionPool")[0],
        &serde_json::json!({
            "apiVersion": "rsession.dev/v1alpha1",
            "kind": "RSessionPool",
            "metadata": {
                "name": "warm",
                "namespace": "rsession-sessions",
                "labels": {
                    "app.kubernetes.io/part-of": "rsession",
                    "app.kubernetes.io/version": "0.1.0",
                },
            },
            "spec": {"replicas": 3, "maxStarting": 3, "template": template},
        })
    );
    assert_eq!(
        mcp_args(&chart),
        Some(serde_json::json!(["--default-pool", "warm"]))
    );

    // The value defaults: pool `default` of 2, no template (the operator's session defaults).
    let chart = render(&tools, &["--set", "pool.enabled=true"]);
    let pool = of_kind(&chart, "RSessionPool")[0];
    assert_eq!(
        pool.pointer("/metadata/name"),
        Some(&Value::from("default"))
    );
    assert_eq!(
        pool["spec"],
        serde_json::json!({"replicas": 2, "maxStarting": 3})
    );
    assert_eq!(
        mcp_args(&chart),
        Some(serde_json::json!(["--default-pool", "default"]))
    );

    // Without the frontend the pool is still rendered, for RSessions created with kubectl.
    let chart = render(
        &tools,
        &["--set", "pool.enabled=true", "--set", "mcp.enabled=false"],
    );
    assert_eq!(of_kind(&chart, "RSessionPool").len(), 1);
    assert!(of_kind(&chart, "Deployment").len() == 1, "operator only");
}

/// `pool.template` in values.schema.json lists exactly the fields of the CRD's
/// `spec.template`, and `pool.name` / `pool.replicas` have the CRD's limits, so the schema
/// refuses at render time what the API server would refuse at apply time.
#[test]
fn pool_values_schema_follows_the_rsessionpool_crd() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(rsession_api::RSessionPool::crd()).expect("CRD as JSON");
    let crd_spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let values: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("values.schema.json"))
            .expect("values.schema.json"),
    )
    .expect("values.schema.json is JSON");
    let pool = &values["properties"]["pool"]["properties"];
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        keys(&pool["template"]["properties"]),
        keys(&crd_spec["template"]["properties"]),
        "pool.template fields differ from RSessionPool spec.template"
    );
    assert_eq!(pool["template"]["additionalProperties"], Value::Bool(false));
    assert_eq!(
        pool["template"]["properties"]["imagePullPolicy"]["enum"],
        crd_spec["template"]["properties"]["imagePullPolicy"]["enum"]
    );
    for bound in ["minimum", "maximum"] {
        assert_eq!(
            pool["replicas"][bound].as_f64(),
            crd_spec["replicas"][bound].as_f64(),
            "pool.replicas {bound}"
        );
    }
    let name_rule = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        ["x-kubernetes-validations"][0]["rule"]
        .as_str()
        .expect("the pool name rule");
    assert!(
        name_rule.contains(&format!(
            "self.metadata.name.size() <= {}",
            pool["name"]["maxLength"]
        )),
        "pool.name maxLength differs from the CRD's rule: {name_rule}"
    );
}

/// The `--default-pool` flag the chart passes with `pool.enabled` parses as rsession-mcp's.
#[test]
fn mcp_default_pool_flag_is_accepted_by_rsession_mcp() {
    let argv = mcp_argv(&render(
        &tools(),
        &["--set", "pool.enabled=true", "--set", "pool.name=warm"],
    ));
    assert!(
        argv.windows(2).any(|w| w == ["--default-pool", "warm"]),
        "{argv:?}"
    );
    let args = rsession_mcp::config::Args::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("rsession-mcp refuses the chart's settings {argv:?}: {e}"));
    args.manager_config()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
}
