//! The rendered chart against a real kube-apiserver (rsession-testenv: etcd, kube-apiserver with
//! RBAC and PodSecurity admission, kube-controller-manager; no scheduler or kubelet).
//!
//! The chart's objects are server-side applied in the order Helm installs them, into a release
//! namespace that enforces the `restricted` Pod Security Standard; then the tests check that
//! the Deployments' pods are admitted there, that re-applying is a no-op (GitOps sees no
//! drift), and what the two ServiceAccounts may and may not do, as the real authorizer answers.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use rsession_chart_tests::{
    RELEASE_NAMESPACE, Tools, chart_dir, parse_manifests, render_chart, typed,
};
use rsession_testenv::{ControlPlane, ENFORCE_LABEL, apply_crds, apply_object};
use tokio::sync::OnceCell;

const SESSIONS_NAMESPACE: &str = "rsession-sessions";
const OPERATOR_SA: &str = "system:serviceaccount:rsession-system:rsession-operator";
const MCP_SA: &str = "system:serviceaccount:rsession-system:rsession-mcp";
/// Bound on every wait for the controller manager (2 shared cores).
const WAIT: Duration = Duration::from_secs(90);

/// What the one-time install left behind: the rendered stream and each object's
/// resourceVersion right after the apply.
struct Installed {
    rendered: tempfile::NamedTempFile,
    /// Each rendered object (CRDs aside) and, after the apply, its `metadata.generation` when
    /// it has one (controllers update the status, and with it the resourceVersion, of
    /// Deployments), else its resourceVersion.
    objects: Vec<(DynamicObject, String)>,
}

static INSTALLED: OnceCell<Installed> = OnceCell::const_new();

async fn control_plane() -> &'static ControlPlane {
    ControlPlane::shared()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn client(cp: &ControlPlane) -> Client {
    cp.client().unwrap_or_else(|e| panic!("{e}"))
}

/// Renders the chart with its defaults and applies it once per test binary: the release
/// namespace (as `helm install --create-namespace` would, plus the restricted label), the CRDs
/// from the chart's `crds/`, then every rendered object in Helm's order.
async fn installed() -> &'static Installed {
    INSTALLED
        .get_or_init(|| async {
            let cp = control_plane().await;
            let client = client(cp);
            let tools = Tools::locate().unwrap_or_else(|e| panic!("{e}"));
            let text = render_chart(&tools, &[]).unwrap_or_else(|e| panic!("{e}"));
            let mut rendered = tempfile::NamedTempFile::new().expect("temp file");
            std::io::Write::write_all(&mut rendered, text.as_bytes())
                .expect("write rendered chart");

            let namespace = Namespace {
                metadata: ObjectMeta {
                    name: Some(RELEASE_NAMESPACE.into()),
                    labels: Some(BTreeMap::from([(
                        ENFORCE_LABEL.into(),
                        "restricted".into(),
                    )])),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            Api::<Namespace>::all(client.clone())
                .patch(
                    RELEASE_NAMESPACE,
                    &PatchParams::apply("chart-test").force(),
                    &Patch::Apply(&namespace),
                )
                .await
                .expect("create the release namespace");
            apply_crds(&client, &chart_dir().join("crds"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));

            let mut objects = Vec::new();
            for value in parse_manifests("helm template", &text).unwrap_or_else(|e| panic!("{e}")) {
                if value["kind"] == "CustomResourceDefinition" {
                    continue;
                }
                let object: DynamicObject = typed(&value).unwrap_or_else(|e| panic!("{e}"));
                let applied = apply_object(&client, &object, Some(RELEASE_NAMESPACE))
                    .await
                    .unwrap_or_else(|e| panic!("the apiserver rejects the chart: {e}"));
                objects.push((object, version(&applied)));
            }
            Installed { rendered, objects }
        })
        .await
}

/// `g<generation>` when the object has a generation, else `rv<resourceVersion>`.
fn version(object: &DynamicObject) -> String {
    match object.metadata.generation {
        Some(generation) => format!("g{generation}"),
        None => format!("rv{}", object.resource_version().unwrap_or_default()),
    }
}

/// Waits until the Deployment's ReplicaSet has created all its pods or reports a failure to
/// create them (the `ReplicaFailure` condition, which carries PodSecurity's refusal).
async fn wait_for_pods_created(client: &Client, name: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let done = |d: Option<&Deployment>| {
        let Some(d) = d else { return false };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.as_ref();
        let failed = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        });
        failed || status.and_then(|s| s.replicas) == Some(want)
    };
    tokio::time::timeout(WAIT, await_condition(api, name, done))
        .await
        .unwrap_or_else(|_| panic!("Deployment {name}: pods not created within {WAIT:?}"))
        .expect("watch Deployment")
        .expect("Deployment exists")
}

