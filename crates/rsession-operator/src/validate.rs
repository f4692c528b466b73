//! Pure validation: turns a fetched RSession (plus the database Secret, when the spec names one)
//! into a [`Session`] with every default filled in, or a [`SpecError`] the user must fix.
//!
//! The CRD schema already rejects most bad specs at admission; what is left here needs data the
//! schema cannot see (the database Secret's contents) or the operator's configuration.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ResourceRequirements, Secret, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rsession_api::well_known::{self as wk, database_keys};
use rsession_api::{
    EgressRule, ImagePullPolicy, LifecycleSpec, RSession, ResourceAmounts, WorkspaceSpec,
};

use crate::build::controller_owner_reference;
use crate::config::OperatorConfig;

/// A validated RSession with operator defaults applied: the input of every builder.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// `metadata.name` of the RSession.
    pub name: String,
    /// `metadata.namespace` of the RSession.
    pub namespace: String,
    /// Controller owner reference pointing at the RSession.
    pub owner_reference: OwnerReference,
    /// Container image (spec or operator default).
    pub image: String,
    /// Image pull policy (spec or operator default).
    pub image_pull_policy: ImagePullPolicy,
    /// Requests and limits, each amount from the spec or the operator default.
    pub resources: ResourceRequirements,
    /// Workspace volume.
    pub workspace: WorkspaceSpec,
    /// Egress allow-list.
    pub egress: Vec<EgressRule>,
    /// Database the pod may reach, from the Secret named in `spec.database.secretRef`.
    pub database: Option<DatabaseTarget>,
    /// Timers and suspension.
    pub lifecycle: LifecycleSpec,
    /// `pod.spec.runtimeClassName` pass-through.
    pub runtime_class_name: Option<String>,
    /// `pod.spec.nodeSelector` pass-through.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// `pod.spec.tolerations` pass-through.
    pub tolerations: Option<Vec<Toleration>>,
}

/// Database host and port read from the database Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseTarget {
    /// Name of the Secret (its keys become environment variables in the pod).
    pub secret_name: String,
    /// `host` key: an IP address (allowed as a /32 or /128) or a DNS name (resolved by the
    /// operator; DNS egress to cluster DNS is then allowed too).
    pub host: DatabaseHost,
    /// `port` key, default 5432.
    pub port: u16,
    /// `spec.database.readOnly`: the credential proxy sets `default_transaction_read_only`.
    pub read_only: bool,
}

/// The `host` key of a database Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseHost {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name.
    Name(String),
}

/// Why an RSession cannot be realised as written. Shown in `status.message` and the Ready
/// condition (reason `InvalidSpec`); the operator waits for the spec or the Secret to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A metadata field the operator needs is missing (never the case for objects read from an
    /// apiserver).
    #[error("metadata.{0} is missing")]
    MissingMetadata(&'static str),
    /// `spec.database.secretRef` names a Secret that does not exist.
    #[error("database Secret {0:?} not found in the RSession's namespace")]
    DatabaseSecretNotFound(String),
    /// `spec.poolRef` names an RSessionPool that does not exist in the RSession's namespace.
    #[error("RSessionPool {0:?} (spec.poolRef) not found in the RSession's namespace")]
    PoolNotFound(String),
    /// The database Secret lacks a required key or has an unusable value.
    #[error("database Secret {secret:?}: key {key:?} {problem}")]
    DatabaseSecretKey {
        /// Secret name.
        secret: String,
        /// Offending key.
        key: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl SpecError {
    /// Kubernetes condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingMetadata(_) => "InvalidMetadata",
            Self::DatabaseSecretNotFound(_) => "DatabaseSecretNotFound",
            Self::PoolNotFound(_) => "PoolNotFound",
            Self::DatabaseSecretKey { .. } => "InvalidDatabaseSecret",
        }
    }
}

/// The RSession as the operator realises it: with `spec.poolRef`, the pool's template supplies
/// every pod-shaping field (the CRD's rules keep them unset on the RSession), the RSession keeps
/// its workspace and lifecycle. Without a poolRef, `rs` itself.
///
/// # Errors
/// [`SpecError::PoolNotFound`] when `spec.poolRef` is set and `pool` is `None`.
pub fn effective_rsession<'a>(
    rs: &'a RSession,
    pool: Option<&rsession_api::RSessionPool>,
) -> Result<std::borrow::Cow<'a, RSession>, SpecError> {
    let Some(pool_ref) = &rs.spec.pool_ref else {
        return Ok(std::borrow::Cow::Borrowed(rs));
    };
    let pool = pool.ok_or_else(|| SpecError::PoolNotFound(pool_ref.name.clone()))?;
    let mut effective = rs.clone();
    let mut spec = pool.spec.template.to_spec(rs.spec.lifecycle.clone());
    spec.workspace = rs.spec.workspace.clone();
    spec.pool_ref = rs.spec.pool_ref.clone();
    effective.spec = spec;
    Ok(std::borrow::Cow::Owned(effective))
}

