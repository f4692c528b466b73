//! `rsession.dev/v1alpha1`: the RSessionPool custom resource, a pool of Ready, unclaimed session
//! pods that RSessions with `spec.poolRef` bind to in one API call instead of starting a pod.
//!
//! As in [`crate::v1alpha1`], every doc comment on a field is the `kubectl explain` text.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::v1alpha1::{
    DatabaseSpec, ImagePullPolicy, LifecycleSpec, NetworkSpec, RSessionSpec, SessionResources,
    WorkspaceSpec,
};

/// A pool of warm R sessions: the operator keeps `spec.replicas` session pods Ready and
/// unclaimed, each with its own Rserve credentials, under the pool's NetworkPolicy. An RSession
/// naming the pool in `spec.poolRef` takes one of them over (the pod and its credentials Secret
/// become the RSession's) and the pool starts a replacement. Pool pods have an
/// Ephemeral workspace; Persistent sessions always start cold.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "rsession.dev",
    version = "v1alpha1",
    kind = "RSessionPool",
    plural = "rsessionpools",
    singular = "rsessionpool",
    shortname = "rspool",
    category = "rsession",
    namespaced,
    status = "RSessionPoolStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    validation = Rule::new("self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS-1035 label (lower-case letters, digits, '-', starting with a letter) of at most 40 characters: pool pods are named <pool>-<5 characters>"),
    doc = "A pool of Ready, unclaimed R session pods (Rserve, QAP1 on port 6311). RSessions with spec.poolRef bind to one at once instead of starting a pod; the pool then starts a replacement.",
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas", description = "Unclaimed pods the pool keeps"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Unclaimed pods whose readiness probe connected to Rserve"),
    printcolumn(name = "Claimed", type_ = "integer", json_path = ".status.claimedReplicas", description = "Pods of this pool now bound to an RSession"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp", description = "Time since the RSessionPool was created")
)]
#[serde(rename_all = "camelCase")]
pub struct RSessionPoolSpec {
    /// Number of Ready, unclaimed session pods to keep (0 to 200). A claim takes one out of the
    /// pool and the operator starts a replacement. Also set through the scale subresource
    /// (`kubectl scale rsessionpool`, a HorizontalPodAutoscaler).
    #[schemars(range(min = 0, max = 200))]
    pub replicas: i32,

    /// How many pool pods may be starting (created, not Ready yet) at once, 1 to 200; default
    /// 3 ([`DEFAULT_MAX_STARTING`]). Each starting pod starts R and loads its packages, about a
    /// CPU-second; capping them keeps a refill after a burst of claims from taking the CPU the
    /// claims, the operator and the API server need at that moment. Raise it on many nodes to
    /// fill a large pool faster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 200))]
    pub max_starting: Option<i32>,

    /// The pod-shaping part of an RSession spec that every pool pod is built from. Changing it
    /// replaces the unclaimed pods; pods already claimed are never touched.
    #[serde(default)]
    pub template: SessionTemplate,
}

/// `spec.maxStarting` when it is not set.
pub const DEFAULT_MAX_STARTING: i32 = 3;

/// The pod-shaping fields of an RSession spec (see `kubectl explain rsession.spec` for each):
/// what a pool pod is built from, and what an RSession with `spec.poolRef` runs with.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionTemplate {
    /// Container image with R and Rserve. Defaults to the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When the kubelet pulls the image (Kubernetes `imagePullPolicy`). Defaults to the
    /// operator's configured policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// CPU, memory and ephemeral-storage requests and limits of the R container; amounts left
    /// out come from the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<SessionResources>,

    /// Network access of pool pods (the pool's NetworkPolicy): egress denied unless listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,

    /// A PostgreSQL database pool pods reach through their credential proxy sidecar, as in
    /// `rsession.spec.database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,

    /// RuntimeClass of pool pods (`pod.spec.runtimeClassName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub runtime_class_name: Option<String>,

    /// Node labels pool pods must match (`pod.spec.nodeSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of pool pods (`pod.spec.tolerations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

impl SessionTemplate {
    /// The RSession spec a session built from this template runs with: the template's fields,
    /// an Ephemeral workspace and `lifecycle`.
    pub fn to_spec(&self, lifecycle: LifecycleSpec) -> RSessionSpec {
        RSessionSpec {
            image: self.image.clone(),
            image_pull_policy: self.image_pull_policy,
            resources: self.resources.clone(),
            workspace: WorkspaceSpec::default(),
            network: self.network.clone(),
            database: self.database.clone(),
            lifecycle,
            runtime_class_name: self.runtime_class_name.clone(),
            node_selector: self.node_selector.clone(),
            tolerations: self.tolerations.clone(),
            pool_ref: None,
        }
    }
}

/// Observed state of an RSessionPool, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RSessionPoolStatus {
    /// Unclaimed pool pods that exist (Ready or starting); the scale subresource's replicas.
    #[serde(default)]
    pub replicas: i32,

    /// Unclaimed pool pods that are Ready: what the next claims can bind to at once.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Pods that came from this pool and are now bound to an RSession.
    #[serde(default)]
    pub claimed_replicas: i32,

    /// Label selector of the pool's unclaimed pods, for the scale subresource (an
    /// HorizontalPodAutoscaler reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions: Ready (True when readyReplicas reaches spec.replicas; reason Filling while
    /// pods start, InvalidTemplate when the template cannot be realised).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Human-readable detail, for example why the template cannot be realised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
