//! Smoke test of the fixture against the real binaries: the control plane starts, a namespace
//! can be created, a CRD is applied and established, RBAC is enforced for impersonated service
//! accounts, and kubectl talks to it.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use rsession_testenv::{ControlPlane, ENFORCE_LABEL, PodSecurity, apply_crds, apply_manifests};

const WIDGET_CRD: &str = "\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testenv.rsession.dev
spec:
  group: testenv.rsession.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
";

#[tokio::test]
async fn namespace_is_created_with_pod_security_label() {
    let cp = ControlPlane::shared().await.expect("control plane");
    cp.with_temp_ns(
        "smoke-ns",
        PodSecurity::Restricted,
        |client, ns| async move {
            let namespace = Api::<Namespace>::all(client)
                .get(&ns)
                .await
                .expect("namespace");
            let labels = namespace.metadata.labels.unwrap_or_default();
            assert_eq!(
                labels.get(ENFORCE_LABEL).map(String::as_str),
                Some("restricted")
            );
        },
    )
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn crd_is_established_and_validates() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let dir = tempfile::tempdir().expect("tempdir");
    let crd_file = dir.path().join("widget.yaml");
    std::fs::write(&crd_file, WIDGET_CRD).expect("write CRD");
    let crds = apply_crds(&cp.client().expect("client"), &crd_file)
        .await
        .expect("CRD applied and established");
    assert_eq!(crds.len(), 1);

    cp.with_temp_ns("smoke-crd", PodSecurity::Unlabelled, move |client, ns| async move {
        let good = dir.path().join("good.yaml");
        std::fs::write(
            &good,
            "apiVersion: testenv.rsession.dev/v1\nkind: Widget\nmetadata: {name: ok}\nspec: {size: 2}\n",
        )
        .expect("write");
        let applied = apply_manifests(&client, &good, Some(&ns)).await.expect("valid widget");
        assert_eq!(applied[0].metadata.namespace.as_deref(), Some(ns.as_str()));

        let bad = dir.path().join("bad.yaml");
        std::fs::write(
            &bad,
            "apiVersion: testenv.rsession.dev/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: 0}\n",
        )
        .expect("write");
        let err = apply_manifests(&client, &bad, Some(&ns))
            .await
            .expect_err("size 0 violates minimum 1");
        assert!(err.to_string().contains("spec.size"), "{err}");
    })
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn impersonated_service_account_is_subject_to_rbac() {
    let cp = ControlPlane::shared().await.expect("control plane");
    cp.with_temp_ns(
        "smoke-rbac",
        PodSecurity::Unlabelled,
        |client, ns| async move {
            let cp = ControlPlane::shared().await.expect("control plane");
            let as_default = cp
                .impersonate_service_account(&ns, "default")
                .expect("client");
            let err = Api::<ConfigMap>::namespaced(as_default, &ns)
                .list(&Default::default())
                .await
                .expect_err("the default service account has no RBAC grants");
            let kube::Error::Api(status) = err else {
                panic!("expected an API status, got {err}")
            };
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains(&format!("system:serviceaccount:{ns}:default"))
            );

            // The admin (system:masters) may.
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some("admin-can".into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            };
            Api::<ConfigMap>::namespaced(client, &ns)
                .create(&PostParams::default(), &cm)
                .await
                .expect("admin creates a ConfigMap");
        },
    )
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn kubectl_uses_the_fixture_kubeconfig() {
    let cp = ControlPlane::shared().await.expect("control plane");
    let version = cp
        .kubectl(&["version", "-o", "json"])
        .await
        .expect("kubectl version");
    let version: serde_json::Value = serde_json::from_str(&version).expect("json");
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        rsession_testenv::K8S_VERSION,
        "{version}"
    );
}
