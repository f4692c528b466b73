//! Warm pools: the pure rules (which pool, the RSession spec, how the
//! session started), then the exact API calls of a create against a fake
//! apiserver that answers the pool GET, the apply, the watch and the
//! credentials Secret.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Toleration};
use kube::Client;
use kube::core::Status;
use rsession_api::{
    ClaimStatus, ImagePullPolicy, NetworkSpec, RSession, RSessionPool, RSessionPoolSpec,
    RSessionPoolStatus, RSessionSpec, RSessionStatus, WorkspaceKind,
};
use rsession_testkit::status::ReadyStatus;
use serde_json::{Value, json};

use super::pools::{Choice, Plan, choose, spec_for, start_of};
use super::*;
use crate::errors::ErrorCode;
use crate::session::{Backend, PoolRequest, Progress};

fn persistent() -> RSessionSpec {
    let mut spec = RSessionSpec::default();
    spec.workspace.kind = WorkspaceKind::Persistent;
    spec
}

fn with_image() -> RSessionSpec {
    RSessionSpec {
        image: Some("registry.example/r:4.5".into()),
        resources: Some(Default::default()),
        ..RSessionSpec::default()
    }
}

fn named(pool: &str) -> PoolRequest {
    PoolRequest::Named(pool.into())
}

#[test]
fn every_pod_shaping_field_is_named_when_set() {
    let all = RSessionSpec {
        image: Some("r".into()),
        image_pull_policy: Some(ImagePullPolicy::Always),
        resources: Some(Default::default()),
        network: Some(NetworkSpec::default()),
        database: Some(
            serde_json::from_value(json!({"secretRef": {"name": "cdm"}})).expect("a database"),
        ),
        runtime_class_name: Some("gvisor".into()),
        node_selector: Some(BTreeMap::new()),
        tolerations: Some(vec![Toleration::default()]),
        ..RSessionSpec::default()
    };
    assert_eq!(
        pod_fields_set(&all),
        [
            "image",
            "imagePullPolicy",
            "resources",
            "network",
            "database",
            "runtimeClassName",
            "nodeSelector",
            "tolerations"
        ]
    );
    assert!(pod_fields_set(&RSessionSpec::default()).is_empty());
    assert!(pool_conflicts(&RSessionSpec::default()).is_empty());
}

#[test]
fn a_named_pool_is_used_for_ephemeral_sessions_without_pod_fields() {
    assert_eq!(
        choose(&named("warm"), Some("other"), &RSessionSpec::default()),
        Ok(Choice::Pool {
            name: "warm".into(),
            explicit: true
        })
    );
}

