//! `rsession.dev/v1alpha1`: the RSession custom resource.
//!
//! Every doc comment on a field below becomes the `description` in the CRD's OpenAPI schema and
//! therefore the text `kubectl explain rsession.spec...` prints. Defaults and validation live in
//! the schema (OpenAPI keywords where a rule concerns one field, CEL `x-kubernetes-validations`
//! where a rule spans fields or compares with the previous object).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pattern of a Kubernetes (Go `time.ParseDuration`) duration string without sign, for example
/// `90s`, `30m`, `1h30m`, `1.5h`. CEL rules then compare values with `duration()`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// An R session on Kubernetes: one locked-down pod running Rserve, with its credentials,
/// Rserve configuration, Service, NetworkPolicy and (optionally) a persistent workspace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "rsession.dev",
    version = "v1alpha1",
    kind = "RSession",
    plural = "rsessions",
    singular = "rsession",
    shortname = "rsess",
    category = "rsession",
    namespaced,
    status = "RSessionStatus",
    derive = "PartialEq",
    validation = Rule::new("self.metadata.name.size() <= 48 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS-1035 label (lower-case letters, digits, '-', starting with a letter) of at most 48 characters: the session Service is named after it"),
    validation = Rule::new("!has(self.spec.poolRef) || (!has(self.spec.image) && !has(self.spec.imagePullPolicy) && !has(self.spec.resources) && !has(self.spec.network) && !has(self.spec.database) && !has(self.spec.runtimeClassName) && !has(self.spec.nodeSelector) && !has(self.spec.tolerations))")
        .message("with spec.poolRef the pod comes from the pool's template: leave image, imagePullPolicy, resources, network, database, runtimeClassName, nodeSelector and tolerations unset"),
    validation = Rule::new("!has(self.spec.poolRef) || self.spec.workspace.kind == 'Ephemeral'")
        .message("spec.poolRef needs an Ephemeral workspace: a Persistent session always starts cold"),
    validation = Rule::new("has(self.spec.poolRef) == has(oldSelf.spec.poolRef) && (!has(self.spec.poolRef) || self.spec.poolRef.name == oldSelf.spec.poolRef.name)")
        .message("spec.poolRef is immutable"),
    doc = "An R session for AI agents and people: a locked-down pod running Rserve (QAP1 on port 6311) with per-session credentials, a workspace at /workspace, network policy and idle/lifetime expiry. See spec and status for details.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Lifecycle phase of the session"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the kubelet's readiness probe connected to Rserve at status.endpoint"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp", description = "Time since the RSession was created"),
    printcolumn(name = "Idle", type_ = "date", json_path = ".status.lastActivityTime", description = "Time since the last evaluation (from the rsession.dev/last-activity annotation)"),
    printcolumn(name = "Warm", type_ = "string", json_path = ".status.claim.warm", priority = 1, description = "Whether the session was bound to a Ready pod of spec.poolRef (true) or started cold (false)"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint", priority = 1, description = "Pod IP and Rserve port (IP:6311) while Ready: the address the readiness probe connected to")
)]
#[serde(rename_all = "camelCase")]
pub struct RSessionSpec {
    /// Container image with R and Rserve. Defaults to the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When the kubelet pulls the image (Kubernetes `imagePullPolicy`). Defaults to the
    /// operator's configured policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// CPU, memory and ephemeral-storage requests and limits of the R container. Any amount left
    /// out is taken from the operator's defaults, so the pod always has limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<SessionResources>,

    /// The workspace volume mounted at /workspace: an emptyDir (Ephemeral) or a
    /// PersistentVolumeClaim (Persistent) that survives suspend and pod loss.
    #[serde(default)]
    pub workspace: WorkspaceSpec,

    /// Network access of the session pod. Egress is denied by default; ingress is only allowed
    /// from the MCP frontend's pods on the Rserve port 6311.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,

    /// A database the session may reach, for example an OMOP CDM on PostgreSQL. Its Secret's
    /// keys become libpq environment variables in R, and the NetworkPolicy opens exactly its
    /// host and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,

