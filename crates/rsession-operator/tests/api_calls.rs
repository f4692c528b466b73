//! API-call scenario tests: one reconcile against a tower-test mock apiserver that asserts the
//! exact sequence of requests (method, path, field manager, key body fields) and answers them.
//! Scenarios: create, update, steady state, suspend, expire, pod deleted by hand, delete,
//! invalid spec.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use rsession_api::status::{CONDITION_EXPIRED, CONDITION_POD_SCHEDULED};
use rsession_api::{
    DatabaseSpec, EgressRule, NetworkSpec, Phase, RSession, RSessionSpec, RSessionStatus,
    SecretReference,
};
use rsession_operator::metrics::Metrics;
use rsession_operator::{Context, Error, OperatorConfig, error_policy, reconcile};
use rsession_testkit::status::ReadyStatus;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

const NS: &str = "team-a";

type MockHandle = Handle<Request<Body>, Response<Body>>;

/// One request as the mock apiserver saw it.
struct Seen {
    method: Method,
    path: String,
    query: String,
    body: Value,
    send: SendResponse<Response<Body>>,
}

impl Seen {
    fn reply(self, code: StatusCode, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send.send_response(
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(bytes))
                .expect("response"),
        );
    }

    /// Answers a server-side apply with the applied object plus server-set metadata.
    fn reply_applied(self) {
        let mut obj = self.body.clone();
        obj["metadata"]["uid"] = json!(format!(
            "uid-{}",
            obj["metadata"]["name"].as_str().unwrap_or("x")
        ));
        obj["metadata"]["resourceVersion"] = json!("1");
        obj["metadata"]["creationTimestamp"] = json!(Timestamp::now().to_string());
        self.reply(StatusCode::OK, &obj);
    }

    fn reply_not_found(self) {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "NotFound", "code": 404, "message": "not found"
        });
        self.reply(StatusCode::NOT_FOUND, &status);
    }
}

struct Verifier(MockHandle);

impl Verifier {
    async fn next(&mut self, method: Method, path: &str) -> Seen {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"))
            .unwrap_or_else(|| panic!("client gone before {method} {path}"));
        let seen_method = request.method().clone();
        let seen_path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        assert_eq!(
            (&seen_method, seen_path.as_str()),
            (&method, path),
            "unexpected request; body: {body}"
        );
        Seen {
            method: seen_method,
            path: seen_path,
            query,
            body,
            send,
        }
    }

