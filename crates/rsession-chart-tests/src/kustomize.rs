//! The kustomize install (`config/default`) is generated from the chart, so the two cannot
//! disagree: `cargo run -p rsession-chart-tests --bin kustomize-gen` renders the chart with its
//! default values (release `rsession` in `rsession-system`), drops what only Helm adds, and
//! writes the objects into `config/namespace`, `config/manager` and `config/mcp`. Objects that
//! `config/rbac` (the operator's RBAC, owned with the operator) or `config/crd` already hold
//! are left to them; the chart tests check that those match the chart too.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::{
    Error, Result, Tools, object_key, parse_manifests, render_chart, render_kustomize, repo_root,
    strip_helm_metadata,
};

/// First line of every generated file.
pub const GENERATED_HEADER: &str = "# Generated from charts/rsession by `cargo run -p rsession-chart-tests --bin kustomize-gen`; do not edit.\n";

/// One generated file: path relative to the repository root, and its full text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// For example `config/manager/operator.yaml`.
    pub path: PathBuf,
    /// YAML stream with [`GENERATED_HEADER`] on top.
    pub text: String,
}

/// The chart's objects (default values, CRDs included) without Helm-only metadata.
///
/// # Errors
/// As [`render_chart`] and [`parse_manifests`].
pub fn chart_objects(tools: &Tools) -> Result<Vec<Value>> {
    let mut objects = parse_manifests("helm template", &render_chart(tools, &[])?)?;
    objects.iter_mut().for_each(strip_helm_metadata);
    Ok(objects)
}

/// Keys ([`object_key`]) of the objects a kustomize folder renders; empty when the folder does
/// not exist yet.
///
/// # Errors
/// As [`render_kustomize`].
pub fn kustomize_keys(tools: &Tools, dir: &str) -> Result<BTreeSet<String>> {
    if !repo_root().join(dir).join("kustomization.yaml").is_file() {
        return Ok(BTreeSet::new());
    }
    let objects = parse_manifests(dir, &render_kustomize(tools, dir)?)?;
    Ok(objects.iter().map(object_key).collect())
}

/// The files `kustomize-gen` writes.
///
/// # Errors
/// As [`chart_objects`]; [`Error::Yaml`] when an object cannot be serialized.
pub fn generate(tools: &Tools) -> Result<Vec<GeneratedFile>> {
    let elsewhere = kustomize_keys(tools, "config/rbac")?;
    let mut buckets: [(&str, Vec<Value>); 3] = [
        ("config/namespace/sessions.yaml", Vec::new()),
        ("config/manager/operator.yaml", Vec::new()),
        ("config/mcp/mcp.yaml", Vec::new()),
    ];
    for object in chart_objects(tools)? {
        // CRDs come from crds/ through config/crd; RBAC that config/rbac holds comes from there.
        let kind = object.get("kind").and_then(Value::as_str);
        if kind == Some("CustomResourceDefinition") || elsewhere.contains(&object_key(&object)) {
            continue;
        }
        // The sessions namespace and what lives in it; the operator's objects; the rest is the
        // MCP frontend and its callers' ClusterRole.
        let component = object
            .pointer("/metadata/labels/app.kubernetes.io~1component")
            .and_then(Value::as_str);
        let in_sessions_namespace = kind == Some("Namespace")
            || (component.is_none() && object.pointer("/metadata/namespace").is_some());
        let bucket = match component {
            _ if in_sessions_namespace => 0,
            Some("operator") => 1,
            _ => 2,
        };
        buckets[bucket].1.push(object);
    }
    buckets
        .into_iter()
        .map(|(path, objects)| {
            let mut text = GENERATED_HEADER.to_owned();
            for object in &objects {
                text.push_str("---\n");
                text.push_str(&serde_saphyr::to_string(object).map_err(|e| Error::Yaml {
                    what: object_key(object),
                    message: e.to_string(),
                })?);
            }
            Ok(GeneratedFile {
                path: path.into(),
                text,
            })
        })
        .collect()
}