#[test]
fn a_named_pool_with_a_persistent_workspace_is_an_invalid_argument_naming_it() {
    let e = choose(&named("warm"), None, &persistent()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(
        e.message.contains("\"warm\"") && e.message.contains("Persistent workspace"),
        "{}",
        e.message
    );
    assert_eq!(e.details["pool"], "warm");
    assert_eq!(e.details["conflicts"].as_array().map(Vec::len), Some(1));
}

#[test]
fn a_named_pool_with_pod_fields_in_the_session_spec_is_an_invalid_argument_naming_them() {
    let e = choose(&named("warm"), None, &with_image()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(
        e.message.contains("--session-spec sets image, resources"),
        "{}",
        e.message
    );
    assert_eq!(e.details["pod_fields"], json!(["image", "resources"]));
}

#[test]
fn a_named_pool_must_be_a_pool_name() {
    for bad in [
        "Warm",
        "../secrets/x",
        "warm/status",
        "-w",
        "w-",
        &"w".repeat(41),
    ] {
        let e = choose(&named(bad), None, &RSessionSpec::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad}");
        assert_eq!(e.details["pool"], bad);
    }
    assert!(valid_pool_name(&"w".repeat(40)));
    assert!(valid_pool_name("r-4-5"));
}

#[test]
fn the_default_pool_is_silently_not_used_where_it_cannot_serve() {
    let default = Some("warm");
    assert_eq!(
        choose(&PoolRequest::Default, default, &RSessionSpec::default()),
        Ok(Choice::Pool {
            name: "warm".into(),
            explicit: false
        })
    );
    assert_eq!(
        choose(&PoolRequest::Default, default, &persistent()),
        Ok(Choice::Cold)
    );
    assert_eq!(
        choose(&PoolRequest::Default, default, &with_image()),
        Ok(Choice::Cold)
    );
    assert_eq!(
        choose(&PoolRequest::Default, None, &RSessionSpec::default()),
        Ok(Choice::Cold)
    );
}

#[test]
fn an_empty_pool_argument_means_cold_even_with_a_default() {
    assert_eq!(
        PoolRequest::from_argument(Some("")),
        PoolRequest::Cold,
        "pool: \"\""
    );
    assert_eq!(PoolRequest::from_argument(None), PoolRequest::Default);
    assert_eq!(
        choose(&PoolRequest::Cold, Some("warm"), &RSessionSpec::default()),
        Ok(Choice::Cold)
    );
}

#[test]
fn a_pool_spec_sets_pool_ref_and_leaves_every_pod_field_unset() {
    let mut base = with_image();
    base.lifecycle.suspend = true;
    let spec = spec_for(&base, Some("warm"));
    assert_eq!(
        spec.pool_ref.as_ref().map(|p| p.name.as_str()),
        Some("warm")
    );
    assert!(pod_fields_set(&spec).is_empty(), "{spec:?}");
    assert_eq!(spec.workspace.kind, WorkspaceKind::Ephemeral);
    assert!(
        spec.lifecycle.suspend,
        "the lifecycle of --session-spec is kept"
    );
    let body = serde_json::to_value(&spec).unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["lifecycle", "poolRef", "workspace"], "{body}");
}

#[test]
fn a_cold_spec_is_the_session_spec_as_it_is() {
    let base = with_image();
    assert_eq!(spec_for(&base, None), base);
    assert!(spec_for(&base, None).pool_ref.is_none());
}

fn ready(claim: Option<ClaimStatus>) -> RSession {
    let mut rs = RSession::new("rs-1", RSessionSpec::default());
    let mut status = ReadyStatus::new("10.0.0.9:6311", "rs-1-credentials").build();
    status.pod_name = Some("rs-1".into());
    status.claim = claim;
    rs.status = Some(status);
    rs
}

fn claim(warm: bool, pod: Option<&str>) -> ClaimStatus {
    ClaimStatus {
        pool: "warm".into(),
        warm,
        pod_name: pod.map(Into::into),
        ..ClaimStatus::default()
    }
}

#[test]
fn the_start_comes_from_the_claim() {
    let plan = Plan {
        pool: Some("warm".into()),
        ..Plan::default()
    };
    let warm = start_of(
        &ready(Some(claim(true, Some("warm-x7k2q")))),
        &plan,
        Duration::from_millis(180),
    );
    assert!(warm.warm);
    assert_eq!(warm.pool.as_deref(), Some("warm"));
    assert_eq!(warm.pod_name.as_deref(), Some("warm-x7k2q"));
    assert_eq!(warm.ready_ms, 180);
    assert_eq!(warm.note, None);

    let empty = start_of(
        &ready(Some(claim(false, None))),
        &plan,
        Duration::from_secs(9),
    );
    assert!(!empty.warm);
    assert_eq!(empty.pool.as_deref(), Some("warm"));
    assert_eq!(
        empty.pod_name.as_deref(),
        Some("rs-1"),
        "the session's own pod"
    );
    assert!(
        empty.note.as_deref().unwrap().contains("had no Ready pod"),
        "{empty:?}"
    );

    let unclaimed = start_of(&ready(None), &plan, Duration::ZERO);
    assert!(!unclaimed.warm);
    assert!(
        unclaimed.note.as_deref().unwrap().contains("no claim"),
        "{unclaimed:?}"
    );

    let cold = start_of(&ready(None), &Plan::default(), Duration::from_secs(2));
    assert!(!cold.warm);
    assert_eq!(cold.pool, None);
    assert_eq!(cold.note.as_deref(), Some("a new pod"));
}

// The fake apiserver.

const NS: &str = "ns";
const RSESSIONS: &str = "/apis/rsession.dev/v1alpha1/namespaces/ns/rsessions";
const POOLS: &str = "/apis/rsession.dev/v1alpha1/namespaces/ns/rsessionpools";

/// Answers one namespace's API calls and records them in order (Events,
/// published in the background, are answered but not recorded).
#[derive(Clone)]
struct FakeApi {
    /// `"<verb> <path>"` per call; `LIST`/`WATCH` for collection GETs.
    calls: Arc<Mutex<Vec<String>>>,
    /// Query strings, in the same order.
    queries: Arc<Mutex<Vec<String>>>,
    /// Applied RSessions by name, as the PATCH bodies carried them.
    applied: Arc<Mutex<BTreeMap<String, Value>>>,
    /// The RSessionPool the GET finds; `None`: 404.
    pool: Option<RSessionPool>,
    /// `status.claim` of the Ready status the watch delivers.
    claim: Option<ClaimStatus>,
    /// How long after the watch opens the Ready event comes.
    ready_after: Duration,
    /// When set, the watch first shows the session Starting with this `status.podIP`, and the
    /// credentials Secret holds this login.
    starting: Option<(String, crate::session::Credentials)>,
}

impl FakeApi {
    fn new(pool: Option<RSessionPool>, claim: Option<ClaimStatus>) -> Self {
        FakeApi {
            calls: Arc::default(),
            queries: Arc::default(),
            applied: Arc::default(),
            pool,
            claim,
            ready_after: Duration::from_millis(300),
            starting: None,
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn applied(&self, name: &str) -> Value {
        self.applied.lock().unwrap()[name].clone()
    }
}

fn pool(name: &str, ready: i32) -> RSessionPool {
    let mut p = RSessionPool::new(
        name,
        RSessionPoolSpec {
            replicas: 2,
            ..RSessionPoolSpec::default()
        },
    );
    p.metadata.namespace = Some(NS.into());
    p.status = Some(RSessionPoolStatus {
        replicas: 2,
        ready_replicas: ready,
        ..RSessionPoolStatus::default()
    });
    p
}

fn not_found(what: &str) -> axum::response::Response {
    let s = Status::failure(&format!("{what} not found"), "NotFound").with_code(404);
    (StatusCode::NOT_FOUND, axum::Json(s)).into_response()
}

async fn handler(
    State(api): State<FakeApi>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> axum::response::Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    if path.contains("/events") {
        return (StatusCode::CREATED, body).into_response();
    }
    let verb = match method.as_str() {
        "GET" if path == RSESSIONS && query.contains("watch=true") => "WATCH",
        "GET" if path == RSESSIONS => "LIST",
        m => m,
    };
    api.calls.lock().unwrap().push(format!("{verb} {path}"));
    api.queries.lock().unwrap().push(query.clone());
    let name = path.rsplit('/').next().unwrap_or_default().to_string();
    let selected = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldSelector=metadata.name%3D"))
        .unwrap_or_default()
        .to_string();
    match verb {
        "GET" if path.starts_with(POOLS) => match &api.pool {
            Some(p) if p.metadata.name.as_deref() == Some(&name) => {
                axum::Json(p.clone()).into_response()
            }
            _ => not_found("rsessionpools"),
        },
        "PATCH" if path.starts_with(RSESSIONS) => {
            let mut applied: Value = serde_json::from_slice(&body).expect("apply body");
            applied["metadata"]["resourceVersion"] = json!("1");
            api.applied.lock().unwrap().insert(name, applied.clone());
            axum::Json(applied).into_response()
        }
        // The session as applied, not Ready yet: the watch brings Ready.
        "LIST" => {
            let items: Vec<Value> = api
                .applied
                .lock()
                .unwrap()
                .get(&selected)
                .cloned()
                .into_iter()
                .collect();
            axum::Json(json!({
                "apiVersion": "rsession.dev/v1alpha1",
                "kind": "RSessionList",
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }))
            .into_response()
        }
        "WATCH" => {
            let mut rs: RSession =
                serde_json::from_value(api.applied.lock().unwrap()[&selected].clone())
                    .expect("an applied RSession");
            let mut status: RSessionStatus =
                ReadyStatus::new("10.0.0.9:6311", format!("{selected}-credentials")).build();
            status.pod_name = Some(
                api.claim
                    .as_ref()
                    .and_then(|c| c.pod_name.clone())
                    .unwrap_or_else(|| selected.clone()),
            );
            status.claim = api.claim.clone();
            let mut starting_rs = rs.clone();
            rs.status = Some(status);
            rs.metadata.resource_version = Some("3".into());
            let event = format!("{}\n", json!({"type": "MODIFIED", "object": rs}));
            let delay = api.ready_after;
            let first = api.starting.as_ref().map(|(ip, _)| {
                starting_rs.status = Some(RSessionStatus {
                    phase: Some(rsession_api::Phase::Starting),
                    pod_name: Some(selected.clone()),
                    pod_ip: Some(ip.clone()),
                    credentials_secret: Some(format!("{selected}-credentials")),
                    ..RSessionStatus::default()
                });
                starting_rs.metadata.resource_version = Some("2".into());
                Ok::<_, std::convert::Infallible>(Bytes::from(format!(
                    "{}\n",
                    json!({"type": "MODIFIED", "object": starting_rs})
                )))
            });
            let events = futures::stream::iter(first)
                .chain(futures::stream::once(async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(Bytes::from(event))
                }))
                .chain(futures::stream::pending());
            Body::from_stream(events).into_response()
        }
        "GET" if path.contains("/secrets/") => axum::Json(Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name),
                namespace: Some(NS.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from(match &api.starting {
                Some((_, login)) => [
                    (
                        "username".into(),
                        ByteString(login.username.clone().into_bytes()),
                    ),
                    (
                        "password".into(),
                        ByteString(login.password.clone().into_bytes()),
                    ),
                ],
                None => [
                    ("username".into(), ByteString(b"rsession".to_vec())),
                    ("password".into(), ByteString(b"pw".to_vec())),
                ],
            })),
            ..Secret::default()
        })
        .into_response(),
        _ => not_found("this fake"),
    }
}