    /// Idle timeout, maximum lifetime and suspension of the session.
    #[serde(default)]
    pub lifecycle: LifecycleSpec,

    /// RuntimeClass of the session pod (for example gVisor or Kata); passed through to
    /// `pod.spec.runtimeClassName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub runtime_class_name: Option<String>,

    /// Node labels the session pod must match; passed through to `pod.spec.nodeSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the session pod; passed through to `pod.spec.tolerations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// An RSessionPool in the same namespace to take a Ready pod from (a warm start, bound in
    /// one API call). The pod is built from the pool's template, so image, resources, network,
    /// database, runtimeClassName, nodeSelector and tolerations must be left unset here. When
    /// the pool has no Ready unclaimed pod the session starts cold from the same template
    /// (condition Claimed False, reason PoolEmpty). Ephemeral workspaces only; immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_ref: Option<PoolReference>,
}

/// Reference to an RSessionPool in the RSession's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct PoolReference {
    /// Name of the RSessionPool.
    #[schemars(length(min = 1, max = 40))]
    pub name: String,
}

/// Kubernetes image pull policy (`Always`, `IfNotPresent`, `Never`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullPolicy {
    /// Pull the image every time the pod starts.
    Always,
    /// Pull the image only when it is not on the node.
    IfNotPresent,
    /// Never pull; the image must already be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling, as used in `container.imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Requests and limits of the R container (Kubernetes `ResourceRequirements`, restricted to
/// cpu, memory and ephemeral-storage).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionResources {
    /// Amounts the scheduler reserves for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// Amounts the container may not exceed. At the memory limit the kernel kills the largest
    /// process in the container: usually the R process of one connection (its R state is lost,
    /// the session goes on), sometimes the Rserve parent (the pod fails, status.message names
    /// OOMKilled and the limit). Files in /tmp are held in memory and count toward it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// Amounts of cpu, memory and ephemeral-storage (Kubernetes quantities such as `500m`, `2Gi`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
pub struct ResourceAmounts {
    /// CPU in cores (`1`, `500m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory in bytes (`512Mi`, `2Gi`). The limit covers R and the files in /tmp, a
    /// memory-backed tmpfs sized by the operator's tmpSizeLimit and at most half this limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Local ephemeral storage in bytes (`1Gi`); counts container writes and an Ephemeral
    /// /workspace (not /tmp, which is held in memory).
    #[serde(
        default,
        rename = "ephemeral-storage",
        skip_serializing_if = "Option::is_none"
    )]
    pub ephemeral_storage: Option<Quantity>,
}

/// Workspace volume mounted at /workspace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(

    validation = Rule::new("!has(self.existingClaim) || self.kind == 'Persistent'")
        .message("workspace.existingClaim is only allowed when workspace.kind is Persistent")
        .field_path(".existingClaim"),
    validation = Rule::new("self.kind != 'Persistent' || has(self.existingClaim) || has(self.size)")
        .message("workspace.size is required when workspace.kind is Persistent and no existingClaim is given")
        .field_path(".size"),
    validation = Rule::new("self.kind == 'Persistent' || (!has(self.size) && !has(self.storageClassName))")
        .message("workspace.size and workspace.storageClassName are only allowed when workspace.kind is Persistent"),
    validation = Rule::new("has(self.existingClaim) == has(oldSelf.existingClaim) && (!has(self.existingClaim) || self.existingClaim == oldSelf.existingClaim)")
        .message("workspace.existingClaim is immutable")
        .field_path(".existingClaim"),
    validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)")
        .message("workspace.storageClassName is immutable")
        .field_path(".storageClassName"),
    validation = Rule::new("has(self.size) == has(oldSelf.size) && (!has(self.size) || self.size == oldSelf.size)")
        .message("workspace.size is immutable")
        .field_path(".size"),
)]
pub struct WorkspaceSpec {
    /// Ephemeral: an emptyDir that lives as long as the pod. Persistent: a PersistentVolumeClaim
    /// that survives suspend, expiry and pod loss. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("workspace.kind is immutable"))]
    pub kind: WorkspaceKind,