/// Validates `rs` against the operator `config` and the database Secret (`None` when the spec
/// has no database or the Secret was not found).
///
/// # Errors
/// [`SpecError`] describing the first problem found.
pub fn validate(
    rs: &RSession,
    config: &OperatorConfig,
    database_secret: Option<&Secret>,
) -> Result<Session, SpecError> {
    let name = rs
        .metadata
        .name
        .clone()
        .ok_or(SpecError::MissingMetadata("name"))?;
    let namespace = rs
        .metadata
        .namespace
        .clone()
        .ok_or(SpecError::MissingMetadata("namespace"))?;
    let uid = rs
        .metadata
        .uid
        .as_deref()
        .ok_or(SpecError::MissingMetadata("uid"))?;
    let spec = &rs.spec;

    let database = match &spec.database {
        None => None,
        Some(db) => {
            let secret = database_secret
                .ok_or_else(|| SpecError::DatabaseSecretNotFound(db.secret_ref.name.clone()))?;
            Some(database_target(&db.secret_ref.name, db.read_only, secret)?)
        }
    };

    Ok(Session {
        owner_reference: controller_owner_reference(&name, uid),
        name,
        namespace,
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| config.default_image.clone()),
        image_pull_policy: spec
            .image_pull_policy
            .unwrap_or(config.default_image_pull_policy),
        resources: merged_resources(spec.resources.as_ref(), &config.default_resources),
        workspace: spec.workspace.clone(),
        egress: spec
            .network
            .as_ref()
            .map(|n| n.egress.clone())
            .unwrap_or_default(),
        database,
        lifecycle: spec.lifecycle.clone(),
        runtime_class_name: spec.runtime_class_name.clone(),
        node_selector: spec.node_selector.clone(),
        tolerations: spec.tolerations.clone(),
    })
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

/// libpq `sslmode` values the credential proxy accepts (PgBouncer's `server_tls_sslmode`).
const SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

fn database_target(
    secret_name: &str,
    read_only: bool,
    secret: &Secret,
) -> Result<DatabaseTarget, SpecError> {
    let key_error = |key, problem| SpecError::DatabaseSecretKey {
        secret: secret_name.to_owned(),
        key,
        problem,
    };
    let host = secret_value(secret, database_keys::HOST)
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| key_error(database_keys::HOST, "is missing or empty"))?;
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => DatabaseHost::Ip(ip),
        Err(_) if is_dns_name(&host) => DatabaseHost::Name(host),
        Err(_) => {
            return Err(key_error(
                database_keys::HOST,
                "is neither an IP address nor a DNS name",
            ));
        }
    };
    let port = match secret_value(secret, database_keys::PORT) {
        None => wk::DEFAULT_DATABASE_PORT,
        Some(p) => p
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| key_error(database_keys::PORT, "is not a TCP port (1-65535)"))?,
    };
    // The credential proxy logs in as this user, and writes the values into its configuration
    // one per line: checked here so that a bad Secret is an InvalidSpec condition, not a
    // sidecar that keeps failing.
    if secret_value(secret, database_keys::USER).is_none_or(|u| u.trim().is_empty()) {
        return Err(key_error(database_keys::USER, "is missing or empty"));
    }
    for key in [database_keys::USER, database_keys::PASSWORD] {
        if secret_value(secret, key).is_some_and(|v| v.contains(['\n', '\r'])) {
            return Err(key_error(key, "holds a line break"));
        }
    }
    if let Some(mode) = secret_value(secret, database_keys::SSLMODE)
        && !SSLMODES.contains(&mode.trim())
    {
        return Err(key_error(
            database_keys::SSLMODE,
            "is not one of disable, allow, prefer, require, verify-ca, verify-full",
        ));
    }
    Ok(DatabaseTarget {
        secret_name: secret_name.to_owned(),
        host,
        port,
        read_only,
    })
}

