//! Every child but the pod, built together as one typed bundle, so the reconciler applies them
//! in one step and in one order (the order `tests/api_calls.rs` pins). The pod is not part of
//! it: whether one is created, and under which name, is the decide step's call.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::network_policy::build_network_policy;
use super::pvc::build_pvc;
use super::secret::build_secret;
use super::service::build_service;
use crate::config::OperatorConfig;
use crate::validate::Session;

/// The children every session has, whatever its phase (they outlive suspend and expiry).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Children {
    /// Rserve credentials (`<name>-credentials`): what the MCP frontend logs in with. The pod
    /// itself does not mount it (it carries the password's hash, `build::pod::PodStart`).
    pub secret: Secret,
    /// The session's DNS name (`<name>`).
    pub service: Service,
    /// Ingress from the MCP frontend, the egress allow-list (`<name>`).
    pub network_policy: NetworkPolicy,
    /// The workspace PVC (`<name>-workspace`): only for a Persistent workspace without
    /// `existingClaim`.
    pub pvc: Option<PersistentVolumeClaim>,
}

/// The packages a cold session's pod preloads: `preloadPackages` with `preloadColdSessions`,
/// else none (pool pods preload theirs, `pool::build`).
pub fn cold_preload(config: &OperatorConfig) -> &[String] {
    if config.preload_cold_sessions {
        &config.preload_packages
    } else {
        &[]
    }
}

/// Builds the children of session `s`: its Secret holds `password` (the existing one, so a
/// reconcile never rotates it), its NetworkPolicy opens `database_addresses` (the resolved
/// addresses of a database host given as a DNS name).
pub fn build_children(
    s: &Session,
    config: &OperatorConfig,
    password: &str,
    database_addresses: &[IpAddr],
) -> Children {
    Children {
        secret: build_secret(s, password),
        service: build_service(s),
        network_policy: build_network_policy(s, config, database_addresses),
        pvc: build_pvc(s),
    }
}

#[cfg(test)]
mod tests {
    use kube::Resource;
    use rsession_api::{WorkspaceKind, WorkspaceSpec};

    use super::*;
    use crate::build::fixtures::{rsession, session_of};

    fn names(c: &Children) -> Vec<String> {
        let mut names = vec![
            c.secret.meta().name.clone(),
            c.service.meta().name.clone(),
            c.network_policy.meta().name.clone(),
        ];
        names.extend(c.pvc.as_ref().map(|p| p.meta().name.clone()));
        names.into_iter().flatten().collect()
    }

    #[test]
    fn ephemeral_session_has_three_children_and_no_pvc() {
        let c = build_children(
            &session_of(&rsession("s")),
            &OperatorConfig::default(),
            "pw",
            &[],
        );
        assert_eq!(names(&c), ["s-credentials", "s", "s"]);
    }

    #[test]
    fn persistent_session_adds_its_workspace_pvc() {
        let mut rs = rsession("s");
        rs.spec.workspace = WorkspaceSpec {
            kind: WorkspaceKind::Persistent,
            size: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "1Gi".into(),
            )),
            ..WorkspaceSpec::default()
        };
        let c = build_children(&session_of(&rs), &OperatorConfig::default(), "pw", &[]);
        assert_eq!(names(&c), ["s-credentials", "s", "s", "s-workspace"]);
    }

    #[test]
    fn every_child_is_owned_by_the_rsession() {
        let s = session_of(&rsession("s"));
        let c = build_children(&s, &OperatorConfig::default(), "pw", &[]);
        for owners in [
            &c.secret.metadata.owner_references,
            &c.service.metadata.owner_references,
            &c.network_policy.metadata.owner_references,
        ] {
            assert_eq!(owners.as_deref(), Some(&[s.owner_reference.clone()][..]));
        }
    }
}