    /// Size of the workspace: the emptyDir size limit for Ephemeral (optional), the PVC storage
    /// request for Persistent (required unless existingClaim is set). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,

    /// StorageClass of the PVC the operator creates for a Persistent workspace; the cluster
    /// default when unset. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,

    /// Name of an existing PVC in the same namespace to mount instead of creating one (Persistent
    /// only). The operator never deletes it. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub existing_claim: Option<String>,

    /// What happens to the PVC the operator created when the RSession is deleted: Delete (the
    /// default; garbage-collected with the RSession) or Retain (left in place, unowned).
    #[serde(default)]
    pub retain_policy: RetainPolicy,
}

impl Default for WorkspaceSpec {
    fn default() -> Self {
        Self {
            kind: WorkspaceKind::Ephemeral,
            size: None,
            storage_class_name: None,
            existing_claim: None,
            retain_policy: RetainPolicy::Delete,
        }
    }
}

/// Kind of workspace volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WorkspaceKind {
    /// An emptyDir: files live as long as the session pod.
    #[default]
    Ephemeral,
    /// A PersistentVolumeClaim: files survive suspend, expiry and pod loss.
    Persistent,
}

/// What happens to an operator-created workspace PVC when the RSession is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RetainPolicy {
    /// The PVC is owned by the RSession and garbage-collected with it.
    #[default]
    Delete,
    /// The PVC has no owner reference and stays after the RSession is deleted.
    Retain,
}

/// Network access of the session pod beyond the MCP frontend's ingress.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Egress allow-list. Empty (the default) means no egress at all, except what `database`
    /// opens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub egress: Vec<EgressRule>,
}

/// One allowed egress destination.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Destination network in CIDR notation (`10.1.2.3/32`, `192.168.0.0/16`, `fd00::/8`).
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("cidr must be a valid CIDR such as 10.0.0.0/8"))]
    pub cidr: String,
    /// TCP ports allowed to that network; empty means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 1, max = 65535)))]
    pub ports: Vec<i32>,
}

/// A PostgreSQL database the session may reach, through a credential proxy: the pod gets a
/// `db-proxy` sidecar (PgBouncer) that alone holds the Secret's password and listens on the
/// pod's loopback, port 6432. R never sees the password.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Secret in the RSession's namespace with the keys host (required), port (default 5432),
    /// dbname, user (required), password, sslmode (the proxy's TLS mode towards the server:
    /// disable, allow, prefer (default), require, verify-ca, verify-full) and schema, and
    /// optionally vocabulary_schema, results_schema and write_schema. Only the proxy sidecar
    /// receives host, port, user, password and sslmode. In R, libpq's variables point at the
    /// proxy (PGHOST=127.0.0.1, PGPORT=6432, PGSSLMODE=disable, with PGDATABASE and PGUSER from
    /// the Secret and no PGPASSWORD), so `DBI::dbConnect(RPostgres::Postgres())` needs no
    /// arguments; the schemas appear as CDM_SCHEMA, CDM_VOCABULARY_SCHEMA, CDM_RESULTS_SCHEMA
    /// and CDM_WRITE_SCHEMA. A schema marks the database as an OMOP CDM: sessions started
    /// through the MCP frontend then hold `cdm`, a handle on its tables (CDMConnector's, or
    /// lazy dbplyr tables). The NetworkPolicy opens egress to host and port only.
    pub secret_ref: SecretReference,

    /// When true (the default) every server connection of the proxy starts with
    /// `default_transaction_read_only = on`, so a write from R fails with PostgreSQL's "cannot
    /// execute INSERT in a read-only transaction". A guard against mistakes, not an access
    /// control: code may turn the setting off for its own connection, so grant the database user
    /// only what it needs (for example SELECT on the CDM schemas).
    #[serde(default = "default_true")]
    pub read_only: bool,
}