/// RFC 1123 host name: dot-separated labels of letters, digits and '-', at most 253 bytes.
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `spec`'s amounts, each missing one taken from `defaults`, as a container's resources.
pub(crate) fn merged_resources(
    spec: Option<&rsession_api::SessionResources>,
    defaults: &rsession_api::SessionResources,
) -> ResourceRequirements {
    let merge = |given: Option<&ResourceAmounts>, default: Option<&ResourceAmounts>| {
        let pick = |f: fn(&ResourceAmounts) -> Option<&Quantity>| {
            given.and_then(f).or_else(|| default.and_then(f)).cloned()
        };
        let map: BTreeMap<String, Quantity> = [
            ("cpu", pick(|a| a.cpu.as_ref())),
            ("memory", pick(|a| a.memory.as_ref())),
            ("ephemeral-storage", pick(|a| a.ephemeral_storage.as_ref())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
        (!map.is_empty()).then_some(map)
    };
    ResourceRequirements {
        requests: merge(
            spec.and_then(|r| r.requests.as_ref()),
            defaults.requests.as_ref(),
        ),
        limits: merge(
            spec.and_then(|r| r.limits.as_ref()),
            defaults.limits.as_ref(),
        ),
        ..ResourceRequirements::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{database_secret, database_secret_exactly, rsession};
    use rsession_api::{DatabaseSpec, SecretReference, SessionResources};

    fn with_database(mut rs: RSession) -> RSession {
        rs.spec.database = Some(DatabaseSpec {
            secret_ref: SecretReference { name: "db".into() },
            read_only: true,
        });
        rs
    }

    #[test]
    fn defaults_come_from_the_operator_config() {
        let config = OperatorConfig::default();
        let s = validate(&rsession("s"), &config, None).expect("valid");
        assert_eq!(s.image, config.default_image);
        assert_eq!(s.image_pull_policy, config.default_image_pull_policy);
        let limits = s.resources.limits.expect("limits");
        assert_eq!(limits["memory"], Quantity("2Gi".into()));
        assert_eq!(limits["cpu"], Quantity("2".into()));
    }

    #[test]
    fn given_amounts_override_only_themselves() {
        let mut rs = rsession("s");
        rs.spec.resources = Some(SessionResources {
            requests: None,
            limits: Some(ResourceAmounts {
                memory: Some(Quantity("8Gi".into())),
                ..ResourceAmounts::default()
            }),
        });
        let s = validate(&rs, &OperatorConfig::default(), None).expect("valid");
        let limits = s.resources.limits.expect("limits");
        assert_eq!(limits["memory"], Quantity("8Gi".into()));
        assert_eq!(
            limits["cpu"],
            Quantity("2".into()),
            "cpu limit still defaulted"
        );
    }

    #[test]
    fn missing_database_secret_is_a_spec_error() {
        let err = validate(
            &with_database(rsession("s")),
            &OperatorConfig::default(),
            None,
        )
        .expect_err("no secret");
        assert_eq!(err, SpecError::DatabaseSecretNotFound("db".into()));
        assert_eq!(err.reason(), "DatabaseSecretNotFound");
    }

    #[test]
    fn database_secret_without_host_is_a_spec_error() {
        let secret = database_secret("db", &[("port", "5432")]);
        let err = validate(
            &with_database(rsession("s")),
            &OperatorConfig::default(),
            Some(&secret),
        )
        .expect_err("no host");
        assert!(err.to_string().contains("\"host\""), "{err}");
    }

    #[test]
    fn database_port_must_be_a_tcp_port() {
        for bad in ["0", "65536", "pg", "-1"] {
            let secret = database_secret("db", &[("host", "10.0.0.1"), ("port", bad)]);
            let err = validate(
                &with_database(rsession("s")),
                &OperatorConfig::default(),
                Some(&secret),
            )
            .expect_err(bad);
            assert!(err.to_string().contains("\"port\""), "{bad}: {err}");
        }
    }

    #[test]
    fn database_host_ip_and_name_are_told_apart() {
        let config = OperatorConfig::default();
        let ip = database_secret("db", &[("host", "10.0.0.1")]);
        let s = validate(&with_database(rsession("s")), &config, Some(&ip)).expect("valid");
        let db = s.database.expect("database");
        assert_eq!(db.host, DatabaseHost::Ip("10.0.0.1".parse().expect("ip")));
        assert_eq!(db.port, 5432);
        let name = database_secret("db", &[("host", "postgres.db.svc"), ("port", "6543")]);
        let s = validate(&with_database(rsession("s")), &config, Some(&name)).expect("valid");
        let db = s.database.expect("database");
        assert_eq!(db.host, DatabaseHost::Name("postgres.db.svc".into()));
        assert_eq!(db.port, 6543);
    }

    #[test]
    fn database_host_with_spaces_or_scheme_is_rejected() {
        for bad in ["postgres://x", "a b", "-x.example"] {
            let secret = database_secret("db", &[("host", bad)]);
            validate(
                &with_database(rsession("s")),
                &OperatorConfig::default(),
                Some(&secret),
            )
            .expect_err(bad);
        }
    }

    #[test]
    fn database_secret_needs_a_user_for_the_proxy() {
        for kvs in [
            &[("host", "10.0.0.1")][..],
            &[("host", "10.0.0.1"), ("user", " ")][..],
        ] {
            let secret = database_secret_exactly("db", kvs);
            let err = validate(
                &with_database(rsession("s")),
                &OperatorConfig::default(),
                Some(&secret),
            )
            .expect_err("no user");
            assert_eq!(err.reason(), "InvalidDatabaseSecret");
            assert!(err.to_string().contains("\"user\""), "{err}");
        }
    }

    #[test]
    fn database_password_with_a_line_break_is_named_not_shown() {
        let secret = database_secret("db", &[("host", "10.0.0.1"), ("password", "s3cret\nx")]);
        let err = validate(
            &with_database(rsession("s")),
            &OperatorConfig::default(),
            Some(&secret),
        )
        .expect_err("line break");
        let text = err.to_string();
        assert!(
            text.contains("\"password\"") && text.contains("line break"),
            "{text}"
        );
        assert!(
            !text.contains("s3cret"),
            "the value must not appear: {text}"
        );
    }

    #[test]
    fn database_sslmode_must_be_a_libpq_mode() {
        let config = OperatorConfig::default();
        let good = database_secret("db", &[("host", "10.0.0.1"), ("sslmode", "verify-full")]);
        validate(&with_database(rsession("s")), &config, Some(&good)).expect("verify-full");
        let bad = database_secret("db", &[("host", "10.0.0.1"), ("sslmode", "on")]);
        let err = validate(&with_database(rsession("s")), &config, Some(&bad)).expect_err("on");
        assert!(err.to_string().contains("\"sslmode\""), "{err}");
    }

    #[test]
    fn read_only_is_carried_from_the_spec() {
        let secret = database_secret("db", &[("host", "10.0.0.1")]);
        let mut rs = with_database(rsession("s"));
        let config = OperatorConfig::default();
        let s = validate(&rs, &config, Some(&secret)).expect("valid");
        assert!(s.database.expect("database").read_only);
        rs.spec.database.as_mut().expect("database").read_only = false;
        let s = validate(&rs, &config, Some(&secret)).expect("valid");
        assert!(!s.database.expect("database").read_only);
    }

    #[test]
    fn a_pooled_session_without_its_pool_is_pool_not_found_and_waits_for_it() {
        let mut rs = rsession("s1");
        rs.spec.pool_ref = Some(rsession_api::PoolReference {
            name: "warm".into(),
        });
        let e = effective_rsession(&rs, None).unwrap_err();
        assert_eq!(e, SpecError::PoolNotFound("warm".into()));
        assert_eq!(e.reason(), "PoolNotFound");
        assert!(e.to_string().contains("warm"), "{e}");
        // Retried like a missing database Secret, not reported as a broken spec for good.
        let err = crate::error::Error::InvalidSpec(e);
        assert_eq!(err.metric_label(), "invalid_spec");
    }

    #[test]
    fn a_pooled_session_runs_with_the_pools_template_and_its_own_lifecycle() {
        let mut pool =
            rsession_api::RSessionPool::new("warm", rsession_api::RSessionPoolSpec::default());
        pool.spec.template.image = Some("registry.example/r:4.4".into());
        let mut rs = rsession("s1");
        rs.spec.pool_ref = Some(rsession_api::PoolReference {
            name: "warm".into(),
        });
        rs.spec.lifecycle.suspend = true;
        let effective = effective_rsession(&rs, Some(&pool)).expect("effective");
        assert_eq!(
            effective.spec.image.as_deref(),
            Some("registry.example/r:4.4")
        );
        assert!(
            effective.spec.lifecycle.suspend,
            "the session's own lifecycle"
        );
        assert_eq!(effective.spec.pool_ref, rs.spec.pool_ref);
        let plain = rsession("s2");
        assert!(matches!(
            effective_rsession(&plain, None).expect("no pool needed"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