#[tokio::test]
async fn deployments_get_pods_admitted_under_restricted_pod_security() {
    installed().await;
    let client = client(control_plane().await);
    for name in ["rsession-operator", "rsession-mcp"] {
        let deployment = wait_for_pods_created(&client, name).await;
        let failure = deployment
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure").cloned());
        assert!(failure.is_none(), "{name}: pods refused: {failure:?}");
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref())
            .expect("selector")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods = Api::<Pod>::namespaced(client.clone(), RELEASE_NAMESPACE)
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list pods");
        assert_eq!(pods.items.len(), 1, "{name}: one pod per replica");
    }
}

/// Creates (server-side dry run) a pod from the operator's template with one field made
/// non-compliant, in `namespace`; returns the apiserver's refusal.
async fn refusal_of_non_compliant_pod(client: &Client, namespace: &str) -> String {
    let deployment: Deployment = Api::namespaced(client.clone(), RELEASE_NAMESPACE)
        .get("rsession-operator")
        .await
        .expect("operator Deployment");
    let template = deployment.spec.expect("spec").template;
    let mut spec = template.spec.expect("pod spec");
    if let Some(sc) = spec.containers[0].security_context.as_mut() {
        sc.allow_privilege_escalation = Some(true);
    }
    // The ServiceAccount exists only in the release namespace; use the namespace's default,
    // which the controller manager creates.
    spec.service_account_name = None;
    spec.service_account = None;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    tokio::time::timeout(
        WAIT,
        await_condition(accounts, "default", |sa: Option<&ServiceAccount>| {
            sa.is_some()
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{namespace}: no default ServiceAccount within {WAIT:?}"))
    .expect("watch ServiceAccount");
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("non-compliant".into()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        ..Pod::default()
    };
    let err = Api::<Pod>::namespaced(client.clone(), namespace)
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &pod,
        )
        .await
        .expect_err("a pod allowing privilege escalation must be refused");
    err.to_string()
}

#[tokio::test]
async fn non_compliant_pods_are_refused_in_both_namespaces() {
    installed().await;
    let client = client(control_plane().await);
    for namespace in [RELEASE_NAMESPACE, SESSIONS_NAMESPACE] {
        let refusal = refusal_of_non_compliant_pod(&client, namespace).await;
        assert!(
            refusal.contains("violates PodSecurity \"restricted:latest\"")
                && refusal.contains("allowPrivilegeEscalation"),
            "{namespace}: {refusal}"
        );
    }
}

#[tokio::test]
async fn reapplying_the_chart_changes_nothing() {
    let installed = installed().await;
    let cp = control_plane().await;
    let client = client(cp);
    // The literal GitOps check: a server-side dry-run apply of the whole rendered stream.
    let path = installed.rendered.path().to_string_lossy().into_owned();
    let out = cp
        .kubectl(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=rsession-testenv",
            "-f",
            &path,
        ])
        .await
        .unwrap_or_else(|e| panic!("server-side dry-run apply of the rendered chart: {e}"));
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    // A real re-apply of the same objects writes nothing: every generation (or, for objects
    // without one, resourceVersion) stays.
    for (object, before) in &installed.objects {
        let after = apply_object(&client, object, Some(RELEASE_NAMESPACE))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            &version(&after),
            before,
            "{} {} changed on re-apply",
            object
                .types
                .as_ref()
                .map(|t| t.kind.as_str())
                .unwrap_or_default(),
            object.name_any()
        );
    }
}

