//! The session NetworkPolicy: ingress only from the MCP frontend's pods on 6311; egress denied
//! except the database (host and port from its Secret) and the `spec.network.egress` allow-list.
//!
//! A database host given as a DNS name cannot be expressed in a NetworkPolicy, so the operator
//! resolves it (see `reconcile::fetch`) and allows each resolved address as a /32 (or /128), and
//! additionally allows DNS (UDP and TCP 53) to the cluster DNS pods so that R can resolve the
//! name too. When the name later resolves to other addresses, the next reconcile (at most every
//! 5 minutes) updates the policy.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rsession_api::well_known as wk;

use super::{Component, owned_meta, selector_labels, service_name};
use crate::config::OperatorConfig;
use crate::validate::{DatabaseHost, Session};

/// Label every namespace carries with its own name (set by the apiserver since Kubernetes 1.22).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

fn host_cidr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

fn ip_peer(cidr: String) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr, except: None }),
        ..NetworkPolicyPeer::default()
    }
}

fn selector(labels: &BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.clone()),
        match_expressions: None,
    }
}

fn namespace_selector(namespace: &str) -> LabelSelector {
    selector(&BTreeMap::from([(
        NAMESPACE_NAME_LABEL.to_owned(),
        namespace.to_owned(),
    )]))
}

