//! Kubernetes API failures: how each kind maps to a tool error, a real client
//! against an apiserver that is not there, and activity stamps retried
//! through an outage against a fake apiserver.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use rsession_api::well_known as wk;
use rsession_api::{RSession, RSessionSpec};

use super::errors::api_error;
use super::*;
use crate::errors::ErrorCode;
use crate::session::{Backend, PoolRequest, Progress};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use kube::core::Status;

fn api(code: u16) -> kube::Error {
    kube::Error::Api(
        Status::failure("the apiserver says no", "SomeReason")
            .with_code(code)
            .boxed(),
    )
}

fn io(kind: std::io::ErrorKind) -> std::io::Error {
    std::io::Error::new(kind, "simulated")
}

#[test]
fn http_statuses_map_to_codes() {
    for (status, code) in [
        (403, ErrorCode::Forbidden),
        (404, ErrorCode::SessionNotFound),
        (400, ErrorCode::InvalidArgument),
        (422, ErrorCode::InvalidArgument),
        (401, ErrorCode::BackendUnavailable),
        (408, ErrorCode::BackendUnavailable),
        (409, ErrorCode::BackendUnavailable),
        (429, ErrorCode::BackendUnavailable),
        (500, ErrorCode::BackendUnavailable),
        (502, ErrorCode::BackendUnavailable),
        (503, ErrorCode::BackendUnavailable),
        (504, ErrorCode::BackendUnavailable),
        (418, ErrorCode::Internal),
    ] {
        assert_eq!(api_error_code(&api(status)), code, "HTTP {status}");
        let e = api_error("create RSessions", &api(status));
        assert_eq!(e.code, code, "HTTP {status}");
        assert_eq!(e.details["http_status"], status);
        assert!(e.message.contains("the apiserver says no"), "{}", e.message);
    }
    assert!(api_error("create RSessions", &api(503)).code.retryable());
    assert!(api_error("create RSessions", &api(429)).code.retryable());
    assert!(!api_error("create RSessions", &api(403)).code.retryable());
    assert!(!api_error("create RSessions", &api(404)).code.retryable());
}

#[test]
fn transport_failures_are_backend_unavailable_and_retryable() {
    use std::io::ErrorKind::*;
    for kind in [ConnectionRefused, ConnectionReset, TimedOut, BrokenPipe] {
        let service = kube::Error::Service(Box::new(io(kind)));
        let e = api_error("create RSessions", &service);
        assert_eq!(e.code, ErrorCode::BackendUnavailable, "{kind:?}");
        assert!(e.code.retryable());
        assert!(
            e.message.contains("the Kubernetes API is unavailable")
                && e.message.contains("Retry shortly"),
            "{}",
            e.message
        );
        assert_eq!(
            api_error_code(&kube::Error::ReadEvents(io(kind))),
            ErrorCode::BackendUnavailable
        );
    }
}

#[test]
fn answers_that_retrying_cannot_fix_are_internal() {
    let serde = serde_json::from_str::<u8>("not json").unwrap_err();
    let utf8 = String::from_utf8(vec![0xff]).unwrap_err();
    let http = http::Request::builder()
        .method("not a method")
        .body(())
        .unwrap_err();
    for e in [
        kube::Error::SerdeError(serde),
        kube::Error::FromUtf8(utf8),
        kube::Error::HttpError(http),
        kube::Error::TlsRequired,
        kube::Error::LinesCodecMaxLineLengthExceeded,
    ] {
        let t = api_error("list RSessions", &e);
        assert_eq!(t.code, ErrorCode::Internal, "{e}");
        assert!(!t.code.retryable());
    }
}

/// A client for `http://127.0.0.1:<port>`.
fn client_at(port: u16) -> Client {
    let url: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
    super::client::client(kube::Config::new(url)).expect("client")
}

/// A loopback port nothing listens on (free a moment ago).
fn closed_port() -> u16 {
    rserve::testing::free_port().expect("free port")
}

#[tokio::test]
async fn create_and_list_while_the_apiserver_is_down_are_retryable_backend_unavailable() {
    let backend = KubernetesBackend::new(client_at(closed_port()), KubernetesConfig::new("ns"));
    let e = backend
        .create("alice", "rs-down", &PoolRequest::Default, &Progress::none())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
    assert_eq!(e.body()["retryable"], true);
    assert!(e.message.contains("create RSessions"), "{}", e.message);
    let e = backend.list("alice").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
    let e = backend.endpoint("alice", "rs-down").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
    assert!(!backend.ready().await);
}

/// A fake apiserver: PATCHes of RSessions fail with 500 while `failures`
/// lasts, then succeed; every PATCH body is recorded.
#[derive(Clone, Default)]
struct FakeApi {
    failures: Arc<std::sync::atomic::AtomicUsize>,
    patches: Arc<Mutex<Vec<(u16, serde_json::Value)>>>,
    done: Arc<tokio::sync::Notify>,
}