/// Whether `user` may `verb` the resource, as the apiserver's authorizer answers a
/// SubjectAccessReview.
async fn allowed(
    client: &Client,
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let sa_namespace = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split(':').next())
        .expect("a ServiceAccount user name");
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            // The groups the apiserver gives a ServiceAccount's token.
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{sa_namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(Into::into),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

type Check = (
    bool,
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

async fn check_rights(user: &str, checks: &[Check]) {
    installed().await;
    let client = client(control_plane().await);
    let mut wrong = Vec::new();
    for &(want, verb, group, resource, namespace) in checks {
        if allowed(&client, user, verb, group, resource, namespace).await != want {
            wrong.push(format!(
                "{} {verb} {group}/{resource} in {namespace:?}",
                if want { "cannot" } else { "can" }
            ));
        }
    }
    assert!(wrong.is_empty(), "{user}:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn operator_service_account_has_what_the_operator_uses_and_no_more() {
    check_rights(
        OPERATOR_SA,
        &[
            (true, "watch", "rsession.dev", "rsessions", None),
            (
                true,
                "patch",
                "rsession.dev",
                "rsessions/status",
                Some("team-a"),
            ),
            (true, "watch", "rsession.dev", "rsessionpools", None),
            (true, "get", "rsession.dev", "rsessionpools", Some("team-a")),
            (
                true,
                "patch",
                "rsession.dev",
                "rsessionpools/status",
                Some("team-a"),
            ),
            (
                false,
                "update",
                "rsession.dev",
                "rsessionpools/status",
                Some("team-a"),
            ),
            (true, "create", "", "pods", Some("team-a")),
            (false, "get", "", "pods", Some("team-a")),
            (true, "patch", "", "pods", Some("team-a")),
            (true, "delete", "", "pods", Some("team-a")),
            (true, "get", "", "secrets", Some("team-a")),
            (false, "watch", "", "secrets", None),
            (false, "delete", "", "secrets", Some("team-a")),
            (
                true,
                "patch",
                "networking.k8s.io",
                "networkpolicies",
                Some("team-a"),
            ),
            (true, "create", "events.k8s.io", "events", Some("team-a")),
            (
                true,
                "update",
                "coordination.k8s.io",
                "leases",
                Some(RELEASE_NAMESPACE),
            ),
            (
                false,
                "update",
                "coordination.k8s.io",
                "leases",
                Some("kube-system"),
            ),
            (false, "patch", "rsession.dev", "rsessions", Some("team-a")),
            (
                false,
                "patch",
                "rsession.dev",
                "rsessionpools",
                Some("team-a"),
            ),
            (
                false,
                "delete",
                "rsession.dev",
                "rsessionpools",
                Some("team-a"),
            ),
            (
                false,
                "update",
                "rsession.dev",
                "rsessionpools/scale",
                Some("team-a"),
            ),
            (false, "delete", "", "configmaps", Some("team-a")),
            (false, "get", "", "nodes", None),
            (
                false,
                "create",
                "rbac.authorization.k8s.io",
                "rolebindings",
                Some("team-a"),
            ),
            (
                false,
                "create",
                "authentication.k8s.io",
                "tokenreviews",
                None,
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn mcp_service_account_is_limited_to_the_sessions_namespace() {
    check_rights(
        MCP_SA,
        &[
            (
                true,
                "create",
                "rsession.dev",
                "rsessions",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "watch",
                "rsession.dev",
                "rsessions",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "patch",
                "rsession.dev",
                "rsessions",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "delete",
                "rsession.dev",
                "rsessions",
                Some(SESSIONS_NAMESPACE),
            ),
            (true, "get", "", "secrets", Some(SESSIONS_NAMESPACE)),
            (
                true,
                "get",
                "rsession.dev",
                "rsessionpools",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "list",
                "rsession.dev",
                "rsessionpools",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                false,
                "create",
                "rsession.dev",
                "rsessionpools",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                false,
                "patch",
                "rsession.dev",
                "rsessionpools/scale",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                false,
                "get",
                "rsession.dev",
                "rsessionpools",
                Some("default"),
            ),
            (
                true,
                "create",
                "events.k8s.io",
                "events",
                Some(SESSIONS_NAMESPACE),
            ),
            (false, "create", "events.k8s.io", "events", Some("default")),
            (
                true,
                "create",
                "authentication.k8s.io",
                "tokenreviews",
                None,
            ),
            (
                true,
                "create",
                "authorization.k8s.io",
                "subjectaccessreviews",
                None,
            ),
            (
                false,
                "create",
                "rsession.dev",
                "rsessions",
                Some("default"),
            ),
            (false, "get", "", "secrets", Some(RELEASE_NAMESPACE)),
            (false, "list", "", "secrets", Some(SESSIONS_NAMESPACE)),
            (
                false,
                "patch",
                "rsession.dev",
                "rsessions/status",
                Some(SESSIONS_NAMESPACE),
            ),
            (false, "delete", "", "pods", Some(SESSIONS_NAMESPACE)),
            (false, "create", "", "pods", Some(SESSIONS_NAMESPACE)),
        ],
    )
    .await;
}

#[tokio::test]
async fn sessions_namespace_carries_the_restricted_label() {
    installed().await;
    let client = client(control_plane().await);
    let ns = Api::<Namespace>::all(client)
        .get(SESSIONS_NAMESPACE)
        .await
        .expect("sessions namespace");
    assert_eq!(
        ns.labels().get(ENFORCE_LABEL).map(String::as_str),
        Some("restricted")
    );
}

/// `helm install` itself against the real apiserver (Helm checks the chart's `kubeVersion`
/// against the server, installs `crds/` first, and records the release), then `helm upgrade`
/// with the same values: Helm computes no change, so no object's generation moves. A second
/// release name keeps its cluster-scoped objects apart from the install above.
#[tokio::test]
async fn helm_install_and_noop_upgrade() {
    installed().await;
    let cp = control_plane().await;
    let client = client(cp);
    let tools = Tools::locate().unwrap_or_else(|e| panic!("{e}"));
    let kubeconfig = cp.kubeconfig_path().to_string_lossy().into_owned();
    let chart = chart_dir().to_string_lossy().into_owned();
    let helm = |verb: &'static str| {
        tools.helm(&[
            verb,
            "second",
            &chart,
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            "second-system",
            "--create-namespace",
            "--set",
            "sessions.namespace=second-sessions",
            "--set",
            "operator.watchNamespace=second-sessions",
        ])
    };
    let out = helm("install").unwrap_or_else(|e| panic!("helm install: {e}"));
    assert!(out.contains("STATUS: deployed"), "{out}");
    // NOTES.txt tells how to grant an agent access, naming this release's user role.
    assert!(out.contains("--clusterrole=second-rsession-user"), "{out}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "second-system");
    let before = deployments
        .list(&ListParams::default())
        .await
        .expect("list Deployments");
    assert_eq!(
        before.items.len(),
        2,
        "operator and MCP frontend Deployments"
    );
    let out = helm("upgrade").unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    assert!(out.contains("REVISION: 2"), "{out}");
    for deployment in before.items {
        let name = deployment.name_any();
        let after = deployments.get(&name).await.expect("Deployment");
        assert_eq!(
            after.metadata.generation, deployment.metadata.generation,
            "{name} changed on a same-values upgrade"
        );
    }
}

/// An agent's ServiceAccount bound (RoleBinding in the sessions namespace) to the chart's
/// `rsession-user` ClusterRole passes the frontend's SubjectAccessReview for RSessions there,
/// and nowhere else, and gets no Secrets.
#[tokio::test]
async fn user_cluster_role_grants_an_agent_rsessions_in_the_sessions_namespace() {
    installed().await;
    let client = client(control_plane().await);
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "agent-rsessions", "namespace": SESSIONS_NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "rsession-user"},
        "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": "agents"}]
    }))
    .expect("RoleBinding");
    Api::<RoleBinding>::namespaced(client.clone(), SESSIONS_NAMESPACE)
        .patch(
            "agent-rsessions",
            &PatchParams::apply("chart-test").force(),
            &Patch::Apply(&binding),
        )
        .await
        .expect("bind the agent");
    check_rights(
        "system:serviceaccount:agents:agent",
        &[
            (
                true,
                "create",
                "rsession.dev",
                "rsessions",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "list",
                "rsession.dev",
                "rsessions",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "delete",
                "rsession.dev",
                "rsessions",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                false,
                "create",
                "rsession.dev",
                "rsessions",
                Some("default"),
            ),
            (false, "get", "", "secrets", Some(SESSIONS_NAMESPACE)),
            (
                false,
                "patch",
                "rsession.dev",
                "rsessions/status",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "create",
                "rsession.dev",
                "rsessionpools",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "update",
                "rsession.dev",
                "rsessionpools/scale",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                true,
                "patch",
                "rsession.dev",
                "rsessionpools/scale",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                false,
                "patch",
                "rsession.dev",
                "rsessionpools/status",
                Some(SESSIONS_NAMESPACE),
            ),
            (
                false,
                "create",
                "rsession.dev",
                "rsessionpools",
                Some("default"),
            ),
        ],
    )
    .await;
}

/// The RSessionPool the chart renders with `pool.enabled` (and a template) passes the
/// RSessionPool CRD's schema and CEL rules on the real apiserver (server-side dry-run apply,
/// after the install put the chart's CRDs in place).
#[tokio::test]
async fn rendered_session_pool_is_accepted_by_the_apiserver() {
    installed().await;
    let cp = control_plane().await;
    let tools = Tools::locate().unwrap_or_else(|e| panic!("{e}"));
    let text = render_chart(
        &tools,
        &[
            "--set",
            "pool.enabled=true",
            "--set",
            "pool.name=warm",
            "--set-json",
            r#"pool.template={"image":"ghcr.io/rsession/r-sandbox:0.1.0","imagePullPolicy":"IfNotPresent","resources":{"limits":{"cpu":"1","memory":"1Gi"}},"network":{"egress":[{"cidr":"10.0.0.0/8","ports":[443]}]},"nodeSelector":{"rsession.dev/pool":"warm"},"tolerations":[{"key":"rsession.dev/pool","operator":"Exists","effect":"NoSchedule"}]}"#,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let pools: Vec<_> = parse_manifests("helm template", &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|o| o["kind"] == "RSessionPool")
        .collect();
    assert_eq!(pools.len(), 1, "one RSessionPool rendered");
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(
        &mut file,
        serde_json::to_string(&pools[0]).expect("json").as_bytes(),
    )
    .expect("write the pool");
    let path = file.path().to_string_lossy().into_owned();
    let out = cp
        .kubectl(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=rsession-testenv",
            "-f",
            &path,
        ])
        .await
        .unwrap_or_else(|e| panic!("the apiserver refuses the chart's RSessionPool: {e}"));
    assert!(
        out.contains("rsessionpool.rsession.dev/warm serverside-applied (server dry run)"),
        "{out}"
    );
}
