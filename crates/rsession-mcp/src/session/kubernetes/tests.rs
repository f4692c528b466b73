//! Unit tests: owner label, readiness, progress and terminal states,
//! credentials.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use rsession_api::status::CONDITION_READY;
use rsession_api::{Phase, RSession, RSessionSpec};

use super::status::{not_ready, terminal_state};
use super::*;
use crate::errors::ErrorCode;
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use rsession_api::RSessionStatus;

fn with_status(status: RSessionStatus) -> RSession {
    let mut rs = RSession::new("rs-1", RSessionSpec::default());
    rs.status = Some(status);
    rs
}

fn ready_condition(status: &str) -> Condition {
    Condition {
        type_: CONDITION_READY.into(),
        status: status.into(),
        reason: "RserveReady".into(),
        message: String::new(),
        last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        observed_generation: None,
    }
}

#[test]
fn owner_label_is_a_valid_distinct_label_value() {
    let a = owner_label_value("system:serviceaccount:team-a:agent");
    let b = owner_label_value("system:serviceaccount:team-a:agent2");
    assert_ne!(a, b);
    assert_eq!(a.len(), 50);
    assert!(a.len() <= 63);
    assert!(a.starts_with("u-"));
    assert!(a[2..].bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(a, owner_label_value("system:serviceaccount:team-a:agent"));
}

#[test]
fn ready_needs_the_condition_endpoint_and_secret() {
    let full = RSessionStatus {
        phase: Some(Phase::Ready),
        conditions: vec![ready_condition("True")],
        endpoint: Some("rs-1.ns.svc:6311".into()),
        credentials_secret: Some("rs-1-credentials".into()),
        ..RSessionStatus::default()
    };
    assert!(with_status(full.clone()).is_ready());
    let mut no_endpoint = full.clone();
    no_endpoint.endpoint = None;
    assert!(!with_status(no_endpoint).is_ready());
    let mut false_condition = full.clone();
    false_condition.conditions = vec![ready_condition("False")];
    assert!(!with_status(false_condition).is_ready());
    assert!(!RSession::new("x", RSessionSpec::default()).is_ready());
}

#[test]
fn progress_follows_the_phase() {
    let starting = with_status(RSessionStatus {
        phase: Some(Phase::Starting),
        message: Some("pulling image".into()),
        ..RSessionStatus::default()
    });
    let (step, text) = progress_step(&starting);
    assert_eq!(step, 2.0);
    assert!(
        text.starts_with("Starting:") && text.contains("pulling image"),
        "{text}"
    );
    let (step, text) = progress_step(&RSession::new("x", RSessionSpec::default()));
    assert_eq!(step, 1.0);
    assert!(text.starts_with("Pending:"), "{text}");
}

#[test]
fn failed_and_expired_sessions_are_terminal_with_codes() {
    let failed = with_status(RSessionStatus {
        phase: Some(Phase::Failed),
        message: Some("OOMKilled".into()),
        ..RSessionStatus::default()
    });
    let e = not_ready(&failed);
    assert_eq!(e.code, ErrorCode::BackendUnavailable);
    assert!(e.message.contains("OOMKilled"));
    let expired = with_status(RSessionStatus {
        phase: Some(Phase::Expired),
        ..RSessionStatus::default()
    });
    assert_eq!(not_ready(&expired).code, ErrorCode::SessionNotReady);
    let starting = with_status(RSessionStatus {
        phase: Some(Phase::Starting),
        ..RSessionStatus::default()
    });
    assert!(terminal_state(&starting).is_none());
    assert_eq!(not_ready(&starting).details["phase"], "Starting");
}

#[test]
fn credentials_come_from_the_operator_keys() {
    let secret = Secret {
        data: Some(BTreeMap::from([
            ("username".to_string(), ByteString(b"rsession".to_vec())),
            ("password".to_string(), ByteString(b"pw".to_vec())),
        ])),
        ..Secret::default()
    };
    let c = credentials_from(&secret).expect("credentials");
    assert_eq!(c.username, "rsession");
    assert_eq!(c.password, "pw");
    assert!(credentials_from(&Secret::default()).is_none());
}