async fn backend(api: FakeApi, config: KubernetesConfig) -> KubernetesBackend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(handler).with_state(api);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
    KubernetesBackend::new(Client::try_from(kube::Config::new(url)).unwrap(), config)
}

/// A progress sink that keeps the messages.
fn recorded() -> (Progress, Arc<Mutex<Vec<String>>>) {
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = messages.clone();
    let progress = Progress::new(move |u| {
        keep.lock().unwrap().push(u.message);
        Box::pin(async {})
    });
    (progress, messages)
}

fn create_calls(id: &str) -> Vec<String> {
    vec![
        format!("PATCH {RSESSIONS}/{id}"),
        format!("LIST {RSESSIONS}"),
        format!("WATCH {RSESSIONS}"),
        format!("GET /api/v1/namespaces/ns/secrets/{id}-credentials"),
    ]
}

#[tokio::test]
async fn a_named_pool_is_read_then_named_in_the_rsession_and_the_warm_claim_reported() {
    let api = FakeApi::new(Some(pool("warm", 2)), Some(claim(true, Some("warm-x7k2q"))));
    let b = backend(api.clone(), KubernetesConfig::new(NS)).await;
    let (progress, messages) = recorded();
    let created = b
        .create("alice", "rs-1", &named("warm"), &progress)
        .await
        .expect("created");

    let mut expected = vec![format!("GET {POOLS}/warm")];
    expected.extend(create_calls("rs-1"));
    assert_eq!(api.calls(), expected);
    let queries = api.queries.lock().unwrap().clone();
    assert!(
        queries[1].contains("fieldManager=rsession-mcp"),
        "{queries:?}"
    );
    assert!(
        queries[2].contains("fieldSelector=metadata.name%3Drs-1"),
        "{queries:?}"
    );

    let body = api.applied("rs-1");
    assert_eq!(body["spec"]["poolRef"], json!({"name": "warm"}), "{body}");
    let keys: Vec<&String> = body["spec"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["lifecycle", "poolRef", "workspace"], "{body}");
    assert_eq!(body["spec"]["workspace"]["kind"], "Ephemeral");
    assert_eq!(
        body["metadata"]["labels"][LABEL_OWNER],
        owner_label_value("alice")
    );

    let start = created.start;
    assert!(start.warm, "{start:?}");
    assert_eq!(start.pool.as_deref(), Some("warm"));
    assert_eq!(start.pod_name.as_deref(), Some("warm-x7k2q"));
    assert!(
        (300..5000).contains(&start.ready_ms),
        "measured up to the Ready event, 300 ms after the watch opened: {start:?}"
    );
    assert_eq!(created.endpoint.addr, "10.0.0.9:6311");
    let messages = messages.lock().unwrap().clone();
    assert!(
        messages[0].contains("from pool warm (2 Ready)"),
        "{messages:?}"
    );
}