/// Reference to a Secret in the RSession's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_idle_timeout() -> Duration {
    std::time::Duration::from_secs(60 * 60).into()
}

fn default_max_lifetime() -> Duration {
    std::time::Duration::from_secs(24 * 60 * 60).into()
}

/// Timers and suspension.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(

    validation = Rule::new("duration(self.idleTimeout) <= duration(self.maxLifetime)")
        .message("lifecycle.idleTimeout must not be longer than lifecycle.maxLifetime")
        .field_path(".idleTimeout"),
)]
pub struct LifecycleSpec {
    /// How long the session may go without an evaluation (measured from the
    /// rsession.dev/last-activity annotation, else from the pod's start) before it expires:
    /// the pod is deleted and the phase becomes Expired; a Persistent workspace is kept. A newer
    /// activity stamp brings the session back. Kubernetes duration such as 30m or 1h30m.
    #[serde(default = "default_idle_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("lifecycle.idleTimeout must be at least 1s"))]
    pub idle_timeout: Duration,

    /// Longest time the session may exist, measured from the RSession's creation; after it the
    /// pod is deleted and the phase becomes Expired (a Persistent workspace is kept). Kubernetes
    /// duration such as 8h.
    #[serde(default = "default_max_lifetime")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("lifecycle.maxLifetime must be at least 1s"))]
    pub max_lifetime: Duration,

    /// When true the pod is deleted while the Persistent workspace, Secret and Service stay;
    /// setting it back to false starts a new pod. R state is lost unless the MCP frontend
    /// checkpoints it first (spec.lifecycle.checkpoint), which it restores into the new pod.
    #[serde(default)]
    pub suspend: bool,

    /// Checkpoints of R state (global environment, attached packages, datasets) into the
    /// workspace's `.rsession/checkpoint` folder by the MCP frontend that holds the session's R.
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
}

fn default_checkpoint_timeout() -> Duration {
    std::time::Duration::from_secs(60).into()
}

fn default_true() -> bool {
    true
}

/// When the MCP frontend saves a session's R state into its workspace.
///
/// Before the operator deletes the pod of a Persistent session for its idle timeout, maximum
/// lifetime or a suspend, it sets phase Checkpointing and status.checkpointRequestedAt; the frontend holding
/// the session's R writes a checkpoint and answers with the annotation
/// rsession.dev/checkpointed-at (the requested time); the pod is deleted then, or after
/// `timeout` without an answer. The frontend restores the checkpoint into the next R it connects
/// to after a lost or expired pod, and says so in that call's result.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// Ask the MCP frontend for a checkpoint before the operator stops the pod of a Persistent
    /// session for its idle timeout, its maximum lifetime or spec.lifecycle.suspend (default
    /// true). Ephemeral workspaces end with their pod, so they are never held for a checkpoint.
    #[serde(default = "default_true")]
    pub before_stop: bool,

    /// Longest wait for the frontend's checkpoint before the pod is deleted anyway. Kubernetes
    /// duration, default 60s.
    #[serde(default = "default_checkpoint_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("lifecycle.checkpoint.timeout must be between 1s and 1h"))]
    pub timeout: Duration,

    /// Periodic checkpoints: after an evaluation, the frontend checkpoints the session when its
    /// last checkpoint is older than this, so a pod lost without warning restores from at most
    /// this long ago. Unset: no periodic checkpoints. Kubernetes duration such as 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("lifecycle.checkpoint.interval must be at least 1s"))]
    pub interval: Option<Duration>,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            before_stop: true,
            timeout: default_checkpoint_timeout(),
            interval: None,
        }
    }
}

impl Default for LifecycleSpec {
    fn default() -> Self {
        Self {
            idle_timeout: default_idle_timeout(),
            max_lifetime: default_max_lifetime(),
            suspend: false,
            checkpoint: CheckpointSpec::default(),
        }
    }
}

