//! The session Service: ClusterIP on the Rserve port 6311, selecting the session's pod.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rsession_api::well_known as wk;

use super::{Component, owned_meta, selector_labels, service_name};
use crate::validate::Session;

/// Builds the Service `<name>` (ClusterIP, TCP 6311 → container port `rserve`). Not-ready pods
/// are not published. It is the stable DNS name for people (`<name>.<namespace>.svc:6311`);
/// `status.endpoint` is the pod's own address instead, because a ClusterIP refuses connections
/// for a moment after the pod turns Ready, until kube-proxy has programmed it.
pub fn build_service(s: &Session) -> Service {
    Service {
        metadata: owned_meta(s, service_name(&s.name), Component::Network),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(&s.name)),
            ports: Some(vec![ServicePort {
                name: Some(wk::RSERVE_PORT_NAME.into()),
                port: wk::RSERVE_PORT,
                target_port: Some(IntOrString::String(wk::RSERVE_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            publish_not_ready_addresses: Some(false),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{rsession, session_of};

    #[test]
    fn service_exposes_only_rserve_port_6311() {
        let svc = build_service(&session_of(&rsession("s")));
        let spec = svc.spec.expect("spec");
        let ports = spec.ports.expect("ports");
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, 6311);
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    }

    #[test]
    fn service_selects_only_this_sessions_pod() {
        let svc = build_service(&session_of(&rsession("s")));
        let sel = svc.spec.and_then(|s| s.selector).expect("selector");
        assert_eq!(
            sel.get("rsession.dev/session").map(String::as_str),
            Some("s")
        );
        assert_eq!(
            sel.get("app.kubernetes.io/component").map(String::as_str),
            Some("session")
        );
    }
}
