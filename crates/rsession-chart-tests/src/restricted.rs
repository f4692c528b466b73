//! The Pod Security Standard `restricted` profile (Kubernetes v1.33, "Pod Security Standards"
//! page, Baseline and Restricted tables), checked on a pod spec, plus the two extras this
//! project asks of its own pods: a read-only root filesystem and resource limits.
//!
//! This is a static check of rendered YAML; the API-server test applies the same Deployments
//! in a namespace that enforces `restricted`, where PodSecurity admission has the last word.

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};

/// Volume types the restricted profile allows (`spec.volumes[*]`).
const ALLOWED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls the baseline profile allows (`spec.securityContext.sysctls[*].name`).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Every violation of `restricted` (and of the project's extras) in `spec`, one line each,
/// naming the field; empty when the pod complies.
pub fn violations(spec: &PodSpec) -> Vec<String> {
    let mut found = Vec::new();
    let pod_sc = spec.security_context.as_ref();

    if spec.host_network == Some(true) {
        found.push("spec.hostNetwork is true".into());
    }
    if spec.host_pid == Some(true) {
        found.push("spec.hostPID is true".into());
    }
    if spec.host_ipc == Some(true) {
        found.push("spec.hostIPC is true".into());
    }
    for volume in spec.volumes.iter().flatten() {
        let json = serde_json::to_value(volume).unwrap_or_default();
        let types: Vec<&String> = json
            .as_object()
            .map(|m| m.keys().filter(|k| *k != "name").collect())
            .unwrap_or_default();
        for t in types {
            if !ALLOWED_VOLUME_TYPES.contains(&t.as_str()) {
                found.push(format!("volume {} has type {t}", volume.name));
            }
        }
    }
    for sysctl in pod_sc
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
    {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            found.push(format!("sysctl {} is not in the safe set", sysctl.name));
        }
    }
    if pod_sc.and_then(|sc| sc.run_as_user) == Some(0) {
        found.push("spec.securityContext.runAsUser is 0".into());
    }
    if let Some(t) = pod_sc
        .and_then(|sc| sc.se_linux_options.as_ref())
        .and_then(|o| o.type_.as_deref())
    {
        check_selinux_type("spec.securityContext", t, &mut found);
    }
    if pod_sc
        .and_then(|sc| sc.app_armor_profile.as_ref())
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        found.push("spec.securityContext.appArmorProfile is Unconfined".into());
    }
    let pod_non_root = pod_sc.and_then(|sc| sc.run_as_non_root) == Some(true);
    let pod_seccomp = pod_sc
        .and_then(|sc| sc.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    if let Some(t) = pod_seccomp.filter(|t| *t != "RuntimeDefault" && *t != "Localhost") {
        found.push(format!("spec.securityContext.seccompProfile.type is {t}"));
    }

    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("initContainers", c))
        .chain(spec.containers.iter().map(|c| ("containers", c)));
    for (list, container) in containers {
        let at = format!("spec.{list}[{}]", container.name);
        check_container(&at, container, pod_non_root, pod_seccomp, &mut found);
    }
    found
}

fn check_selinux_type(at: &str, t: &str, found: &mut Vec<String>) {
    if ![
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ]
    .contains(&t)
    {
        found.push(format!("{at}.seLinuxOptions.type is {t}"));
    }
}