/// Observed state of an RSession, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RSessionStatus {
    /// Lifecycle phase: Pending, Starting, Ready, Suspended, Checkpointing, Expired or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// Conditions (Ready, PodScheduled, Expired, StateReset, and Claimed with spec.poolRef), one per type; a
    /// condition's lastTransitionTime changes only when its status changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Name of the current session pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,

    /// UID of the session pod last seen; a different UID means the R state was reset.
    #[serde(default, rename = "podUID", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,

    /// IP address of the current session pod (its status.podIP), set while the phase is Starting
    /// or Ready. Rserve listens on port 6311 there once R has started, its packages are loaded
    /// and the egress check passed, which can be up to a readiness-probe period (1 s) before
    /// the phase turns Ready: a client holding the session's credentials may connect from then
    /// on (the MCP frontend does for sessions without a database, whose proxy sidecar may still
    /// be starting, so a cold start does not wait for the probe).
    #[serde(default, rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,

    /// Number of times a session pod was replaced (R state lost) since the RSession was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_resets: Option<i32>,

    /// Where QAP1 clients connect, set only while the phase is Ready: the session pod's IP
    /// (pod status.podIP) and the Rserve port, for example `10.244.0.12:6311` or
    /// `[fd00::c]:6311`. Ready means the kubelet's readiness probe connected to exactly this
    /// address, and a pod address needs no kube-proxy step, so it accepts connections as soon as
    /// Ready is True. A new pod (after suspend, expiry or pod loss) has a new address. The
    /// Service named after the RSession (`<name>.<namespace>.svc:6311`) also reaches Rserve, for
    /// people, but may refuse connections for a moment after the pod turns Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Name of the Secret with the Rserve credentials (keys username and password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,

    /// When the current session pod started (its status.startTime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// Time of the last evaluation, from the rsession.dev/last-activity annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_time: Option<Time>,

    /// Human-readable detail of the current phase, for example why the pod failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Set while the phase is Checkpointing: when the operator asked the MCP frontend for a
    /// checkpoint. The frontend answers by setting the annotation rsession.dev/checkpointed-at to
    /// this exact value (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_requested_at: Option<Time>,

    /// Set for sessions with spec.poolRef once the operator bound them: to a Ready pool pod
    /// (warm) or, with the pool empty, to a pod started for them (cold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimStatus>,
}

/// How an RSession with spec.poolRef got its pod (`status.claim`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    /// The RSessionPool (spec.poolRef.name).
    pub pool: String,
    /// True: bound to a pod the pool had Ready. False: the pool had none Ready and unclaimed, so
    /// a pod was started for this session (a cold start).
    pub warm: bool,
    /// Name of the pool pod taken over (warm only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// When the operator bound the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<Time>,
    /// Milliseconds the operator's binding took: from the start of the reconcile that claimed
    /// to the pool pod being relabelled (warm), or to the decision to start cold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_milliseconds: Option<i64>,
}

/// Lifecycle phase of an RSession (`status.phase`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; children are being created or the pod is not scheduled yet.
    Pending,
    /// The pod is scheduled; R is starting, the egress check runs, or Rserve is not ready yet.
    Starting,
    /// The kubelet's readiness probe connected to Rserve at status.endpoint (the pod's IP).
    Ready,
    /// spec.lifecycle.suspend is true: no pod; the workspace PVC is kept.
    Suspended,
    /// The idle timeout or maximum lifetime of a Persistent session passed, or it is being
    /// suspended, and the MCP frontend is saving its R state (spec.lifecycle.checkpoint); the pod
    /// is deleted when it answers or after spec.lifecycle.checkpoint.timeout.
    Checkpointing,
    /// The idle timeout or maximum lifetime passed: no pod; a Persistent workspace is kept.
    Expired,
    /// The pod failed (OOMKilled, Evicted, Error) or the spec cannot be realised.
    Failed,
}

impl Phase {
    /// The spelling used in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Ready => "Ready",
            Self::Suspended => "Suspended",
            Self::Checkpointing => "Checkpointing",
            Self::Expired => "Expired",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