    /// Expects the fetch step: GET of the credentials Secret (answered with `credentials`, or
    /// NotFound) and the LIST of the session's pods (answered with `pods`).
    async fn fetch(&mut self, name: &str, credentials: Option<Value>, pods: Vec<Value>) {
        let secret = self
            .next(
                Method::GET,
                &format!("/api/v1/namespaces/{NS}/secrets/{name}-credentials"),
            )
            .await;
        match credentials {
            Some(c) => secret.reply(StatusCode::OK, &c),
            None => secret.reply_not_found(),
        }
        let list = self
            .next(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"))
            .await;
        assert!(
            list.query
                .contains(&format!("labelSelector=rsession.dev%2Fsession%3D{name}")),
            "{}",
            list.query
        );
        list.reply(StatusCode::OK, &pod_list(pods));
    }

    /// Expects the live GET of the RSession that precedes replacing a lost pod, answered with
    /// `live` (or NotFound).
    async fn live_rsession(&mut self, name: &str, live: Option<&RSession>) {
        let get = self
            .next(
                Method::GET,
                &format!("/apis/rsession.dev/v1alpha1/namespaces/{NS}/rsessions/{name}"),
            )
            .await;
        match live {
            Some(rs) => get.reply(StatusCode::OK, &serde_json::to_value(rs).expect("json")),
            None => get.reply_not_found(),
        }
    }

    /// Expects a server-side apply (PATCH, apply-patch content, our field manager, force).
    async fn apply(&mut self, path: &str) -> Seen {
        let seen = self.next(Method::PATCH, path).await;
        assert!(
            seen.query.contains("fieldManager=rsession-operator"),
            "{} {}?{}",
            seen.method,
            seen.path,
            seen.query
        );
        assert!(
            seen.query.contains("force=true"),
            "{}?{}",
            seen.path,
            seen.query
        );
        seen
    }

    async fn apply_children(&mut self, name: &str) -> Value {
        let secret = self
            .apply(&format!(
                "/api/v1/namespaces/{NS}/secrets/{name}-credentials"
            ))
            .await;
        let secret_body = secret.body.clone();
        secret.reply_applied();
        self.apply(&format!("/api/v1/namespaces/{NS}/services/{name}"))
            .await
            .reply_applied();
        self.apply(&format!(
            "/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{name}"
        ))
        .await
        .reply_applied();
        secret_body
    }

    async fn event(&mut self, reason: &str) {
        let seen = self
            .next(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
            )
            .await;
        assert_eq!(seen.body["reason"], reason, "{}", seen.body);
        let body = seen.body.clone();
        seen.reply(StatusCode::CREATED, &body);
    }

    async fn status(&mut self, name: &str) -> Value {
        let seen = self
            .apply(&format!(
                "/apis/rsession.dev/v1alpha1/namespaces/{NS}/rsessions/{name}/status"
            ))
            .await;
        let status = seen.body["status"].clone();
        let reply = json!({
            "apiVersion": "rsession.dev/v1alpha1", "kind": "RSession",
            "metadata": {"name": name, "namespace": NS, "uid": "uid-rs"},
            "spec": {}, "status": status,
        });
        seen.reply(StatusCode::OK, &reply);
        status
    }

    async fn done(mut self) {
        let next = tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
            .await
            .expect("the client is dropped after the reconcile");
        if let Some((req, _)) = next {
            panic!("unexpected extra request {} {}", req.method(), req.uri());
        }
    }
}

/// Now, in whole seconds as an apiserver stores `metav1.Time`.
fn now() -> Timestamp {
    rsession_operator::status::whole_seconds(Timestamp::now())
}

fn context() -> (Arc<Context>, Verifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let ctx = Context::new(
        client,
        OperatorConfig::default(),
        Arc::new(Metrics::default()),
        Some("test".into()),
    );
    (Arc::new(ctx), Verifier(handle))
}

fn rsession(name: &str) -> RSession {
    let mut rs = RSession::new(name, RSessionSpec::default());
    rs.metadata.namespace = Some(NS.into());
    rs.metadata.uid = Some("uid-rs".into());
    rs.metadata.generation = Some(1);
    rs.metadata.creation_timestamp = Some(Time(now() - SignedDuration::from_mins(5)));
    rs
}

/// `status.podIP` of the Ready pods in these scenarios; `status.endpoint` is `<POD_IP>:6311`.
const POD_IP: &str = "10.244.0.7";

fn ready_pod(name: &str, created: Timestamp) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
                     "creationTimestamp": created.to_string(),
                     "labels": {"rsession.dev/session": name.rsplit_once('-').map(|x| x.0).unwrap_or(name)}},
        "spec": {"containers": [{"name": "r", "image": "x"}]},
        "status": {"phase": "Running", "podIP": POD_IP, "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}
    })
}

fn pod_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Status of a session whose pod `<name>-1` was Ready, computed by the operator itself in a
/// previous reconcile (so transition times are realistic).
fn ready_status(name: &str, pod_created: Timestamp) -> RSessionStatus {
    let mut status = ReadyStatus::new(format!("{POD_IP}:6311"), format!("{name}-credentials"))
        .observed_generation(Some(1))
        .since(pod_created)
        .build();
    for (type_, value, reason) in [
        (CONDITION_POD_SCHEDULED, "True", "Scheduled"),
        (CONDITION_EXPIRED, "False", "Active"),
    ] {
        status.conditions.push(Condition {
            type_: type_.into(),
            status: value.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Time(pod_created),
            observed_generation: Some(1),
        });
    }
    status.pod_name = Some(format!("{name}-1"));
    status.pod_uid = Some(format!("uid-{name}-1"));
    status.start_time = Some(Time(pod_created));
    status
}

