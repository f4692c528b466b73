//! `rsession-chart-tests`: helpers for testing the Helm chart `charts/rsession` and the
//! kustomize install `config/default` (dev-only, not published).
//!
//! The tests shell out to the `helm` and `kubectl` binaries that `e2e/local/build-binaries.sh`
//! builds from pinned Go modules into the cache folder (`$RSESSION_K8S_BIN`, else
//! `$RSESSION_CACHE/k8s-v1.33.13/bin`, else `~/.cache/rsession/k8s-v1.33.13/bin`). A missing
//! binary is an error naming that script: the tests fail rather than skip.
//!
//! - [`Tools`] runs `helm` and `kubectl`; [`render_chart`] and [`render_kustomize`] give the
//!   rendered YAML, [`parse_manifests`] the objects in it.
//! - [`restricted`] checks a pod spec against the Pod Security Standard `restricted` profile.
//! - [`rbac`] compares RBAC rules regardless of order.

pub mod kustomize;
pub mod rbac;
pub mod restricted;

use std::path::{Path, PathBuf};
use std::process::Command;

use rsession_testenv::Binaries;
use serde_json::Value;

/// Release name the tests render the chart with; with it the chart's object names match the
/// kustomize install (`rsession-operator`, `rsession-mcp`, ...).
pub const RELEASE_NAME: &str = "rsession";
/// Release namespace the tests render the chart with; the kustomize install uses the same.
pub const RELEASE_NAMESPACE: &str = "rsession-system";

/// Why a helper failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `helm` or `kubectl` is not in the cache folder.
    #[error(
        "{name} not found at {}: build it with `e2e/local/build-binaries.sh {name}` \
         (or point RSESSION_K8S_BIN at a folder holding helm and kubectl)",
        path.display()
    )]
    MissingTool {
        /// `helm` or `kubectl`.
        name: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The binary.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The command exited non-zero.
    #[error("`{program} {args}` failed ({status}):\n{stderr}{stdout}")]
    Failed {
        /// The binary.
        program: String,
        /// Its arguments, space-separated.
        args: String,
        /// The exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
        /// What it printed on stdout (helm lint reports there).
        stdout: String,
    },
    /// Rendered output or a repository file is not the YAML expected.
    #[error("{what}: {message}")]
    Yaml {
        /// The file or command the text came from.
        what: String,
        /// The parser's message.
        message: String,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `helm` and `kubectl` binaries of the cache folder.
#[derive(Debug, Clone)]
pub struct Tools {
    helm: PathBuf,
    kubectl: PathBuf,
}

/// The command's stdout when it exits 0.
fn run(program: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .map_err(|source| Error::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(Error::Failed {
            program: program.display().to_string(),
            args: args.join(" "),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            stdout,
        })
    }
}

impl Tools {
    /// Finds `helm` and `kubectl` in the folder [`Binaries::locate`] names.
    ///
    /// # Errors
    /// [`Error::MissingTool`] naming `e2e/local/build-binaries.sh` when one is absent.
    pub fn locate() -> Result<Tools> {
        let bins = Binaries::locate();
        let find = |name: &'static str| {
            let path = bins.path(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::MissingTool { name, path })
            }
        };
        Ok(Tools {
            helm: find("helm")?,
            kubectl: find("kubectl")?,
        })
    }

    /// Runs `helm <args>` in the repository root and returns stdout.
    ///
    /// # Errors
    /// [`Error::Failed`] with stderr and stdout when helm exits non-zero.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        run(&self.helm, args)
    }

    /// Runs `kubectl <args>` in the repository root and returns stdout.
    ///
    /// # Errors
    /// [`Error::Failed`] when kubectl exits non-zero.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        run(&self.kubectl, args)
    }

    /// Path of the `kubectl` binary.
    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }
}

/// The repository root (this crate lives in `crates/rsession-chart-tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `charts/rsession` in the repository.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/rsession")
}

/// `helm template rsession charts/rsession --namespace rsession-system --include-crds
/// <extra>`: the chart's objects as one YAML stream.
///
/// # Errors
/// [`Error::Failed`] with helm's message when rendering fails (schema or template errors).
pub fn render_chart(tools: &Tools, extra: &[&str]) -> Result<String> {
    let chart = chart_dir();
    let chart = chart.to_string_lossy();
    let mut args = vec![
        "template",
        RELEASE_NAME,
        chart.as_ref(),
        "--namespace",
        RELEASE_NAMESPACE,
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    tools.helm(&args)
}

/// `kubectl kustomize <dir>` (the kustomize built into kubectl) for a folder of the repository,
/// for example `config/default`.
///
/// # Errors
/// [`Error::Failed`] when kustomize rejects the folder.
pub fn render_kustomize(tools: &Tools, dir: &str) -> Result<String> {
    let path = repo_root().join(dir);
    tools.kubectl(&["kustomize", path.to_string_lossy().as_ref()])
}

/// Every object in a YAML stream (documents separated by `---`); empty documents (templates
/// that rendered nothing) are dropped.
///
/// # Errors
/// [`Error::Yaml`] when the text is not YAML or a document is not a mapping with `kind`.
pub fn parse_manifests(what: &str, text: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| Error::Yaml {
        what: what.into(),
        message: e.to_string(),
    })?;
    let mut objects = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        if doc.get("kind").and_then(Value::as_str).is_none() {
            return Err(Error::Yaml {
                what: what.into(),
                message: format!("a document has no kind: {doc}"),
            });
        }
        objects.push(doc);
    }
    Ok(objects)
}

/// `kind/namespace/name` of an object (namespace empty for cluster-scoped objects), the key the
/// tests compare object sets by.
pub fn object_key(object: &Value) -> String {
    let field = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    format!(
        "{}/{}/{}",
        field("/kind"),
        field("/metadata/namespace"),
        field("/metadata/name")
    )
}

/// The objects of one kind, in stream order.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some(kind))
        .collect()
}

/// Converts a rendered object into a typed Kubernetes object (for example
/// `k8s_openapi::api::apps::v1::Deployment`), so field names are checked by the type.
///
/// # Errors
/// [`Error::Yaml`] when the object does not deserialize as `T`.
pub fn typed<T: serde::de::DeserializeOwned>(object: &Value) -> Result<T> {
    serde_json::from_value(object.clone()).map_err(|e| Error::Yaml {
        what: object_key(object),
        message: e.to_string(),
    })
}

/// Labels and annotations only Helm sets (`helm.sh/chart`, `app.kubernetes.io/managed-by`,
/// and `checksum/*` pod annotations that roll pods on configuration changes). Removing them
/// from the chart's objects leaves what the kustomize install must render identically.
pub fn strip_helm_metadata(object: &mut Value) {
    fn strip(meta: Option<&mut Value>) {
        let Some(meta) = meta else { return };
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove("helm.sh/chart");
            labels.remove("app.kubernetes.io/managed-by");
        }
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.retain(|k, _| !k.starts_with("checksum/"));
            if annotations.is_empty() {
                meta.as_object_mut().map(|m| m.remove("annotations"));
            }
        }
    }
    strip(object.get_mut("metadata"));
    strip(object.pointer_mut("/spec/template/metadata"));
}
