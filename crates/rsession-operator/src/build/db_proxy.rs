//! The database credential proxy of a session pod with `spec.database`: a native sidecar
//! (`initContainers` entry with `restartPolicy: Always`, so it starts before R and lives as long
//! as the pod) running PgBouncer from the `db-proxy` image. It alone receives the database
//! Secret's host, port, user, password and sslmode; R gets libpq variables that point at the
//! proxy on the pod's loopback and no password. The proxy runs as its own uid and keeps its
//! generated configuration in a memory-backed folder mounted into it alone; the pod shares no
//! process namespace, so R cannot read the proxy's `/proc` either.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, Probe,
    SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rsession_api::well_known::{self as wk, database_keys};

use super::pod::{env, restricted};
use crate::config::OperatorConfig;
use crate::validate::{DatabaseTarget, merged_resources};

/// Name of the sidecar container.
pub const CONTAINER_NAME: &str = "db-proxy";
/// uid and gid of the proxy (the image's `dbproxy` user): not the R container's, so that no
/// file the proxy writes is R's.
pub const PROXY_UID: i64 = 1001;
/// The proxy's address as R sees it: the pod's own loopback.
pub const PROXY_HOST: &str = "127.0.0.1";

const VOLUME: &str = "db-proxy";
/// Where the entrypoint writes PgBouncer's configuration (`PROXY_DIR`).
const PROXY_DIR: &str = "/run/db-proxy";

fn from_secret(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// The R container's database variables: libpq's pointing at the proxy (so
/// `DBI::dbConnect(RPostgres::Postgres())` needs no arguments), the database name and user
/// from the Secret (not secret, and code may show them), the CDM schemas. Never the host or
/// password of the real server.
pub fn r_environment(db: &DatabaseTarget) -> Vec<EnvVar> {
    let secret = db.secret_name.as_str();
    vec![
        env("PGHOST", PROXY_HOST),
        env("PGPORT", &wk::DATABASE_PROXY_PORT.to_string()),
        // Loopback inside the pod: the proxy speaks TLS to the server (the Secret's sslmode).
        env("PGSSLMODE", "disable"),
        from_secret("PGDATABASE", secret, database_keys::DBNAME, true),
        from_secret("PGUSER", secret, database_keys::USER, false),
        from_secret("CDM_SCHEMA", secret, database_keys::SCHEMA, true),
        from_secret(
            "CDM_VOCABULARY_SCHEMA",
            secret,
            database_keys::VOCABULARY_SCHEMA,
            true,
        ),
        from_secret(
            "CDM_RESULTS_SCHEMA",
            secret,
            database_keys::RESULTS_SCHEMA,
            true,
        ),
        from_secret(
            "CDM_WRITE_SCHEMA",
            secret,
            database_keys::WRITE_SCHEMA,
            true,
        ),
    ]
}

/// The sidecar's environment, read by `images/db-proxy/entrypoint.sh`.
fn proxy_environment(db: &DatabaseTarget) -> Vec<EnvVar> {
    let secret = db.secret_name.as_str();
    vec![
        from_secret("DB_HOST", secret, database_keys::HOST, false),
        from_secret("DB_PORT", secret, database_keys::PORT, true),
        from_secret("DB_USER", secret, database_keys::USER, false),
        from_secret("DB_PASSWORD", secret, database_keys::PASSWORD, true),
        from_secret("DB_SSLMODE", secret, database_keys::SSLMODE, true),
        env("DB_READ_ONLY", if db.read_only { "true" } else { "false" }),
        env("PROXY_DIR", PROXY_DIR),
        env("PROXY_PORT", &wk::DATABASE_PROXY_PORT.to_string()),
    ]
}

/// The sidecar container: restricted like the R container (non-root, read-only root, no
/// capabilities, RuntimeDefault seccomp), Ready when PgBouncer accepts a connection on the
/// pod's loopback.
pub fn container(db: &DatabaseTarget, config: &OperatorConfig) -> Container {
    let proxy = &config.database_proxy;
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(proxy.image.clone()),
        image_pull_policy: Some(proxy.image_pull_policy.as_str().into()),
        // Native sidecar (Kubernetes 1.29+): started before the R container, restarted if it
        // exits, stopped after it.
        restart_policy: Some("Always".into()),
        env: Some(proxy_environment(db)),
        ports: Some(vec![ContainerPort {
            name: Some("postgres-proxy".into()),
            container_port: i32::from(wk::DATABASE_PROXY_PORT),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // The proxy listens on the pod's loopback only (anything that reaches its port may use
        // the database), where the kubelet's TCP probes, which dial the pod IP, cannot see it:
        // the probe connects from inside the container (bash's /dev/tcp; no client needed).
        readiness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(
                    [
                        "/bin/bash",
                        "-c",
                        &format!("exec 3<>/dev/tcp/{PROXY_HOST}/{}", wk::DATABASE_PROXY_PORT),
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
            }),
            period_seconds: Some(1),
            failure_threshold: Some(3),
            timeout_seconds: Some(1),
            ..Probe::default()
        }),
        resources: Some(merged_resources(None, &proxy.resources)),
        security_context: Some(restricted(PROXY_UID)),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.into(),
            mount_path: PROXY_DIR.into(),
            read_only: Some(false),
            ..VolumeMount::default()
        }]),
        // The entrypoint's refusal (a Secret key it cannot use) becomes the termination
        // message, which the operator shows in status.message while the pod waits.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

/// The proxy's private folder: tmpfs, so the generated configuration (which holds the
/// password) never reaches the node's disk.
pub fn volume() -> Volume {
    Volume {
        name: VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity("1Mi".into())),
        }),
        ..Volume::default()
    }
}
