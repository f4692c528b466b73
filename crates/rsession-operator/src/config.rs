//! Operator configuration: defaults for session pods, the MCP frontend's pod selector, the
//! namespace scope and leader election. Read from a YAML file (`--config`), then overridden by
//! command-line flags (see `main.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rsession_api::well_known as wk;
use rsession_api::{ImagePullPolicy, ResourceAmounts, SessionResources};
use serde::Deserialize;

/// Largest `verifyEgressDeniedSecs`: a pod that waits longer is stuck, not starting.
pub const MAX_VERIFY_EGRESS_DENIED_SECS: u32 = 600;

/// Everything the reconciler needs besides the RSession itself.
///
/// YAML keys are camelCase; every key is optional and falls back to [`OperatorConfig::default`].
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct OperatorConfig {
    /// Image used when `spec.image` is unset.
    pub default_image: String,
    /// Pull policy used when `spec.imagePullPolicy` is unset.
    pub default_image_pull_policy: ImagePullPolicy,
    /// Requests and limits used for every amount `spec.resources` leaves out; its limits must
    /// name cpu and memory so every session pod has limits.
    pub default_resources: SessionResources,
    /// Labels of the MCP frontend's pods: the only pods allowed to connect to port 6311.
    pub frontend_pod_selector: BTreeMap<String, String>,
    /// Namespace of the MCP frontend's pods; `None` means the session's own namespace.
    pub frontend_namespace: Option<String>,
    /// Watch only this namespace; `None` watches all namespaces.
    pub watch_namespace: Option<String>,
    /// Size of the session pod's `/tmp`, a memory-backed emptyDir (tmpfs) sized from this
    /// limit (bytes, as a Kubernetes quantity): a write past it fails at once with ENOSPC ("No
    /// space left on device") in R, and the pod and /workspace are untouched. Its pages count
    /// toward the container's memory limit, so a pod gets at most half its memory limit as
    /// /tmp (rounded down to whole MiB); keep this well below `defaultResources.limits.memory`.
    pub tmp_size_limit: Quantity,
    /// R packages the preload script attaches once in the Rserve parent process (when
    /// installed), so every connection starts with them loaded: in pool pods always, in the
    /// pods of cold sessions only with [`Self::preload_cold_sessions`].
    pub preload_packages: Vec<String>,
    /// Whether a cold session's pod (one not claimed from a pool) preloads `preload_packages`
    /// too. Default false: attaching the default six tidyverse-and-friends packages takes about
    /// 1.1 s of CPU before Rserve listens, which a caller waiting on `create_session` would
    /// wait for whether or not its code uses them; without it the pod answers as soon as R
    /// starts, and each package loads when the session's code first asks for it. Pool pods
    /// preload while nobody waits, so claimed sessions have both.
    pub preload_cold_sessions: bool,
    /// Before Rserve listens, check from inside each new session pod that its egress is denied:
    /// a TCP connect to the Kubernetes API Service (`KUBERNETES_SERVICE_HOST`:`_PORT`) must be
    /// refused, and the pod fails if it is still accepted after `verifyEgressDeniedSecs`. Closes
    /// the moment after a pod starts in which the NetworkPolicy enforcer has not programmed its
    /// rules yet. Only for sessions without `spec.network.egress` entries (an allowed CIDR may
    /// cover the API server).
    pub verify_egress_denied: bool,
    /// Seconds a new session pod waits for its egress to be denied before it fails.
    pub verify_egress_denied_secs: u32,
    /// The credential proxy sidecar of sessions with `spec.database`.
    pub database_proxy: DatabaseProxyConfig,
    /// Where cluster DNS runs, allowed as an egress destination only when a database host is a
    /// DNS name.
    pub dns: DnsConfig,
    /// Leader election with a `coordination.k8s.io/v1` Lease.
    pub leader_election: LeaderElectionConfig,
    /// Most reconciles running at once, per controller (RSessions, RSessionPools; each
    /// reconcile makes up to about ten API calls). Bounds memory and apiserver load when many
    /// RSessions change together; 0 means unbounded. The default, 64, lets a burst of warm
    /// claims all start at once (with 16, the 17th to 20th claim of a burst of 20 waited about
    /// a second for a slot). Cost measured with 1,000 RSessions and a pool of 50: peak RSS 54.3
    /// MiB against 33.5 MiB with 16 (docs/benchmarks.md, "Operator memory").
    pub max_concurrent_reconciles: u16,
}