fn credentials(name: &str, password: &str) -> Value {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-credentials"), "namespace": NS},
        "data": {"username": b64("rsession"), "password": b64(password),
                 "rserve.pwd": b64(&format!("rsession {password}\n"))}
    })
}

async fn run(
    rs: RSession,
    ctx: Arc<Context>,
    scenario: impl Future<Output = ()> + Send + 'static,
) -> Result<Action, Error> {
    let verifier = tokio::spawn(scenario);
    let result = reconcile(Arc::new(rs), ctx).await;
    tokio::time::timeout(Duration::from_secs(20), verifier)
        .await
        .expect("scenario finished")
        .expect("scenario passed");
    result
}

const PASSWORD: &str = "Abcdefghijklmnopqrstuvwxyz012345";

/// A session closed right after its creation: the RSession is gone by the time its first
/// reconcile writes status (NotFound from the status subresource). The reconcile ends quietly
/// (no error, so no backoff and no "reconcile failed" warning) and sends nothing more.
#[tokio::test]
async fn an_rsession_deleted_during_its_reconcile_ends_it_without_an_error() {
    let (ctx, mut v) = context();
    let result = run(rsession("s"), ctx, async move {
        v.fetch("s", None, vec![]).await;
        v.apply_children("s").await;
        v.apply(&format!("/api/v1/namespaces/{NS}/pods/s-1"))
            .await
            .reply_applied();
        v.event("PodCreated").await;
        v.apply(&format!(
            "/apis/rsession.dev/v1alpha1/namespaces/{NS}/rsessions/s/status"
        ))
        .await
        .reply_not_found();
        v.done().await;
    })
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn create_applies_every_child_then_the_pod_then_status() {
    let (ctx, mut v) = context();
    let result = run(rsession("s"), ctx, async move {
        v.fetch("s", None, vec![]).await;
        let secret = v.apply_children("s").await;
        assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "uid-rs");
        assert_eq!(secret["metadata"]["ownerReferences"][0]["controller"], true);
        let pod = v.apply(&format!("/api/v1/namespaces/{NS}/pods/s-1")).await;
        assert_eq!(pod.body["spec"]["automountServiceAccountToken"], false);
        assert_eq!(
            pod.body["metadata"]["ownerReferences"][0]["kind"],
            "RSession"
        );
        pod.reply_applied();
        v.event("PodCreated").await;
        let status = v.status("s").await;
        assert_eq!(status["phase"], "Pending");
        assert_eq!(status["podName"], "s-1");
        assert_eq!(status["podUID"], "uid-s-1");
        assert!(
            status.get("endpoint").is_none(),
            "no endpoint before the pod is Ready: {status}"
        );
        assert_eq!(status["credentialsSecret"], "s-credentials");
        assert_eq!(status["observedGeneration"], 1);
        v.done().await;
    })
    .await;
    let action = result.expect("reconcile succeeds");
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn steady_state_reapplies_children_and_writes_no_pod_and_no_status() {
    let (ctx, mut v) = context();
    let pod_created = now() - SignedDuration::from_mins(4);
    let mut rs = rsession("s");
    rs.status = Some(ready_status("s", pod_created));
    run(rs, ctx, async move {
        v.fetch(
            "s",
            Some(credentials("s", PASSWORD)),
            vec![ready_pod("s-1", pod_created)],
        )
        .await;
        let secret = v.apply_children("s").await;
        assert_eq!(
            secret["data"]["password"],
            credentials("s", PASSWORD)["data"]["password"],
            "password is never rotated"
        );
        v.done().await;
    })
    .await
    .expect("reconcile succeeds");
}

#[tokio::test]
async fn update_applies_the_new_network_policy_and_records_the_generation() {
    let (ctx, mut v) = context();
    let pod_created = now() - SignedDuration::from_mins(4);
    let mut rs = rsession("s");
    rs.status = Some(ready_status("s", pod_created));
    rs.metadata.generation = Some(2);
    rs.spec.network = Some(NetworkSpec {
        egress: vec![EgressRule {
            cidr: "10.20.0.0/16".into(),
            ports: vec![443],
        }],
    });
    run(rs, ctx, async move {
        v.fetch(
            "s",
            Some(credentials("s", PASSWORD)),
            vec![ready_pod("s-1", pod_created)],
        )
        .await;
        v.apply(&format!("/api/v1/namespaces/{NS}/secrets/s-credentials"))
            .await
            .reply_applied();
        v.apply(&format!("/api/v1/namespaces/{NS}/services/s"))
            .await
            .reply_applied();
        let np = v
            .apply(&format!(
                "/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/s"
            ))
            .await;
        assert_eq!(
            np.body["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
            "10.20.0.0/16"
        );
        assert_eq!(np.body["spec"]["egress"][0]["ports"][0]["port"], 443);
        np.reply_applied();
        let status = v.status("s").await;
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(status["phase"], "Ready");
        let ready = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Ready")
            .expect("Ready")
            .clone();
        assert_eq!(
            ready["lastTransitionTime"],
            json!(pod_created.to_string()),
            "transition time kept"
        );
        v.done().await;
    })
    .await
    .expect("reconcile succeeds");
}

#[tokio::test]
async fn suspend_deletes_the_pod_and_reports_suspended() {
    let (ctx, mut v) = context();
    let pod_created = now() - SignedDuration::from_mins(4);
    let mut rs = rsession("s");
    rs.status = Some(ready_status("s", pod_created));
    rs.metadata.generation = Some(2);
    rs.spec.lifecycle.suspend = true;
    run(rs, ctx, async move {
        v.fetch(
            "s",
            Some(credentials("s", PASSWORD)),
            vec![ready_pod("s-1", pod_created)],
        )
        .await;
        v.apply_children("s").await;
        let del = v
            .next(Method::DELETE, &format!("/api/v1/namespaces/{NS}/pods/s-1"))
            .await;
        assert_eq!(del.body["propagationPolicy"], "Background");
        del.reply(StatusCode::OK, &ready_pod("s-1", pod_created));
        let status = v.status("s").await;
        assert_eq!(status["phase"], "Suspended");
        assert_eq!(status["podName"], "s-1");
        v.event("Suspended").await;
        v.done().await;
    })
    .await
    .expect("reconcile succeeds");
}

#[tokio::test]
async fn idle_expiry_deletes_the_pod_and_reports_expired() {
    let (ctx, mut v) = context();
    let now = now();
    let pod_created = now - SignedDuration::from_hours(2);
    let mut rs = rsession("s");
    rs.metadata.creation_timestamp = Some(Time(now - SignedDuration::from_hours(3)));
    rs.metadata.annotations = Some(
        [(
            "rsession.dev/last-activity".to_owned(),
            (now - SignedDuration::from_mins(90)).to_string(),
        )]
        .into(),
    );
    rs.status = Some(ready_status("s", pod_created));
    run(rs, ctx, async move {
        v.fetch(
            "s",
            Some(credentials("s", PASSWORD)),
            vec![ready_pod("s-1", pod_created)],
        )
        .await;
        v.apply_children("s").await;
        // The pod is already gone (NotFound is an expected answer, not an error).
        v.next(Method::DELETE, &format!("/api/v1/namespaces/{NS}/pods/s-1"))
            .await
            .reply_not_found();
        let status = v.status("s").await;
        assert_eq!(status["phase"], "Expired");
        let expired = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Expired")
            .expect("Expired")
            .clone();
        assert_eq!(
            (expired["status"].as_str(), expired["reason"].as_str()),
            (Some("True"), Some("IdleTimeout"))
        );
        assert!(status["lastActivityTime"].is_string());
        v.event("Expired").await;
        v.done().await;
    })
    .await
    .expect("reconcile succeeds");
}

#[tokio::test]
async fn pod_deleted_by_hand_is_recreated_with_a_state_reset() {
    let (ctx, mut v) = context();
    let pod_created = now() - SignedDuration::from_mins(4);
    let mut rs = rsession("s");
    rs.status = Some(ready_status("s", pod_created));
    let live = rs.clone();
    run(rs, ctx, async move {
        v.fetch("s", Some(credentials("s", PASSWORD)), vec![]).await;
        v.live_rsession("s", Some(&live)).await;
        v.apply_children("s").await;
        v.apply(&format!("/api/v1/namespaces/{NS}/pods/s-2"))
            .await
            .reply_applied();
        v.event("PodCreated").await;
        let status = v.status("s").await;
        assert_eq!(status["podName"], "s-2");
        assert_eq!(status["stateResets"], 1);
        let reset = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "StateReset")
            .expect("StateReset")
            .clone();
        assert_eq!(
            (reset["status"].as_str(), reset["reason"].as_str()),
            (Some("True"), Some("PodReplaced"))
        );
        assert_eq!(status["phase"], "Pending");
        v.event("StateReset").await;
        v.done().await;
    })
    .await
    .expect("reconcile succeeds");
}

/// The controller cache lags our own status write: a second reconcile that still sees the old
/// status (podName s-1) must neither count the replacement again nor write status again (nor
/// re-apply the unchanged children).
#[tokio::test]
async fn stale_cached_status_does_not_double_count_a_state_reset() {
    let (ctx, mut v) = context();
    let pod_created = now() - SignedDuration::from_mins(4);
    let mut rs = rsession("s");
    rs.status = Some(ready_status("s", pod_created));
    let live = rs.clone();
    let stale = Arc::new(rs);
    let verifier = tokio::spawn(async move {
        v.fetch("s", Some(credentials("s", PASSWORD)), vec![]).await;
        v.live_rsession("s", Some(&live)).await;
        v.apply_children("s").await;
        let create = v.apply(&format!("/api/v1/namespaces/{NS}/pods/s-2")).await;
        let mut pod = create.body.clone();
        pod["metadata"]["uid"] = json!("uid-s-2");
        pod["metadata"]["creationTimestamp"] = json!(now().to_string());
        create.reply(StatusCode::OK, &pod);
        v.event("PodCreated").await;
        assert_eq!(v.status("s").await["stateResets"], 1);
        v.event("StateReset").await;
        // Second reconcile, same stale object: the new pod is listed, nothing else changes,
        // and the children applied a moment ago are not sent again (`applied.rs`).
        v.fetch("s", Some(credentials("s", PASSWORD)), vec![pod])
            .await;
        v.done().await;
    });
    reconcile(stale.clone(), ctx.clone())
        .await
        .expect("first reconcile");
    reconcile(stale, ctx).await.expect("second reconcile");
    tokio::time::timeout(Duration::from_secs(20), verifier)
        .await
        .expect("finished")
        .expect("scenario passed");
}

/// Closing a session deletes the RSession (background propagation): garbage collection removes
/// the pod, and the pod's deletion can reach the operator before the RSession's. The stale
/// cached RSession then looks like a lost pod; a live GET finds it gone and nothing is
/// recreated.
#[tokio::test]
async fn pod_gone_with_its_deleted_rsession_is_not_recreated() {
    let (ctx, mut v) = context();
    let pod_created = now() - SignedDuration::from_mins(4);
    let mut rs = rsession("s");
    rs.status = Some(ready_status("s", pod_created));
    let action = run(rs, ctx, async move {
        v.fetch("s", Some(credentials("s", PASSWORD)), vec![]).await;
        v.live_rsession("s", None).await;
        v.done().await;
    })
    .await
    .expect("reconcile succeeds");
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn deleting_rsession_makes_no_api_calls() {
    let (ctx, v) = context();
    let mut rs = rsession("s");
    rs.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let action = run(rs, ctx, v.done()).await.expect("reconcile succeeds");
    assert_eq!(
        action,
        Action::await_change(),
        "garbage collection removes the children"
    );
}

#[tokio::test]
async fn missing_database_secret_sets_failed_status_and_retries_later() {
    let (ctx, mut v) = context();
    let mut rs = rsession("s");
    rs.spec.database = Some(DatabaseSpec {
        secret_ref: SecretReference {
            name: "omop".into(),
        },
        read_only: true,
    });
    let rs2 = rs.clone();
    let err = run(rs, ctx, async move {
        v.next(
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/secrets/omop"),
        )
        .await
        .reply_not_found();
        let status = v.status("s").await;
        assert_eq!(status["phase"], "Failed");
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("omop")),
            "{status}"
        );
        v.event("Failed").await;
        v.done().await;
    })
    .await
    .expect_err("invalid spec is an error");
    assert_eq!(err.metric_label(), "invalid_spec");
    let (ctx, _idle) = context();
    assert_eq!(
        error_policy(Arc::new(rs2), &err, ctx),
        Action::requeue(Duration::from_secs(30))
    );
}