/// Builds the NetworkPolicy. `database_addresses` are the resolved addresses of a database
/// host given as a DNS name (ignored when the host is an IP address).
pub fn build_network_policy(
    s: &Session,
    config: &OperatorConfig,
    database_addresses: &[IpAddr],
) -> NetworkPolicy {
    let frontend = NetworkPolicyPeer {
        pod_selector: Some(selector(&config.frontend_pod_selector)),
        namespace_selector: config.frontend_namespace.as_deref().map(namespace_selector),
        ip_block: None,
    };
    let ingress = vec![NetworkPolicyIngressRule {
        from: Some(vec![frontend]),
        ports: Some(vec![tcp(wk::RSERVE_PORT)]),
    }];

    let mut egress = Vec::new();
    if let Some(db) = &s.database {
        let addresses: Vec<IpAddr> = match &db.host {
            DatabaseHost::Ip(ip) => vec![*ip],
            DatabaseHost::Name(_) => database_addresses.to_vec(),
        };
        if !addresses.is_empty() {
            egress.push(NetworkPolicyEgressRule {
                to: Some(
                    addresses
                        .into_iter()
                        .map(|ip| ip_peer(host_cidr(ip)))
                        .collect(),
                ),
                ports: Some(vec![tcp(i32::from(db.port))]),
            });
        }
        if matches!(db.host, DatabaseHost::Name(_)) {
            egress.push(NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(selector(&config.dns.pod_selector)),
                    namespace_selector: Some(namespace_selector(&config.dns.namespace)),
                    ip_block: None,
                }]),
                ports: Some(vec![
                    NetworkPolicyPort {
                        port: Some(IntOrString::Int(53)),
                        protocol: Some("UDP".into()),
                        end_port: None,
                    },
                    tcp(53),
                ]),
            });
        }
    }
    egress.extend(s.egress.iter().map(|rule| NetworkPolicyEgressRule {
        to: Some(vec![ip_peer(rule.cidr.clone())]),
        ports: (!rule.ports.is_empty()).then(|| rule.ports.iter().copied().map(tcp).collect()),
    }));

    NetworkPolicy {
        metadata: owned_meta(s, service_name(&s.name), Component::Network),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&selector_labels(&s.name))),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            // No rules at all (with policyType Egress) denies all egress. Sending `[]` would be
            // normalised away by the apiserver and re-sent on every apply: a write per reconcile.
            egress: (!egress.is_empty()).then_some(egress),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{database_secret, rsession, session_of};
    use crate::validate::validate;
    use rsession_api::{DatabaseSpec, EgressRule, NetworkSpec, SecretReference};

    fn policy_for(
        rs: &rsession_api::RSession,
        secret: Option<&k8s_openapi::api::core::v1::Secret>,
        addrs: &[IpAddr],
    ) -> NetworkPolicySpec {
        let config = OperatorConfig::default();
        let s = validate(rs, &config, secret).expect("valid");
        build_network_policy(&s, &config, addrs).spec.expect("spec")
    }

    fn with_db(host: &str) -> (rsession_api::RSession, k8s_openapi::api::core::v1::Secret) {
        let mut rs = rsession("s");
        rs.spec.database = Some(DatabaseSpec {
            secret_ref: SecretReference { name: "db".into() },
            read_only: true,
        });
        (
            rs,
            database_secret("db", &[("host", host), ("port", "5433")]),
        )
    }

    #[test]
    fn network_policy_denies_egress_by_default() {
        let spec = policy_for(&rsession("s"), None, &[]);
        assert!(
            spec.policy_types
                .expect("types")
                .contains(&"Egress".to_owned())
        );
        assert_eq!(
            spec.egress, None,
            "policyType Egress without rules denies all egress"
        );
    }

    #[test]
    fn network_policy_allows_ingress_only_from_the_frontend_on_6311() {
        let spec = policy_for(&rsession("s"), None, &[]);
        let ingress = spec.ingress.expect("ingress");
        assert_eq!(ingress.len(), 1);
        let from = ingress[0].from.as_ref().expect("from");
        assert_eq!(from.len(), 1);
        let labels = from[0]
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .expect("labels");
        assert_eq!(labels, OperatorConfig::default().frontend_pod_selector);
        assert!(from[0].ip_block.is_none());
        assert_eq!(ingress[0].ports, Some(vec![tcp(6311)]));
    }

    #[test]
    fn network_policy_selects_only_the_session_pod() {
        let spec = policy_for(&rsession("s"), None, &[]);
        assert_eq!(
            spec.pod_selector.and_then(|p| p.match_labels),
            Some(selector_labels("s"))
        );
    }

    #[test]
    fn frontend_in_another_namespace_is_selected_by_namespace_name() {
        let config = OperatorConfig {
            frontend_namespace: Some("rsession-system".into()),
            ..OperatorConfig::default()
        };
        let s = session_of(&rsession("s"));
        let spec = build_network_policy(&s, &config, &[]).spec.expect("spec");
        let ingress = spec.ingress.expect("ingress");
        let peer = &ingress[0].from.as_ref().expect("from")[0];
        let ns = peer
            .namespace_selector
            .as_ref()
            .and_then(|n| n.match_labels.clone())
            .expect("ns labels");
        assert_eq!(
            ns.get("kubernetes.io/metadata.name").map(String::as_str),
            Some("rsession-system")
        );
    }

    #[test]
    fn network_policy_opens_exactly_the_database_ip_and_port() {
        let (rs, secret) = with_db("10.1.2.3");
        let egress = policy_for(&rs, Some(&secret), &[]).egress.expect("egress");
        assert_eq!(egress.len(), 1, "no DNS rule for an IP host");
        assert_eq!(egress[0].to, Some(vec![ip_peer("10.1.2.3/32".into())]));
        assert_eq!(egress[0].ports, Some(vec![tcp(5433)]));
    }

    #[test]
    fn database_dns_name_allows_resolved_addresses_and_cluster_dns() {
        let (rs, secret) = with_db("postgres.db.svc");
        let addrs = [
            "10.9.9.9".parse().expect("ip"),
            "fd00::5".parse().expect("ip"),
        ];
        let egress = policy_for(&rs, Some(&secret), &addrs)
            .egress
            .expect("egress");
        assert_eq!(
            egress[0].to,
            Some(vec![
                ip_peer("10.9.9.9/32".into()),
                ip_peer("fd00::5/128".into())
            ])
        );
        let dns = &egress[1];
        assert_eq!(dns.ports.as_ref().map(Vec::len), Some(2));
        let peer = &dns.to.as_ref().expect("to")[0];
        assert_eq!(
            peer.pod_selector
                .as_ref()
                .and_then(|p| p.match_labels.clone()),
            Some(OperatorConfig::default().dns.pod_selector)
        );
        assert!(
            peer.ip_block.is_none(),
            "DNS only to the DNS pods, not to any address"
        );
    }

    #[test]
    fn egress_allow_list_becomes_ip_block_rules() {
        let mut rs = rsession("s");
        rs.spec.network = Some(NetworkSpec {
            egress: vec![
                EgressRule {
                    cidr: "10.20.0.0/16".into(),
                    ports: vec![443],
                },
                EgressRule {
                    cidr: "192.168.1.1/32".into(),
                    ports: vec![],
                },
            ],
        });
        let egress = policy_for(&rs, None, &[]).egress.expect("egress");
        assert_eq!(egress.len(), 2);
        assert_eq!(egress[0].ports, Some(vec![tcp(443)]));
        assert_eq!(
            egress[1].ports, None,
            "no ports means all ports to that network"
        );
        assert_eq!(egress[1].to, Some(vec![ip_peer("192.168.1.1/32".into())]));
    }
}