#[tokio::test]
async fn an_empty_pool_starts_cold_and_says_so() {
    let api = FakeApi::new(Some(pool("warm", 0)), Some(claim(false, None)));
    let b = backend(api.clone(), KubernetesConfig::new(NS)).await;
    let created = b
        .create("alice", "rs-1", &named("warm"), &Progress::none())
        .await
        .expect("created");
    assert_eq!(api.applied("rs-1")["spec"]["poolRef"]["name"], "warm");
    let start = created.start;
    assert!(!start.warm);
    assert_eq!(start.pool.as_deref(), Some("warm"));
    assert_eq!(start.pod_name.as_deref(), Some("rs-1"));
    assert!(start.note.unwrap().contains("pool warm had no Ready pod"));
}

#[tokio::test]
async fn a_missing_named_pool_is_pool_not_found_and_nothing_is_created() {
    let api = FakeApi::new(None, None);
    let mut config = KubernetesConfig::new(NS);
    config.default_pool = Some("other".into());
    let b = backend(api.clone(), config).await;
    let e = b
        .create("alice", "rs-1", &named("warm"), &Progress::none())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PoolNotFound, "{e:?}");
    assert_eq!(e.body()["code"], "pool_not_found");
    assert_eq!(e.details["pool"], "warm");
    assert!(
        e.message
            .contains("no RSessionPool \"warm\" in namespace ns"),
        "{}",
        e.message
    );
    assert_eq!(api.calls(), [format!("GET {POOLS}/warm")]);
}