#[tokio::test]
async fn a_missing_pool_is_pool_not_found_in_status_and_retried_in_30_s() {
    let (ctx, mut v) = context();
    let mut rs = rsession("s");
    rs.spec.pool_ref = Some(rsession_api::PoolReference {
        name: "warm".into(),
    });
    let rs2 = rs.clone();
    let err = run(rs, ctx, async move {
        v.next(
            Method::GET,
            &format!("/apis/rsession.dev/v1alpha1/namespaces/{NS}/rsessionpools/warm"),
        )
        .await
        .reply_not_found();
        let status = v.status("s").await;
        assert_eq!(status["phase"], "Failed");
        let ready = status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["reason"], "PoolNotFound", "{status}");
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("warm")),
            "{status}"
        );
        v.event("Failed").await;
        v.done().await;
    })
    .await
    .expect_err("a missing pool is an error");
    assert_eq!(err.metric_label(), "invalid_spec");
    let (ctx, _idle) = context();
    assert_eq!(
        error_policy(Arc::new(rs2), &err, ctx),
        Action::requeue(Duration::from_secs(30)),
        "the pool may yet be created; pools are not watched per session"
    );
}

#[test]
fn phase_names_match_the_crd() {
    assert_eq!(
        serde_json::to_value(Phase::Expired).expect("json"),
        "Expired"
    );
}

