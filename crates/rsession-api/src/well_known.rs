//! Names shared by the operator and the MCP frontend: labels, annotations, ports, Secret keys
//! and mount paths. Changing any of these is a breaking change of the RSession contract.

/// API group of the RSession resource.
pub const GROUP: &str = "rsession.dev";

/// Label put on every child object, value = the RSession's `metadata.name`.
pub const LABEL_SESSION: &str = "rsession.dev/session";
/// Kubernetes recommended label `app.kubernetes.io/name`; value [`APP_NAME`].
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";
/// Kubernetes recommended label `app.kubernetes.io/instance`; value = the RSession's name.
pub const LABEL_APP_INSTANCE: &str = "app.kubernetes.io/instance";
/// Kubernetes recommended label `app.kubernetes.io/component`; value = the child's role
/// (`session`, `credentials`, `workspace`, `network`; `harness` for a pool's harness ConfigMap).
pub const LABEL_APP_COMPONENT: &str = "app.kubernetes.io/component";
/// Kubernetes recommended label `app.kubernetes.io/managed-by`; value [`MANAGER`].
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Kubernetes recommended label `app.kubernetes.io/part-of`; value [`APP_NAME`].
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Value of `app.kubernetes.io/name` and `app.kubernetes.io/part-of`.
pub const APP_NAME: &str = "rsession";
/// The operator's name: value of `app.kubernetes.io/managed-by` and its server-side apply
/// field manager.
pub const MANAGER: &str = "rsession-operator";

/// Label on every pod of an RSessionPool, value = the pool's name. A pod keeps it when an
/// RSession claims it (the pool's NetworkPolicy keeps covering it), so a pool pod is unclaimed
/// exactly when it also lacks [`LABEL_SESSION`].
pub const LABEL_POOL: &str = "rsession.dev/pool";
/// Label on every pool pod: a hash of the pod spec the pool's template produced, so the operator
/// replaces unclaimed pods built from an older template.
pub const LABEL_POOL_TEMPLATE: &str = "rsession.dev/pool-template";
/// Annotation the operator puts on a pool pod when an RSession claims it: RFC 3339 time of the
/// claim.
pub const ANNOTATION_CLAIMED_AT: &str = "rsession.dev/claimed-at";
/// Annotation the operator puts on every session pod: its Rserve `pwdfile` line,
/// `rsession $<SHA-1 of the password, lower-case hex>` (Rserve 1.7+ stored-password format).
/// The pod's downward API volume projects it as Rserve's password file, so the pod mounts no
/// Secret. The hash of a 32-character random password does not reveal it, and a client must
/// send the password itself (Rserve hashes what it receives).
pub const ANNOTATION_RSERVE_PWDFILE: &str = "rsession.dev/rserve-pwdfile";

/// Label the MCP frontend puts on each RSession it creates: `u-` and 48 hex digits of SHA-256
/// of the creating caller's user name (a label value holds at most 63 characters from a small
/// alphabet, so the name itself cannot be stored). Every MCP lookup checks it, so a caller
/// sees only its own sessions.
pub const LABEL_OWNER: &str = "rsession.dev/owner";
/// Annotation the MCP frontend puts on each RSession it creates: the creating caller's user
/// name as authenticated (readable form of [`LABEL_OWNER`]; informational, never used for
/// access).
pub const ANNOTATION_OWNER_NAME: &str = "rsession.dev/owner-name";

/// Annotation the MCP frontend stamps on the RSession after each evaluation: an RFC 3339
/// timestamp (for example `2026-01-02T03:04:05Z`). The operator measures idle time from it.
pub const ANNOTATION_LAST_ACTIVITY: &str = "rsession.dev/last-activity";

/// Annotation the MCP frontend sets when it has checkpointed a session the operator asked it to
/// (phase Checkpointing): the value of `status.checkpointRequestedAt` it answers, RFC 3339.
pub const ANNOTATION_CHECKPOINTED_AT: &str = "rsession.dev/checkpointed-at";

/// Annotation the MCP frontend sets with [`ANNOTATION_CHECKPOINTED_AT`]: one line saying what
/// the checkpoint saved (size, objects, skipped) or why it failed; the operator repeats it in
/// its Event.
pub const ANNOTATION_CHECKPOINT_REPORT: &str = "rsession.dev/checkpoint-report";

/// TCP port Rserve listens on inside the session pod and that the session Service exposes
/// (the QAP1 default port).
pub const RSERVE_PORT: i32 = 6311;
/// Name of the Rserve port on the container and the Service.
pub const RSERVE_PORT_NAME: &str = "rserve";

/// Key of the Rserve login user name in the credentials Secret (`status.credentialsSecret`).
pub const SECRET_KEY_USERNAME: &str = "username";
/// Key of the Rserve password in the credentials Secret.
pub const SECRET_KEY_PASSWORD: &str = "password";
/// Key of the Rserve password file (`<user> <password>` line, Rserve `pwdfile` format) in the
/// credentials Secret. Pods no longer mount it (see [`ANNOTATION_RSERVE_PWDFILE`]); it stays for
/// pods created by operator versions before 2026-12-02, whose Secret volume names this key.
pub const SECRET_KEY_PASSWORD_FILE: &str = "rserve.pwd";

/// Keys the operator reads from the Secret named by `spec.database.secretRef`.
pub mod database_keys {
    /// Database host name or IP address (required).
    pub const HOST: &str = "host";
    /// Database TCP port (optional, default 5432).
    pub const PORT: &str = "port";
    /// Database name (optional).
    pub const DBNAME: &str = "dbname";
    /// Database user (required: the credential proxy logs in as this user).
    pub const USER: &str = "user";
    /// Database password (optional); only the credential proxy sidecar receives it.
    pub const PASSWORD: &str = "password";
    /// libpq `sslmode` of the proxy's connection to the server (optional, default `prefer`).
    pub const SSLMODE: &str = "sslmode";
    /// OMOP CDM schema name (optional).
    pub const SCHEMA: &str = "schema";
    /// Optional key: the OMOP CDM vocabulary schema (default: `schema`).
    pub const VOCABULARY_SCHEMA: &str = "vocabulary_schema";
    /// Optional key: the schema of results tables such as cohorts (default: `schema`).
    pub const RESULTS_SCHEMA: &str = "results_schema";
    /// Optional key: a schema the session may write to (default: `schema`).
    pub const WRITE_SCHEMA: &str = "write_schema";
}

/// Port of the session pod's database credential proxy on its loopback (PgBouncer's usual port).
pub const DATABASE_PROXY_PORT: u16 = 6432;

/// Default PostgreSQL port used when the database Secret has no `port` key.
pub const DEFAULT_DATABASE_PORT: u16 = 5432;

/// Mount path of the workspace volume (emptyDir or PVC).
pub const WORKSPACE_PATH: &str = "/workspace";
/// Mount path of the size-limited scratch emptyDir; Rserve's `workdir` lives below it.
pub const TMP_PATH: &str = "/tmp";
