//! The session pod, restricted by construction (Pod Security Standard "restricted" plus the
//! extra hardening listed in ARCHITECTURE.md "The session pod").

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar, ObjectFieldSelector,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, Probe, SeccompProfile,
    SecurityContext, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rsession_api::WorkspaceKind;
use rsession_api::well_known as wk;

use super::startup::{CREDENTIALS_DIR, HARNESS_DIR, VERIFY_EGRESS_ENV, r_expression};
use super::{Component, db_proxy, owned_meta, pvc_name};
use crate::config::OperatorConfig;
use crate::quantity::{self, MIB};
use crate::validate::Session;

/// uid and gid the R process runs as (the images create this user).
pub const SESSION_UID: i64 = 1000;
/// Name of the R container.
pub const CONTAINER_NAME: &str = "r";

const VOLUME_WORKSPACE: &str = "workspace";
const VOLUME_TMP: &str = "tmp";
const VOLUME_HARNESS: &str = "harness";
const VOLUME_CREDENTIALS: &str = "rserve-credentials";

/// How a pod starts, beyond its session's spec: what a session's own (cold) pod and a pool pod
/// do differently, and its Rserve login.
#[derive(Clone, Debug, Default)]
pub struct PodStart<'a> {
    /// Packages the Rserve parent attaches before it listens (names that are not R package
    /// names are skipped).
    pub preload_packages: &'a [String],
    /// The ConfigMap holding the R harness the Rserve parent sources before it listens (a pool
    /// pod's: its pool's, `pool::build::harness_config_map_name`); `None` for a cold pod.
    pub harness_config_map: Option<String>,
    /// Rserve's password file line ([`super::secret::pwdfile_entry`]), carried in the pod
    /// annotation [`wk::ANNOTATION_RSERVE_PWDFILE`].
    pub pwdfile_entry: String,
}

/// The claim the workspace volume mounts, if the workspace is Persistent.
pub fn workspace_claim(s: &Session) -> Option<String> {
    (s.workspace.kind == WorkspaceKind::Persistent).then(|| {
        s.workspace
            .existing_claim
            .clone()
            .unwrap_or_else(|| pvc_name(&s.name))
    })
}

/// The R command: `R` running [`r_expression`] (package preload, egress check, the harness when
/// `harness`, then Rserve in the foreground) with no echo, save or restore.
pub fn command(preload_packages: &[String], harness: bool) -> Vec<String> {
    [
        "R",
        "--no-echo",
        "--no-save",
        "--no-restore",
        "-e",
        &r_expression(preload_packages, harness),
    ]
    .map(String::from)
    .to_vec()
}

/// An environment variable with a literal value.
pub(super) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// Whether the pod checks that its egress is denied before Rserve listens: the operator asks
/// for it and the check means something. With `spec.network.egress` entries an allowed CIDR may
/// cover the API server, whose refusal is the evidence.
pub fn verifies_egress_denied(s: &Session, config: &OperatorConfig) -> bool {
    config.verify_egress_denied && s.egress.is_empty()
}

fn environment(s: &Session, config: &OperatorConfig) -> Vec<EnvVar> {
    let mut vars = vec![
        env("HOME", wk::WORKSPACE_PATH),
        env("TMPDIR", wk::TMP_PATH),
        env("R_LIBS_USER", &format!("{}/.R/library", wk::WORKSPACE_PATH)),
        env("RSESSION_NAME", &s.name),
    ];
    if verifies_egress_denied(s, config) {
        vars.push(env(
            VERIFY_EGRESS_ENV,
            &config.verify_egress_denied_secs.to_string(),
        ));
    }
    if let Some(db) = &s.database {
        vars.extend(db_proxy::r_environment(db));
    }
    vars
}

/// Size of the memory-backed /tmp: `tmpSizeLimit`, at most half of `memory_limit` (tmpfs pages
/// count toward it, and R needs the rest), rounded down to whole MiB. Rounding matters: the
/// kernel rounds a tmpfs up to whole pages, and the kubelet evicts a pod whose emptyDir use
/// exceeds `sizeLimit`, so a size that is not a page multiple could turn "disk full" into an
/// eviction. A quantity that does not parse is passed through (config validation rejects it).
pub fn tmp_size(config: &OperatorConfig, memory_limit: Option<&Quantity>) -> Quantity {
    let Some(wanted) = quantity::bytes(&config.tmp_size_limit) else {
        return config.tmp_size_limit.clone();
    };
    let cap = memory_limit
        .and_then(quantity::bytes)
        .map_or(u64::MAX, |m| m / 2);
    let size = wanted.min(cap) / MIB * MIB;
    if size == wanted {
        config.tmp_size_limit.clone()
    } else {
        Quantity(format!("{}Mi", (size / MIB).max(1)))
    }
}