/// The `db-proxy` sidecar: PgBouncer holding a session's database credentials, so that R
/// never receives them (see `build/db_proxy.rs`).
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DatabaseProxyConfig {
    /// Image of the sidecar (`images/build.sh db-proxy`, or `images/db-proxy/Dockerfile`).
    pub image: String,
    /// Its pull policy.
    pub image_pull_policy: ImagePullPolicy,
    /// Its requests and limits (it passes one analyst's queries through; small amounts do).
    pub resources: SessionResources,
}

/// Location of the cluster DNS pods (kube-dns / CoreDNS).
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Namespace of the DNS pods.
    pub namespace: String,
    /// Labels of the DNS pods.
    pub pod_selector: BTreeMap<String, String>,
}

/// Lease-based leader election so that two or more replicas are safe.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Off for a single replica or local runs.
    pub enabled: bool,
    /// Name of the Lease object.
    pub lease_name: String,
    /// Namespace of the Lease; `None` means the namespace in `POD_NAMESPACE`, else `default`.
    pub lease_namespace: Option<String>,
    /// Seconds a lease is valid without renewal (`spec.leaseDurationSeconds`).
    pub lease_duration_secs: u32,
    /// Seconds between renewals by the holder; must be below `lease_duration_secs`.
    pub renew_interval_secs: u32,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            default_image: "ghcr.io/rsession/r-sandbox:latest".into(),
            default_image_pull_policy: ImagePullPolicy::IfNotPresent,
            default_resources: SessionResources {
                requests: Some(amounts("250m", "512Mi", Some("256Mi"))),
                limits: Some(amounts("2", "2Gi", Some("2Gi"))),
            },
            frontend_pod_selector: BTreeMap::from([(
                wk::LABEL_APP_NAME.into(),
                "rsession-mcp".into(),
            )]),
            frontend_namespace: None,
            watch_namespace: None,
            // A quarter of the default memory limit: tmpfs pages are memory.
            tmp_size_limit: Quantity("512Mi".into()),
            preload_packages: ["dplyr", "tidyr", "readr", "ggplot2", "DBI", "jsonlite"]
                .map(String::from)
                .to_vec(),
            preload_cold_sessions: false,
            verify_egress_denied: true,
            verify_egress_denied_secs: 60,
            database_proxy: DatabaseProxyConfig::default(),
            dns: DnsConfig::default(),
            leader_election: LeaderElectionConfig::default(),
            max_concurrent_reconciles: 64,
        }
    }
}

/// Default amounts: cpu, memory and (when given) ephemeral-storage as Kubernetes quantities.
fn amounts(cpu: &str, memory: &str, ephemeral_storage: Option<&str>) -> ResourceAmounts {
    ResourceAmounts {
        cpu: Some(Quantity(cpu.into())),
        memory: Some(Quantity(memory.into())),
        ephemeral_storage: ephemeral_storage.map(|q| Quantity(q.into())),
    }
}

/// Whether `resources` sets both a cpu and a memory limit (so a container built from them always
/// has limits).
fn limits_cpu_and_memory(resources: &SessionResources) -> bool {
    resources
        .limits
        .as_ref()
        .is_some_and(|l| l.cpu.is_some() && l.memory.is_some())
}