fn check_container(
    at: &str,
    container: &Container,
    pod_non_root: bool,
    pod_seccomp: Option<&str>,
    found: &mut Vec<String>,
) {
    let default = SecurityContext::default();
    let sc = container.security_context.as_ref().unwrap_or(&default);
    if sc.privileged == Some(true) {
        found.push(format!("{at}.securityContext.privileged is true"));
    }
    if sc.allow_privilege_escalation != Some(false) {
        found.push(format!(
            "{at}.securityContext.allowPrivilegeEscalation is not false"
        ));
    }
    let caps = sc.capabilities.as_ref();
    if !caps
        .and_then(|c| c.drop.as_ref())
        .is_some_and(|d| d.iter().any(|c| c == "ALL"))
    {
        found.push(format!("{at}.securityContext.capabilities.drop lacks ALL"));
    }
    for cap in caps.and_then(|c| c.add.as_ref()).into_iter().flatten() {
        if cap != "NET_BIND_SERVICE" {
            found.push(format!("{at}.securityContext.capabilities.add has {cap}"));
        }
    }
    match sc.run_as_non_root {
        Some(false) => found.push(format!("{at}.securityContext.runAsNonRoot is false")),
        None if !pod_non_root => found.push(format!(
            "{at}: runAsNonRoot is set neither on the pod nor here"
        )),
        _ => {}
    }
    if sc.run_as_user == Some(0) {
        found.push(format!("{at}.securityContext.runAsUser is 0"));
    }
    match sc
        .seccomp_profile
        .as_ref()
        .map(|p| p.type_.as_str())
        .or(pod_seccomp)
    {
        Some("RuntimeDefault" | "Localhost") => {}
        Some(t) => found.push(format!("{at}: seccompProfile.type is {t}")),
        None => found.push(format!(
            "{at}: seccompProfile is set neither on the pod nor here"
        )),
    }
    if let Some(t) = sc
        .se_linux_options
        .as_ref()
        .and_then(|o| o.type_.as_deref())
    {
        check_selinux_type(&format!("{at}.securityContext"), t, found);
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        found.push(format!("{at}.securityContext.procMount is not Default"));
    }
    if sc
        .app_armor_profile
        .as_ref()
        .is_some_and(|p| p.type_ == "Unconfined")
    {
        found.push(format!(
            "{at}.securityContext.appArmorProfile is Unconfined"
        ));
    }
    for port in container.ports.iter().flatten() {
        if port.host_port.is_some_and(|p| p != 0) {
            found.push(format!("{at}: port {} sets hostPort", port.container_port));
        }
    }
    // The project's extras.
    if sc.read_only_root_filesystem != Some(true) {
        found.push(format!(
            "{at}.securityContext.readOnlyRootFilesystem is not true"
        ));
    }
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    for resource in ["cpu", "memory"] {
        if !limits.is_some_and(|l| l.contains_key(resource)) {
            found.push(format!("{at}.resources.limits.{resource} is not set"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compliant() -> PodSpec {
        serde_json::from_value(serde_json::json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "c",
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]}
                },
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}]
        }))
        .expect("valid PodSpec")
    }

    #[test]
    fn compliant_pod_has_no_violations() {
        assert_eq!(violations(&compliant()), Vec::<String>::new());
    }

    #[test]
    fn each_deviation_is_reported() {
        type Mutation = fn(&mut PodSpec);
        let cases: &[(&str, Mutation)] = &[
            ("hostNetwork", |p| p.host_network = Some(true)),
            ("hostPath", |p| {
                p.volumes = Some(vec![
                    serde_json::from_value(
                        serde_json::json!({"name": "h", "hostPath": {"path": "/"}}),
                    )
                    .expect("volume"),
                ]);
            }),
            ("allowPrivilegeEscalation", |p| {
                p.containers[0]
                    .security_context
                    .as_mut()
                    .expect("sc")
                    .allow_privilege_escalation = None;
            }),
            ("drop lacks ALL", |p| {
                p.containers[0]
                    .security_context
                    .as_mut()
                    .expect("sc")
                    .capabilities = None;
            }),
            ("capabilities.add has NET_ADMIN", |p| {
                let sc = p.containers[0].security_context.as_mut().expect("sc");
                sc.capabilities.as_mut().expect("caps").add = Some(vec!["NET_ADMIN".into()]);
            }),
            ("runAsNonRoot is set neither", |p| {
                p.security_context.as_mut().expect("sc").run_as_non_root = None;
            }),
            ("seccompProfile is set neither", |p| {
                p.security_context.as_mut().expect("sc").seccomp_profile = None;
            }),
            ("readOnlyRootFilesystem", |p| {
                p.containers[0]
                    .security_context
                    .as_mut()
                    .expect("sc")
                    .read_only_root_filesystem = None;
            }),
            ("limits.memory", |p| {
                p.containers[0].resources = None;
            }),
            ("privileged", |p| {
                p.containers[0]
                    .security_context
                    .as_mut()
                    .expect("sc")
                    .privileged = Some(true);
            }),
        ];
        for (needle, mutate) in cases {
            let mut spec = compliant();
            mutate(&mut spec);
            let found = violations(&spec);
            assert!(
                found.iter().any(|v| v.contains(needle)),
                "expected a violation mentioning {needle:?}, got {found:?}"
            );
        }
    }
}
