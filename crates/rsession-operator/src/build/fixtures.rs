//! Test fixtures shared by the builder, validation and status tests.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rsession_api::{RSession, RSessionSpec};

use crate::config::OperatorConfig;
use crate::validate::{Session, validate};

/// An RSession as read from an apiserver: name, namespace `ns`, uid, generation 1, default spec.
pub fn rsession(name: &str) -> RSession {
    let mut rs = RSession::new(name, RSessionSpec::default());
    rs.metadata.namespace = Some("ns".into());
    rs.metadata.uid = Some(format!("uid-{name}"));
    rs.metadata.generation = Some(1);
    rs
}

/// A database Secret named `name` with the given string keys, plus `user: analyst` unless
/// `kvs` names a user (the operator requires one; the tests about it use
/// [`database_secret_exactly`]).
pub fn database_secret(name: &str, kvs: &[(&str, &str)]) -> Secret {
    let mut kvs = kvs.to_vec();
    if !kvs.iter().any(|(k, _)| *k == "user") {
        kvs.push(("user", "analyst"));
    }
    database_secret_exactly(name, &kvs)
}

/// A database Secret named `name` with exactly the given string keys.
pub fn database_secret_exactly(name: &str, kvs: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        },
        data: Some(
            kvs.iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Secret::default()
    }
}

/// The validated [`Session`] for `rs` under the default operator configuration.
pub fn session_of(rs: &RSession) -> Session {
    validate(rs, &OperatorConfig::default(), None).expect("fixture is valid")
}