impl Default for DatabaseProxyConfig {
    fn default() -> Self {
        Self {
            image: "ghcr.io/rsession/db-proxy:latest".into(),
            image_pull_policy: ImagePullPolicy::IfNotPresent,
            resources: SessionResources {
                requests: Some(amounts("10m", "16Mi", None)),
                limits: Some(amounts("500m", "64Mi", None)),
            },
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            namespace: "kube-system".into(),
            pod_selector: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
        }
    }
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            lease_name: "rsession-operator".into(),
            lease_namespace: None,
            lease_duration_secs: 15,
            renew_interval_secs: 5,
        }
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given with `--config`.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML for [`OperatorConfig`].
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The path given with `--config`.
        path: String,
        /// The YAML error, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl OperatorConfig {
    /// Reads a YAML configuration file; keys not in the file keep their defaults.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Parse`] for invalid
    /// YAML or unknown keys, [`ConfigError::Invalid`] when [`OperatorConfig::validate`] fails.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses a YAML configuration document.
    ///
    /// # Errors
    /// As [`OperatorConfig::from_file`], with `path` set to `<string>`.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: "<string>".into(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that session pods built from this configuration always get limits and that
    /// leader-election timings make sense.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.default_image.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "defaultImage must not be empty".into(),
            ));
        }
        if self.database_proxy.image.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "databaseProxy.image must not be empty".into(),
            ));
        }
        if !limits_cpu_and_memory(&self.database_proxy.resources) {
            return Err(ConfigError::Invalid(
                "databaseProxy.resources.limits must set cpu and memory".into(),
            ));
        }
        if !limits_cpu_and_memory(&self.default_resources) {
            return Err(ConfigError::Invalid(
                "defaultResources.limits must set cpu and memory".into(),
            ));
        }
        if self.frontend_pod_selector.is_empty() {
            return Err(ConfigError::Invalid(
                "frontendPodSelector must not be empty (an empty selector would admit every pod)"
                    .into(),
            ));
        }
        if crate::quantity::bytes(&self.tmp_size_limit).is_none_or(|b| b < crate::quantity::MIB) {
            return Err(ConfigError::Invalid(format!(
                "tmpSizeLimit {:?} must be a Kubernetes quantity of at least 1Mi",
                self.tmp_size_limit.0
            )));
        }
        if !(1..=MAX_VERIFY_EGRESS_DENIED_SECS).contains(&self.verify_egress_denied_secs) {
            return Err(ConfigError::Invalid(format!(
                "verifyEgressDeniedSecs must be 1 to {MAX_VERIFY_EGRESS_DENIED_SECS}"
            )));
        }
        let le = &self.leader_election;
        if le.renew_interval_secs == 0 || le.renew_interval_secs >= le.lease_duration_secs {
            return Err(ConfigError::Invalid(
                "leaderElection.renewIntervalSecs must be > 0 and < leaseDurationSecs".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        OperatorConfig::default()
            .validate()
            .expect("defaults are valid");
    }

    #[test]
    fn yaml_overrides_only_given_keys() {
        let c = OperatorConfig::from_yaml(
            "defaultImage: example/r:1\nfrontendPodSelector:\n  app: mcp\nfrontendNamespace: rsession-system\n",
        )
        .expect("valid");
        assert_eq!(c.default_image, "example/r:1");
        assert_eq!(
            c.frontend_pod_selector.get("app").map(String::as_str),
            Some("mcp")
        );
        assert_eq!(c.frontend_namespace.as_deref(), Some("rsession-system"));
        assert_eq!(c.tmp_size_limit, OperatorConfig::default().tmp_size_limit);
    }

    #[test]
    fn default_tmp_size_is_at_most_a_quarter_of_the_default_memory_limit() {
        let c = OperatorConfig::default();
        let memory = c
            .default_resources
            .limits
            .as_ref()
            .and_then(|l| l.memory.as_ref())
            .and_then(crate::quantity::bytes)
            .expect("memory limit");
        let tmp = crate::quantity::bytes(&c.tmp_size_limit).expect("tmp size");
        assert!(tmp * 4 <= memory, "tmp {tmp} vs memory {memory}");
    }

    #[test]
    fn egress_verification_is_on_by_default_with_a_60_second_deadline() {
        let c = OperatorConfig::default();
        assert!(c.verify_egress_denied);
        assert_eq!(c.verify_egress_denied_secs, 60);
        let off =
            OperatorConfig::from_yaml("verifyEgressDenied: false\nverifyEgressDeniedSecs: 5\n")
                .expect("valid");
        assert!(!off.verify_egress_denied);
        assert_eq!(off.verify_egress_denied_secs, 5);
    }

    #[test]
    fn egress_deadline_out_of_range_is_rejected() {
        for bad in ["0", "601"] {
            let err = OperatorConfig::from_yaml(&format!("verifyEgressDeniedSecs: {bad}\n"))
                .expect_err(bad);
            assert!(err.to_string().contains("verifyEgressDeniedSecs"), "{err}");
        }
    }

    #[test]
    fn tmp_size_that_is_not_a_quantity_is_rejected() {
        for bad in ["lots", "1Ki"] {
            let err = OperatorConfig::from_yaml(&format!("tmpSizeLimit: {bad}\n")).expect_err(bad);
            assert!(err.to_string().contains("tmpSizeLimit"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = OperatorConfig::from_yaml("defaultImagee: x\n").expect_err("typo is an error");
        assert!(err.to_string().contains("defaultImagee"), "{err}");
    }

    #[test]
    fn limits_without_memory_are_rejected() {
        let err = OperatorConfig::from_yaml("defaultResources:\n  limits:\n    cpu: '1'\n")
            .expect_err("no memory limit");
        assert!(err.to_string().contains("limits"), "{err}");
    }

    #[test]
    fn empty_frontend_selector_is_rejected() {
        let err = OperatorConfig::from_yaml("frontendPodSelector: {}\n").expect_err("empty");
        assert!(err.to_string().contains("frontendPodSelector"), "{err}");
    }
}