fn volumes(s: &Session, tmp_size: Quantity, harness_config_map: Option<&str>) -> Vec<Volume> {
    let workspace = match workspace_claim(s) {
        Some(claim_name) => Volume {
            name: VOLUME_WORKSPACE.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: Some(false),
            }),
            ..Volume::default()
        },
        None => Volume {
            name: VOLUME_WORKSPACE.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: s.workspace.size.clone(),
            }),
            ..Volume::default()
        },
    };
    let mut volumes = vec![
        workspace,
        // tmpfs: Kubernetes sizes it from sizeLimit, so a full /tmp is ENOSPC for the writer,
        // not an eviction of the pod (which a disk-backed emptyDir over its limit gets).
        Volume {
            name: VOLUME_TMP.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(tmp_size),
            }),
            ..Volume::default()
        },
        // Rserve's password file from the pod's own annotation: no Secret to read (see
        // `build::startup` for the kubelet race that costs).
        Volume {
            name: VOLUME_CREDENTIALS.into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: wk::SECRET_KEY_PASSWORD_FILE.into(),
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: format!(
                            "metadata.annotations['{}']",
                            wk::ANNOTATION_RSERVE_PWDFILE
                        ),
                    }),
                    mode: Some(0o440),
                    resource_field_ref: None,
                }]),
                default_mode: Some(0o440),
            }),
            ..Volume::default()
        },
    ];
    if let Some(name) = harness_config_map {
        volumes.push(Volume {
            name: VOLUME_HARNESS.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.to_owned(),
                default_mode: Some(0o444),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    if s.database.is_some() {
        volumes.push(db_proxy::volume());
    }
    volumes
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// Builds the session pod named `pod_name`, started as `start` says.
///
/// Security invariants (each has a unit test named for it): non-root uid/gid 1000 with fsGroup
/// 1000, RuntimeDefault seccomp, no service-account token, no service links, restartPolicy
/// Never, no privilege escalation, read-only root filesystem, all capabilities dropped, resource
/// limits always set, writable paths limited to /workspace and a size-limited memory-backed
/// /tmp, egress verified denied before Rserve listens (see [`verifies_egress_denied`]), and
/// the container's log tail as its termination message when it fails.
pub fn build_pod(s: &Session, config: &OperatorConfig, pod_name: &str, start: &PodStart) -> Pod {
    let mut resources = s.resources.clone();
    // Validation guarantees limits (config requires cpu and memory limits); keep the invariant
    // local too: never emit a pod without limits.
    if resources.limits.as_ref().is_none_or(|l| l.is_empty()) {
        resources.limits = config.default_resources.limits.as_ref().map(|l| {
            [("cpu", &l.cpu), ("memory", &l.memory)]
                .into_iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.to_owned(), v)))
                .collect()
        });
    }
    let tmp_size = tmp_size(
        config,
        resources.limits.as_ref().and_then(|l| l.get("memory")),
    );
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(s.image.clone()),
        image_pull_policy: Some(s.image_pull_policy.as_str().into()),
        command: Some(command(
            start.preload_packages,
            start.harness_config_map.is_some(),
        )),
        working_dir: Some(wk::WORKSPACE_PATH.into()),
        env: Some(environment(s, config)),
        ports: Some(vec![ContainerPort {
            name: Some(wk::RSERVE_PORT_NAME.into()),
            container_port: wk::RSERVE_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                host: None,
                port: IntOrString::Int(wk::RSERVE_PORT),
            }),
            period_seconds: Some(1),
            failure_threshold: Some(3),
            timeout_seconds: Some(1),
            ..Probe::default()
        }),
        resources: Some(resources),
        security_context: Some(restricted(SESSION_UID)),
        volume_mounts: Some(
            [
                mount(VOLUME_WORKSPACE, wk::WORKSPACE_PATH, false),
                mount(VOLUME_TMP, wk::TMP_PATH, false),
                mount(VOLUME_CREDENTIALS, CREDENTIALS_DIR, true),
            ]
            .into_iter()
            .chain(
                start
                    .harness_config_map
                    .is_some()
                    .then(|| mount(VOLUME_HARNESS, HARNESS_DIR, true)),
            )
            .collect(),
        ),
        // A failed container's last log lines (for example the egress check's message) become
        // its termination message, which the operator copies into status.message.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let mut metadata = owned_meta(s, pod_name.to_owned(), Component::Session);
    metadata.annotations = Some(BTreeMap::from([(
        wk::ANNOTATION_RSERVE_PWDFILE.to_owned(),
        start.pwdfile_entry.clone(),
    )]));
    Pod {
        metadata,
        spec: Some(PodSpec {
            containers: vec![container],
            init_containers: s
                .database
                .as_ref()
                .map(|db| vec![db_proxy::container(db, config)]),
            volumes: Some(volumes(s, tmp_size, start.harness_config_map.as_deref())),
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            share_process_namespace: Some(false),
            termination_grace_period_seconds: Some(10),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(SESSION_UID),
                run_as_group: Some(SESSION_UID),
                fs_group: Some(SESSION_UID),
                seccomp_profile: Some(runtime_default_seccomp()),
                ..PodSecurityContext::default()
            }),
            runtime_class_name: s.runtime_class_name.clone(),
            node_selector: s.node_selector.clone(),
            tolerations: s.tolerations.clone(),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// A container's security context under the "restricted" Pod Security Standard, running as
/// `uid` (user and group): non-root, no privilege escalation, read-only root filesystem, all
/// capabilities dropped, RuntimeDefault seccomp. Shared by the R container and the db-proxy
/// sidecar.
pub(super) fn restricted(uid: i64) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{database_secret, rsession, session_of};
    use crate::validate::validate;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use rsession_api::{DatabaseSpec, SecretReference};

    /// A cold session's pod (no preload, no harness) logging in with password "pw".
    fn cold_pod(s: &Session, config: &OperatorConfig, name: &str) -> Pod {
        let start = PodStart {
            pwdfile_entry: crate::build::secret::pwdfile_entry("pw"),
            ..PodStart::default()
        };
        build_pod(s, config, name, &start)
    }

    fn pod() -> Pod {
        cold_pod(
            &session_of(&rsession("s")),
            &OperatorConfig::default(),
            "s-1",
        )
    }

    fn spec(p: &Pod) -> &PodSpec {
        p.spec.as_ref().expect("spec")
    }

    fn container(p: &Pod) -> &Container {
        &spec(p).containers[0]
    }

    fn csc(p: &Pod) -> &SecurityContext {
        container(p)
            .security_context
            .as_ref()
            .expect("container securityContext")
    }

    fn psc(p: &Pod) -> &PodSecurityContext {
        spec(p)
            .security_context
            .as_ref()
            .expect("pod securityContext")
    }

    #[test]
    fn pod_runs_as_non_root() {
        let p = pod();
        assert_eq!(psc(&p).run_as_non_root, Some(true));
        assert_eq!(csc(&p).run_as_non_root, Some(true));
    }

    #[test]
    fn pod_runs_as_uid_and_gid_1000_with_fs_group_1000() {
        let p = pod();
        assert_eq!(
            (psc(&p).run_as_user, psc(&p).run_as_group),
            (Some(1000), Some(1000))
        );
        assert_eq!(psc(&p).fs_group, Some(1000));
        assert_eq!(
            (csc(&p).run_as_user, csc(&p).run_as_group),
            (Some(1000), Some(1000))
        );
    }

    #[test]
    fn pod_uses_runtime_default_seccomp() {
        let p = pod();
        assert_eq!(
            psc(&p).seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(
            csc(&p).seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
    }

    #[test]
    fn pod_does_not_mount_a_service_account_token() {
        assert_eq!(spec(&pod()).automount_service_account_token, Some(false));
    }

    #[test]
    fn pod_disables_service_links() {
        assert_eq!(spec(&pod()).enable_service_links, Some(false));
    }

    #[test]
    fn pod_never_restarts() {
        assert_eq!(spec(&pod()).restart_policy.as_deref(), Some("Never"));
    }

    #[test]
    fn pod_forbids_privilege_escalation() {
        let p = pod();
        assert_eq!(csc(&p).allow_privilege_escalation, Some(false));
        assert_eq!(csc(&p).privileged, Some(false));
    }

    #[test]
    fn pod_has_read_only_root_filesystem() {
        assert_eq!(csc(&pod()).read_only_root_filesystem, Some(true));
    }

    #[test]
    fn pod_drops_all_capabilities() {
        let caps = csc(&pod()).capabilities.clone().expect("capabilities");
        assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(caps.add, None);
    }

    #[test]
    fn pod_always_has_resource_limits() {
        let p = pod();
        let limits = container(&p)
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert!(
            limits.contains_key("cpu") && limits.contains_key("memory"),
            "{limits:?}"
        );
    }

    #[test]
    fn pod_gets_limits_even_when_the_session_resources_have_none() {
        let mut s = session_of(&rsession("s"));
        s.resources.limits = None;
        let p = cold_pod(&s, &OperatorConfig::default(), "s-1");
        let limits = container(&p)
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert_eq!(limits["memory"], Quantity("2Gi".into()));
    }

    #[test]
    fn pod_is_ready_when_rserve_accepts_tcp_on_6311() {
        let probe = container(&pod())
            .readiness_probe
            .clone()
            .expect("readiness probe");
        assert_eq!(
            probe.tcp_socket.map(|t| t.port),
            Some(IntOrString::Int(6311))
        );
    }

    #[test]
    fn pod_writable_paths_are_only_workspace_and_tmp() {
        let p = pod();
        let writable: Vec<&str> = container(&p)
            .volume_mounts
            .as_ref()
            .expect("mounts")
            .iter()
            .filter(|m| m.read_only != Some(true))
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(writable, ["/workspace", "/tmp"]);
    }

    fn tmp_dir(p: &Pod) -> EmptyDirVolumeSource {
        spec(p)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .find(|v| v.name == "tmp")
            .and_then(|v| v.empty_dir.clone())
            .expect("tmp emptyDir")
    }

    fn env_var(p: &Pod, name: &str) -> Option<String> {
        container(p)
            .env
            .as_ref()
            .expect("env")
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.value.clone().unwrap_or_default())
    }

    #[test]
    fn pod_tmp_is_a_memory_backed_empty_dir_with_a_size_limit() {
        let tmp = tmp_dir(&pod());
        assert_eq!(tmp.medium.as_deref(), Some("Memory"));
        assert_eq!(tmp.size_limit, Some(Quantity("512Mi".into())));
    }

    #[test]
    fn pod_tmp_is_at_most_half_the_memory_limit() {
        let mut s = session_of(&rsession("s"));
        s.resources
            .limits
            .as_mut()
            .expect("limits")
            .insert("memory".into(), Quantity("600Mi".into()));
        let p = cold_pod(&s, &OperatorConfig::default(), "s-1");
        assert_eq!(tmp_dir(&p).size_limit, Some(Quantity("300Mi".into())));
    }

    #[test]
    fn pod_tmp_size_is_whole_mebibytes() {
        let config = OperatorConfig {
            tmp_size_limit: Quantity("100M".into()),
            ..OperatorConfig::default()
        };
        // 100e6 bytes is 95.37 MiB: not a page multiple, so rounded down.
        assert_eq!(
            tmp_size(&config, Some(&Quantity("2Gi".into()))),
            Quantity("95Mi".into())
        );
        assert_eq!(
            tmp_size(&OperatorConfig::default(), None),
            Quantity("512Mi".into())
        );
    }

    #[test]
    fn pod_verifies_egress_denied_when_enabled_and_egress_is_empty() {
        assert_eq!(
            env_var(&pod(), "RSESSION_VERIFY_EGRESS_DENIED_SECS").as_deref(),
            Some("60")
        );
    }

    #[test]
    fn pod_skips_the_egress_check_when_an_egress_rule_exists() {
        let mut s = session_of(&rsession("s"));
        s.egress = vec![rsession_api::EgressRule {
            cidr: "10.0.0.0/8".into(),
            ports: vec![443],
        }];
        let p = cold_pod(&s, &OperatorConfig::default(), "s-1");
        assert_eq!(env_var(&p, "RSESSION_VERIFY_EGRESS_DENIED_SECS"), None);
    }

    #[test]
    fn pod_skips_the_egress_check_when_the_operator_turns_it_off() {
        let config = OperatorConfig {
            verify_egress_denied: false,
            ..OperatorConfig::default()
        };
        let p = cold_pod(&session_of(&rsession("s")), &config, "s-1");
        assert_eq!(env_var(&p, "RSESSION_VERIFY_EGRESS_DENIED_SECS"), None);
    }

    #[test]
    fn pod_reports_the_log_tail_as_termination_message_on_error() {
        assert_eq!(
            container(&pod()).termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
    }

    #[test]
    fn pod_mounts_no_secret_or_config_map_and_gets_its_password_file_from_its_annotation() {
        let p = pod();
        let volumes = spec(&p).volumes.clone().expect("volumes");
        assert!(
            volumes
                .iter()
                .all(|v| v.secret.is_none() && v.config_map.is_none() && v.projected.is_none()),
            "{volumes:?}"
        );
        let file = volumes
            .iter()
            .find(|v| v.name == "rserve-credentials")
            .and_then(|v| v.downward_api.as_ref())
            .and_then(|d| d.items.clone())
            .expect("downward API items");
        assert_eq!(file.len(), 1);
        assert_eq!(file[0].path, "rserve.pwd");
        assert_eq!(
            file[0].field_ref.as_ref().map(|f| f.field_path.as_str()),
            Some("metadata.annotations['rsession.dev/rserve-pwdfile']")
        );
        // the hash only (`secret::pwdfile_entry`), never the password
        assert_eq!(
            p.metadata.annotations.as_ref().expect("annotations")["rsession.dev/rserve-pwdfile"],
            crate::build::secret::pwdfile_entry("pw")
        );
        let mounts = container(&p).volume_mounts.clone().expect("mounts");
        let credentials = mounts
            .iter()
            .find(|m| m.name == "rserve-credentials")
            .expect("credentials mount");
        assert_eq!(
            (credentials.mount_path.as_str(), credentials.read_only),
            ("/etc/rserve/credentials", Some(true))
        );
    }

    #[test]
    fn pod_does_not_use_host_namespaces() {
        let p = pod();
        assert_eq!(
            (spec(&p).host_network, spec(&p).host_pid, spec(&p).host_ipc),
            (Some(false), Some(false), Some(false))
        );
    }

    #[test]
    fn cold_pod_runs_its_startup_expression_without_the_harness() {
        let cmd = container(&pod()).command.clone().expect("command");
        assert_eq!(
            cmd,
            command(&[], false),
            "a cold pod preloads nothing by default"
        );
        assert_eq!(
            cmd[..5],
            ["R", "--no-echo", "--no-save", "--no-restore", "-e"]
        );
        assert_eq!(cmd[5], crate::build::startup::r_expression(&[], false));
    }

    #[test]
    fn persistent_workspace_mounts_the_claim() {
        let mut rs = rsession("s");
        rs.spec.workspace.kind = WorkspaceKind::Persistent;
        rs.spec.workspace.size = Some(Quantity("1Gi".into()));
        let p = cold_pod(&session_of(&rs), &OperatorConfig::default(), "s-1");
        let ws = spec(&p)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .find(|v| v.name == "workspace")
            .expect("ws");
        assert_eq!(
            ws.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("s-workspace")
        );
        rs.spec.workspace.existing_claim = Some("mine".into());
        let p = cold_pod(&session_of(&rs), &OperatorConfig::default(), "s-1");
        let ws = spec(&p)
            .volumes
            .as_ref()
            .expect("volumes")
            .iter()
            .find(|v| v.name == "workspace")
            .expect("ws");
        assert_eq!(
            ws.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("mine")
        );
    }

    fn pod_with_database(read_only: bool) -> Pod {
        let mut rs = rsession("s");
        rs.spec.database = Some(DatabaseSpec {
            secret_ref: SecretReference { name: "db".into() },
            read_only,
        });
        let secret = database_secret("db", &[("host", "10.0.0.1"), ("password", "pw")]);
        let s = validate(&rs, &OperatorConfig::default(), Some(&secret)).expect("valid");
        cold_pod(&s, &OperatorConfig::default(), "s-1")
    }

    fn secret_key(e: &EnvVar) -> Option<(&str, &str)> {
        e.value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .map(|k| (k.name.as_str(), k.key.as_str()))
    }

    fn proxy(p: &Pod) -> &Container {
        let init = spec(p).init_containers.as_ref().expect("init containers");
        assert_eq!(init.len(), 1);
        &init[0]
    }

    #[test]
    fn r_container_gets_libpq_variables_for_the_proxy_and_no_credentials() {
        let p = pod_with_database(true);
        let env = container(&p).env.clone().expect("env");
        let value = |name: &str| {
            env.iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(value("PGHOST").as_deref(), Some("127.0.0.1"));
        assert_eq!(value("PGPORT").as_deref(), Some("6432"));
        assert_eq!(value("PGSSLMODE").as_deref(), Some("disable"));
        assert!(env.iter().all(|e| e.name != "PGPASSWORD"));
        let keys: Vec<&str> = env.iter().filter_map(secret_key).map(|(_, k)| k).collect();
        assert_eq!(
            keys,
            [
                "dbname",
                "user",
                "schema",
                "vocabulary_schema",
                "results_schema",
                "write_schema"
            ],
            "R reads no host, port, password or sslmode from the Secret"
        );
        assert!(
            container(&p)
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.name != "db-proxy"),
            "the proxy's folder is not mounted into R"
        );
    }

    #[test]
    fn database_credentials_go_to_a_restricted_native_sidecar_only() {
        let p = pod_with_database(true);
        let proxy = proxy(&p);
        assert_eq!(proxy.name, "db-proxy");
        assert_eq!(proxy.restart_policy.as_deref(), Some("Always"));
        let env = proxy.env.clone().expect("env");
        let password = env
            .iter()
            .find(|e| e.name == "DB_PASSWORD")
            .expect("DB_PASSWORD");
        assert_eq!(secret_key(password), Some(("db", "password")));
        assert!(
            env.iter().all(|e| e.value.as_deref() != Some("pw")),
            "values stay in the Secret"
        );
        let read_only = env.iter().find(|e| e.name == "DB_READ_ONLY").expect("flag");
        assert_eq!(read_only.value.as_deref(), Some("true"));
        let sc = proxy.security_context.clone().expect("securityContext");
        assert_eq!(sc.run_as_user, Some(1001));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(
            sc.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault")
        );
        let limits = proxy
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .expect("limits");
        assert!(limits.contains_key("cpu") && limits.contains_key("memory"));
        let tmpfs = spec(&p)
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "db-proxy")
            .and_then(|v| v.empty_dir.clone())
            .expect("db-proxy emptyDir");
        assert_eq!(tmpfs.medium.as_deref(), Some("Memory"));
        assert_eq!(spec(&p).share_process_namespace, Some(false));
        // Loopback only, so the readiness check runs inside the container, not from the kubelet.
        let probe = proxy.readiness_probe.clone().expect("readiness probe");
        assert!(probe.tcp_socket.is_none());
        let command = probe.exec.and_then(|e| e.command).expect("exec probe");
        assert_eq!(
            command.last().map(String::as_str),
            Some("exec 3<>/dev/tcp/127.0.0.1/6432")
        );
    }

    #[test]
    fn read_only_false_reaches_the_proxy() {
        let p = pod_with_database(false);
        let env = proxy(&p).env.clone().expect("env");
        let flag = env.iter().find(|e| e.name == "DB_READ_ONLY").expect("flag");
        assert_eq!(flag.value.as_deref(), Some("false"));
    }

    #[test]
    fn pod_without_database_has_no_proxy() {
        let p = cold_pod(
            &session_of(&rsession("s")),
            &OperatorConfig::default(),
            "s-1",
        );
        assert!(spec(&p).init_containers.is_none());
        assert!(
            spec(&p)
                .volumes
                .iter()
                .flatten()
                .all(|v| v.name != "db-proxy")
        );
    }

    #[test]
    fn pod_passes_placement_through() {
        let mut rs = rsession("s");
        rs.spec.runtime_class_name = Some("gvisor".into());
        let p = cold_pod(&session_of(&rs), &OperatorConfig::default(), "s-1");
        assert_eq!(spec(&p).runtime_class_name.as_deref(), Some("gvisor"));
    }
}