async fn fake_handler(
    State(api): State<FakeApi>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> axum::response::Response {
    if method != Method::PATCH || !uri.path().contains("/rsessions/") {
        return (StatusCode::NOT_FOUND, "not faked").into_response();
    }
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let failing = api
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing { 500 } else { 200 };
    api.patches.lock().unwrap().push((status, body.clone()));
    if failing {
        let s = Status::failure("etcd is unavailable", "InternalError").with_code(500);
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(s)).into_response();
    }
    api.done.notify_one();
    let mut rs = RSession::new("rs-1", RSessionSpec::default());
    rs.metadata.namespace = Some("ns".into());
    rs.metadata.annotations = body["metadata"]["annotations"].as_object().map(|m| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect()
    });
    axum::Json(rs).into_response()
}

async fn fake_apiserver(api: FakeApi) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(fake_handler).with_state(api);
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn a_failed_activity_stamp_is_retried_until_the_api_answers() {
    let api = FakeApi::default();
    api.failures.store(2, Ordering::SeqCst);
    let port = fake_apiserver(api.clone()).await;
    let mut config = KubernetesConfig::new("ns");
    config.activity_retry_delay = Duration::from_millis(20);
    let backend = KubernetesBackend::new(client_at(port), config);

    // Returns at once: the stamp is the background's business.
    backend.record_activity("alice", "rs-1");
    tokio::time::timeout(Duration::from_secs(20), api.done.notified())
        .await
        .expect("the stamp went through after the API recovered");
    let patches = api.patches.lock().unwrap().clone();
    let statuses: Vec<u16> = patches.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![500, 500, 200]);
    // Every attempt carries the time of the evaluation, not of the retry.
    let stamp = |b: &serde_json::Value| {
        b["metadata"]["annotations"][wk::ANNOTATION_LAST_ACTIVITY]
            .as_str()
            .map(str::to_string)
    };
    assert!(stamp(&patches[0].1).is_some(), "{:?}", patches[0].1);
    assert!(
        patches
            .iter()
            .all(|(_, b)| stamp(b) == stamp(&patches[0].1))
    );
}

#[tokio::test]
async fn a_retry_stops_once_the_session_is_closed_or_stamped_again() {
    let api = FakeApi::default();
    api.failures.store(usize::MAX, Ordering::SeqCst);
    let port = fake_apiserver(api.clone()).await;
    let mut config = KubernetesConfig::new("ns");
    config.activity_retry_delay = Duration::from_millis(10);
    config.activity_interval = Duration::ZERO;
    let backend = KubernetesBackend::new(client_at(port), config);
    let attempts = || api.patches.lock().unwrap().len();
    let retrying = || async {
        while attempts() < 2 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };

    // Closed: what close_session does to the throttle, without its API calls.
    let task = backend
        .activity
        .stamp("alice", "rs-1")
        .expect("a stamp task");
    tokio::time::timeout(Duration::from_secs(10), retrying())
        .await
        .expect("retried");
    backend.activity.forget("rs-1");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the retry ended after close although the API still fails")
        .expect("task");

    // Superseded by a newer stamp of the same session.
    api.patches.lock().unwrap().clear();
    let older = backend
        .activity
        .stamp("alice", "rs-2")
        .expect("a stamp task");
    tokio::time::timeout(Duration::from_secs(10), retrying())
        .await
        .expect("retried");
    let newer = backend
        .activity
        .stamp("alice", "rs-2")
        .expect("a newer stamp task");
    tokio::time::timeout(Duration::from_secs(10), older)
        .await
        .expect("the older retry ended once a newer stamp was sent")
        .expect("task");
    assert!(!newer.is_finished(), "the newest stamp keeps retrying");
    newer.abort();
}

/// A fake API server that answers 503 to every request but, with `answer_first_list`, the
/// first LIST of RSessions (an empty list). Returns its port and its request count.
async fn unavailable_api(answer_first_list: bool) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = requests.clone();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let seen = seen.clone();
        async move {
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            if answer_first_list && first && uri.path().ends_with("/rsessions") {
                let list = serde_json::json!({
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadataList",
                    "metadata": {"resourceVersion": "1"},
                    "items": [],
                });
                return axum::Json(list).into_response();
            }
            let s = Status::failure("etcd is unavailable", "ServiceUnavailable").with_code(503);
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(s)).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, requests)
}

/// `/readyz` stays ready through an API outage once the API has answered: the first LIST is
/// answered, every later request would get 503, and `ready()` does not ask again.
#[tokio::test]
async fn ready_holds_through_an_api_outage_after_the_first_answer() {
    let (port, requests) = unavailable_api(true).await;
    let backend = KubernetesBackend::new(client_at(port), KubernetesConfig::new("ns"));
    assert!(backend.ready().await, "the first LIST was answered");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    assert!(backend.ready().await, "still ready during the outage");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "ready() asked the API again"
    );
}

/// A tool call against an API server answering 503 ends `backend_unavailable` after
/// `client::RETRIES` retries, not kube's default of 15 with delays growing to minutes.
#[tokio::test]
async fn a_503_is_retried_a_bounded_number_of_times() {
    let (port, requests) = unavailable_api(false).await;
    let backend = KubernetesBackend::new(client_at(port), KubernetesConfig::new("ns"));
    let e = tokio::time::timeout(Duration::from_secs(30), backend.list("alice"))
        .await
        .expect("list_sessions ended")
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable, "{e:?}");
    assert!(e.code.retryable());
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1 + super::client::RETRIES as usize,
        "the first request and its retries"
    );
}
