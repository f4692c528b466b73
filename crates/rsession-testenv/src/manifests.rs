//! Applying YAML manifests from the repository (CRDs, RBAC, samples) with server-side apply.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};

use crate::error::{Error, Result};

/// The field manager of every object the fixture applies.
pub const FIELD_MANAGER: &str = "rsession-testenv";

/// How long a CRD may take to become `Established`.
const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository root (this crate lives in `crates/rsession-testenv`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads every Kubernetes object in `path`: one YAML file, or every `*.yaml`/`*.yml` file of a
/// folder in name order (a `kustomization.yaml` is skipped). Multi-document files are split;
/// empty documents are ignored.
///
/// # Errors
/// [`Error::Io`] when a file cannot be read; [`Error::Manifest`] when a document is not YAML or
/// lacks `apiVersion`, `kind` or `metadata.name`.
pub fn read_manifests(path: &Path) -> Result<Vec<DynamicObject>> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(Error::io(format!("read {}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && !name.starts_with("kustomization.")
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(Error::io(format!("read {}", file.display())))?;
        objects.extend(parse_manifests(&text, &file)?);
    }
    Ok(objects)
}

/// Parses multi-document YAML text into objects; `source` names it in errors.
///
/// # Errors
/// [`Error::Manifest`] when a document is not YAML or lacks `apiVersion`, `kind` or
/// `metadata.name`.
pub fn parse_manifests(text: &str, source: &Path) -> Result<Vec<DynamicObject>> {
    let bad = |message: String| Error::Manifest {
        path: source.to_owned(),
        message,
    };
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| bad(e.to_string()))?;
    let mut objects = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let object: DynamicObject = serde_json::from_value(doc).map_err(|e| bad(e.to_string()))?;
        if object.types.is_none() || object.metadata.name.is_none() {
            return Err(bad(
                "a document lacks apiVersion, kind or metadata.name".into()
            ));
        }
        objects.push(object);
    }
    Ok(objects)
}

/// Server-side applies the objects of multi-document YAML `text` (see [`apply_manifests`]).
///
/// # Errors
/// As [`apply_manifests`].
pub async fn apply_yaml(
    client: &Client,
    text: &str,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for object in parse_manifests(text, Path::new("<yaml text>"))? {
        applied.push(apply_object(client, &object, namespace).await?);
    }
    Ok(applied)
}

/// Server-side applies every object of `path` (see [`read_manifests`]) with field manager
/// [`FIELD_MANAGER`], forcing conflicts. Namespaced objects without a namespace go to
/// `namespace` (an error when `None`). Kinds are resolved through discovery, so CRDs must be
/// established first ([`apply_crds`]).
///
/// # Errors
/// [`Error::Manifest`] for unreadable files or an unknown kind; [`Error::Kube`] when the
/// apiserver rejects an object.
pub async fn apply_manifests(
    client: &Client,
    path: &Path,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for object in read_manifests(path)? {
        applied.push(
            apply_object(client, &object, namespace)
                .await
                .map_err(|e| match e {
                    Error::Manifest { message, .. } => Error::Manifest {
                        path: path.to_owned(),
                        message,
                    },
                    other => other,
                })?,
        );
    }
    Ok(applied)
}

/// Server-side applies one object (see [`apply_manifests`]).
///
/// # Errors
/// As [`apply_manifests`].
pub async fn apply_object(
    client: &Client,
    object: &DynamicObject,
    namespace: Option<&str>,
) -> Result<DynamicObject> {
    let name = object.name_any();
    let unknown = |message: String| Error::Manifest {
        path: PathBuf::new(),
        message,
    };
    let types = object
        .types
        .as_ref()
        .ok_or_else(|| unknown(format!("{name}: no apiVersion/kind")))?;
    let gvk = GroupVersionKind::try_from(types).map_err(|e| unknown(format!("{name}: {e}")))?;
    let (resource, capabilities) =
        pinned_kind(client, &gvk)
            .await
            .map_err(Error::kube(format!(
                "discover {}/{}",
                gvk.api_version(),
                gvk.kind
            )))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => {
            let ns = object
                .metadata
                .namespace
                .as_deref()
                .or(namespace)
                .ok_or_else(|| unknown(format!("{} {name} needs a namespace", gvk.kind)))?;
            Api::namespaced_with(client.clone(), ns, &resource)
        }
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(Error::kube(format!("apply {} {name}", gvk.kind)))
}

/// Server-side applies the CustomResourceDefinitions in `path` (a file or a folder of YAML) and
/// waits until each is `Established` and its versions are in the OpenAPI v3 index
/// ([`await_openapi`]; at most 60 s each). Returns the applied CRDs.
///
/// # Errors
/// [`Error::Manifest`] when a document is not a CRD; [`Error::Kube`] when the apiserver rejects
/// one; [`Error::Wait`] when one is not established in time.
pub async fn apply_crds(client: &Client, path: &Path) -> Result<Vec<CustomResourceDefinition>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut applied = Vec::new();
    for object in read_manifests(path)? {
        let name = object.name_any();
        let crd: CustomResourceDefinition = serde_json::to_value(&object)
            .and_then(serde_json::from_value)
            .map_err(|e| Error::Manifest {
                path: path.to_owned(),
                message: format!("{name} is not a CustomResourceDefinition: {e}"),
            })?;
        let crd = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .map_err(Error::kube(format!("apply CRD {name}")))?;
        let established = tokio::time::timeout(
            ESTABLISHED_TIMEOUT,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await;
        if !matches!(established, Ok(Ok(_))) {
            return Err(Error::Wait {
                what: format!("CRD {name} to be Established"),
                seconds: ESTABLISHED_TIMEOUT.as_secs(),
            });
        }
        for version in &crd.spec.versions {
            let group_version = format!("{}/{}", crd.spec.group, version.name);
            await_openapi(client, &group_version).await?;
        }
        applied.push(crd);
    }
    Ok(applied)
}

/// Waits until the apiserver's OpenAPI v3 index (`GET /openapi/v3`) lists
/// `apis/<group_version>`, which the apiserver publishes shortly after a CRD is Established;
/// `kubectl explain` and field validation read it.
///
/// # Errors
/// [`Error::Wait`] after 60 s.
pub async fn await_openapi(client: &Client, group_version: &str) -> Result<()> {
    let path = format!("apis/{group_version}");
    let deadline = std::time::Instant::now() + ESTABLISHED_TIMEOUT;
    loop {
        let request = http::Request::get("/openapi/v3").body(Vec::new());
        if let Ok(request) = request
            && let Ok(index) = client.request::<serde_json::Value>(request).await
            && index["paths"].get(&path).is_some()
        {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Wait {
                what: format!("OpenAPI v3 to publish {path}"),
                seconds: ESTABLISHED_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
