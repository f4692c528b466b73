//! Pure builders: from a validated RSession ([`Session`]) to the typed child objects the operator
//! server-side applies. No I/O happens here, so every security invariant is unit-tested.
//!
//! Children and their names (the RSession name is at most 48 characters, see the CRD):
//! | child | name |
//! | --- | --- |
//! | Secret (Rserve credentials) | `<name>-credentials` |
//! | Pod | `<name>-<n>`, `n` counting pod incarnations (with a `db-proxy` sidecar when the spec has a database: `db_proxy.rs`); what its R runs: `startup.rs` |
//! | Service (port 6311) | `<name>` |
//! | NetworkPolicy | `<name>` |
//! | PVC (Persistent workspace) | `<name>-workspace` |

pub mod children;
pub mod db_proxy;
pub mod network_policy;
pub mod pod;
pub mod pvc;
pub mod secret;
pub mod service;
pub mod startup;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use rsession_api::RSession;
use rsession_api::well_known as wk;

use crate::validate::Session;

/// Role of a child, the value of `app.kubernetes.io/component`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The session pod.
    Session,
    /// The credentials Secret.
    Credentials,
    /// A pool's R harness ConfigMap.
    Harness,
    /// The workspace PVC.
    Workspace,
    /// The Service and NetworkPolicy.
    Network,
}

impl Component {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Credentials => "credentials",
            Self::Harness => "harness",
            Self::Workspace => "workspace",
            Self::Network => "network",
        }
    }
}

/// Name of the credentials Secret.
pub fn secret_name(session: &str) -> String {
    format!("{session}-credentials")
}

/// Name of the Service (and of the NetworkPolicy).
pub fn service_name(session: &str) -> String {
    session.to_owned()
}

/// Name of the operator-created workspace PVC.
pub fn pvc_name(session: &str) -> String {
    format!("{session}-workspace")
}

/// Name of the `incarnation`-th pod of a session (1-based).
pub fn pod_name(session: &str, incarnation: u32) -> String {
    format!("{session}-{incarnation}")
}

/// The incarnation number encoded in a pod name made by [`pod_name`], if any.
pub fn pod_incarnation(session: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(session)?.strip_prefix('-')?.parse().ok()
}

/// Labels every child carries; pods are selected by [`selector_labels`].
pub fn labels(session: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (wk::LABEL_APP_NAME.to_owned(), wk::APP_NAME.to_owned()),
        (wk::LABEL_APP_INSTANCE.to_owned(), session.to_owned()),
        (
            wk::LABEL_APP_COMPONENT.to_owned(),
            component.as_str().to_owned(),
        ),
        (wk::LABEL_MANAGED_BY.to_owned(), wk::MANAGER.to_owned()),
        (wk::LABEL_PART_OF.to_owned(), wk::APP_NAME.to_owned()),
        (wk::LABEL_SESSION.to_owned(), session.to_owned()),
    ])
}

/// Labels selecting a session's pods (Service selector, NetworkPolicy podSelector).
pub fn selector_labels(session: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (wk::LABEL_SESSION.to_owned(), session.to_owned()),
        (
            wk::LABEL_APP_COMPONENT.to_owned(),
            Component::Session.as_str().to_owned(),
        ),
    ])
}

/// Metadata of a child owned (controller owner reference) by the RSession.
pub fn owned_meta(s: &Session, name: String, component: Component) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(s.namespace.clone()),
        labels: Some(labels(&s.name, component)),
        owner_references: Some(vec![s.owner_reference.clone()]),
        ..ObjectMeta::default()
    }
}

/// A controller owner reference to the RSession with `blockOwnerDeletion`, so garbage
/// collection deletes the child with its owner.
pub fn controller_owner_reference(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: RSession::api_version(&()).into_owned(),
        kind: RSession::kind(&()).into_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_round_trip_their_incarnation() {
        assert_eq!(pod_name("s", 3), "s-3");
        assert_eq!(pod_incarnation("s", "s-3"), Some(3));
        assert_eq!(pod_incarnation("s", "s-x"), None);
        assert_eq!(pod_incarnation("s", "t-3"), None);
    }

    #[test]
    fn every_child_label_set_contains_the_session_label() {
        for c in [
            Component::Session,
            Component::Credentials,
            Component::Harness,
            Component::Workspace,
            Component::Network,
        ] {
            let l = labels("x", c);
            assert_eq!(l.get(wk::LABEL_SESSION).map(String::as_str), Some("x"));
            assert_eq!(
                l.get(wk::LABEL_MANAGED_BY).map(String::as_str),
                Some(wk::MANAGER)
            );
        }
    }
}