#[tokio::test]
async fn a_missing_default_pool_starts_cold_and_every_create_still_succeeds() {
    let api = FakeApi::new(None, None);
    let mut config = KubernetesConfig::new(NS);
    config.default_pool = Some("warm".into());
    let b = backend(api.clone(), config).await;
    for id in ["rs-1", "rs-2"] {
        let created = b
            .create("alice", id, &PoolRequest::Default, &Progress::none())
            .await
            .expect("a cold start");
        let start = created.start;
        assert!(!start.warm);
        assert_eq!(start.pool, None);
        assert!(
            start
                .note
                .unwrap()
                .contains("the default pool warm does not exist"),
        );
        assert!(api.applied(id)["spec"].get("poolRef").is_none());
    }
    let mut expected = vec![format!("GET {POOLS}/warm")];
    expected.extend(create_calls("rs-1"));
    expected.push(format!("GET {POOLS}/warm"));
    expected.extend(create_calls("rs-2"));
    assert_eq!(api.calls(), expected);
}

#[tokio::test]
async fn the_default_pool_is_not_read_for_a_persistent_session_spec_nor_for_an_empty_pool() {
    let api = FakeApi::new(Some(pool("warm", 2)), None);
    let mut config = KubernetesConfig::new(NS);
    config.default_pool = Some("warm".into());
    let mut persistent = config.clone();
    persistent.spec = self::persistent();
    persistent.spec.workspace.size = Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
        "1Gi".into(),
    ));

    let b = backend(api.clone(), persistent).await;
    let created = b
        .create("alice", "rs-1", &PoolRequest::Default, &Progress::none())
        .await
        .expect("a cold start");
    assert!(!created.start.warm);
    assert_eq!(api.calls(), create_calls("rs-1"));
    let spec = &api.applied("rs-1")["spec"];
    assert_eq!(spec["workspace"]["kind"], "Persistent");
    assert!(spec.get("poolRef").is_none(), "{spec}");

    // Named, the same conflict is refused before any API call.
    let e = b
        .create("alice", "rs-2", &named("warm"), &Progress::none())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert_eq!(api.calls(), create_calls("rs-1"), "no call for rs-2");

    api.calls.lock().unwrap().clear();
    let b = backend(api.clone(), config).await;
    b.create("alice", "rs-3", &PoolRequest::Cold, &Progress::none())
        .await
        .expect("a cold start");
    assert_eq!(
        api.calls(),
        create_calls("rs-3"),
        "pool: \"\" reads no pool"
    );
    assert!(api.applied("rs-3")["spec"].get("poolRef").is_none());
}