/// Leader election: the exact Lease calls of one election round.
mod leader_election {
    use super::*;
    use rsession_operator::leader::{LeaderElector, LeaseState};

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/rsession-system/leases";

    fn elector() -> (LeaderElector, Verifier) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, NS);
        let e = LeaderElector::new(
            client,
            "rsession-system",
            "rsession-operator",
            "me",
            Duration::from_secs(15),
        );
        (e, Verifier(handle))
    }

    fn lease(holder: &str, renewed: Timestamp, transitions: i32) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "rsession-operator", "namespace": "rsession-system", "resourceVersion": "7"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                     "leaseTransitions": transitions}
        })
    }

    fn conflict() -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "reason": "Conflict", "code": 409, "message": "the object has been modified"})
    }

    async fn round(
        e: LeaderElector,
        scenario: impl Future<Output = ()> + Send + 'static,
    ) -> LeaseState {
        let verifier = tokio::spawn(scenario);
        let state = e.try_acquire_or_renew().await.expect("no API error");
        drop(e);
        verifier.await.expect("scenario passed");
        state
    }

    #[tokio::test]
    async fn missing_lease_is_created_with_us_as_holder() {
        let (e, mut v) = elector();
        let state = round(e, async move {
            v.next(Method::GET, &format!("{LEASES}/rsession-operator"))
                .await
                .reply_not_found();
            let create = v.next(Method::POST, LEASES).await;
            assert_eq!(create.body["spec"]["holderIdentity"], "me");
            assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
            let body = create.body.clone();
            create.reply(StatusCode::CREATED, &body);
            v.done().await;
        })
        .await;
        assert_eq!(state, LeaseState::Leader);
    }

    #[tokio::test]
    async fn live_lease_of_another_replica_is_left_alone() {
        let (e, mut v) = elector();
        let state = round(e, async move {
            v.next(Method::GET, &format!("{LEASES}/rsession-operator"))
                .await
                .reply(StatusCode::OK, &lease("other", Timestamp::now(), 0));
            v.done().await;
        })
        .await;
        assert_eq!(state, LeaseState::Follower);
    }

    #[tokio::test]
    async fn expired_lease_is_taken_over_with_the_read_resource_version() {
        let (e, mut v) = elector();
        let state = round(e, async move {
            let stale = Timestamp::now() - SignedDuration::from_secs(60);
            v.next(Method::GET, &format!("{LEASES}/rsession-operator"))
                .await
                .reply(StatusCode::OK, &lease("other", stale, 2));
            let put = v
                .next(Method::PUT, &format!("{LEASES}/rsession-operator"))
                .await;
            assert_eq!(
                put.body["metadata"]["resourceVersion"], "7",
                "optimistic concurrency"
            );
            assert_eq!(put.body["spec"]["holderIdentity"], "me");
            assert_eq!(put.body["spec"]["leaseTransitions"], 3);
            let body = put.body.clone();
            put.reply(StatusCode::OK, &body);
            v.done().await;
        })
        .await;
        assert_eq!(state, LeaseState::Leader);
    }

    #[tokio::test]
    async fn losing_the_takeover_race_leaves_us_follower() {
        let (e, mut v) = elector();
        let state = round(e, async move {
            let stale = Timestamp::now() - SignedDuration::from_secs(60);
            v.next(Method::GET, &format!("{LEASES}/rsession-operator"))
                .await
                .reply(StatusCode::OK, &lease("other", stale, 2));
            v.next(Method::PUT, &format!("{LEASES}/rsession-operator"))
                .await
                .reply(StatusCode::CONFLICT, &conflict());
            v.done().await;
        })
        .await;
        assert_eq!(state, LeaseState::Follower);
    }

    #[tokio::test]
    async fn holder_renews_without_a_new_transition() {
        let (e, mut v) = elector();
        let state = round(e, async move {
            v.next(Method::GET, &format!("{LEASES}/rsession-operator"))
                .await
                .reply(
                    StatusCode::OK,
                    &lease("me", Timestamp::now() - SignedDuration::from_secs(5), 4),
                );
            let put = v
                .next(Method::PUT, &format!("{LEASES}/rsession-operator"))
                .await;
            assert_eq!(put.body["spec"]["leaseTransitions"], 4);
            assert_eq!(put.body["spec"]["holderIdentity"], "me");
            let body = put.body.clone();
            put.reply(StatusCode::OK, &body);
            v.done().await;
        })
        .await;
        assert_eq!(state, LeaseState::Leader);
    }

    #[tokio::test]
    async fn release_clears_the_holder() {
        let (e, mut v) = elector();
        let verifier = tokio::spawn(async move {
            v.next(Method::GET, &format!("{LEASES}/rsession-operator"))
                .await
                .reply(StatusCode::OK, &lease("me", Timestamp::now(), 4));
            let put = v
                .next(Method::PUT, &format!("{LEASES}/rsession-operator"))
                .await;
            assert!(put.body["spec"]["holderIdentity"].is_null(), "{}", put.body);
            let body = put.body.clone();
            put.reply(StatusCode::OK, &body);
            v.done().await;
        });
        e.release().await.expect("released");
        drop(e);
        verifier.await.expect("scenario passed");
    }
}