#[tokio::test]
async fn a_pool_in_the_watch_cache_is_not_read_again_and_one_missing_from_it_is() {
    let api = FakeApi::new(Some(pool("warm", 2)), Some(claim(true, Some("warm-x7k2q"))));
    let mut b = backend(api.clone(), KubernetesConfig::new(NS)).await;
    let (store, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pool("warm", 3)));
    b.pools.set_cache(store, None);
    let (progress, messages) = recorded();
    let created = b
        .create("alice", "rs-1", &named("warm"), &progress)
        .await
        .expect("created");
    assert!(created.start.warm);
    assert_eq!(api.calls(), create_calls("rs-1"), "no GET of the pool");
    assert!(
        messages.lock().unwrap()[0].contains("from pool warm (3 Ready)"),
        "the cached pool's counts"
    );

    // A pool the cache does not hold (created a moment ago) is read with a GET.
    api.calls.lock().unwrap().clear();
    let e = b
        .create("alice", "rs-2", &named("cold"), &Progress::none())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PoolNotFound);
    assert_eq!(api.calls(), [format!("GET {POOLS}/cold")]);
}

/// A local Rserve standing in for a starting pod's, and a fake apiserver whose watch shows the
/// session Starting at its IP (with its login in the Secret), with a config pointing at its port.
async fn starting_pod_that_answers() -> (crate::local_rserve::LocalRserve, FakeApi, KubernetesConfig)
{
    let rserve = crate::local_rserve::LocalRserve::start(&Default::default())
        .await
        .expect("Rserve");
    let (ip, port) = rserve.addr().rsplit_once(':').expect("host:port");
    let mut api = FakeApi::new(None, None);
    api.starting = Some((ip.to_string(), rserve.credentials().clone()));
    let mut config = KubernetesConfig::new(NS);
    config.rserve_port = port.parse().unwrap();
    (rserve, api, config)
}

#[tokio::test]
async fn a_starting_session_whose_rserve_answers_is_usable_before_ready() {
    let (rserve, mut api, config) = starting_pod_that_answers().await;
    // Ready comes much later than Rserve answers.
    api.ready_after = Duration::from_secs(60);
    let b = backend(api.clone(), config).await;
    let created = tokio::time::timeout(
        Duration::from_secs(20),
        b.create("alice", "rs-1", &PoolRequest::Cold, &Progress::none()),
    )
    .await
    .expect("usable without the Ready event")
    .expect("created");
    assert_eq!(created.endpoint.addr, rserve.addr());
    assert_eq!(
        created.endpoint.credentials.as_ref(),
        Some(rserve.credentials())
    );
    assert!(created.start.ready_ms < 20_000, "{:?}", created.start);
}

#[tokio::test]
async fn a_starting_session_whose_rserve_does_not_answer_waits_for_ready() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut api = FakeApi::new(None, None);
    api.starting = Some((
        "127.0.0.1".into(),
        crate::session::Credentials {
            username: "rsession".into(),
            password: "pw".into(),
        },
    ));
    let mut config = KubernetesConfig::new(NS);
    config.rserve_port = port;
    created_at_the_ready_endpoint(api, config, "the Ready status's endpoint").await;
}

/// Creates session rs-1 cold and checks that it is used at the Ready status's endpoint (`why`),
/// not at the starting pod's IP.
async fn created_at_the_ready_endpoint(api: FakeApi, config: KubernetesConfig, why: &str) {
    let b = backend(api, config).await;
    let created = b
        .create("alice", "rs-1", &PoolRequest::Cold, &Progress::none())
        .await
        .expect("created");
    assert_eq!(created.endpoint.addr, "10.0.0.9:6311", "{why}");
}

#[tokio::test]
async fn a_starting_session_with_a_database_waits_for_ready_even_when_rserve_answers() {
    let (_rserve, api, mut config) = starting_pod_that_answers().await;
    config.spec.database = Some(rsession_api::DatabaseSpec {
        secret_ref: rsession_api::SecretReference {
            name: "omop".into(),
        },
        read_only: true,
    });
    created_at_the_ready_endpoint(
        api,
        config,
        "Ready's endpoint: the database proxy may not be ready before the pod is",
    )
    .await;
}
