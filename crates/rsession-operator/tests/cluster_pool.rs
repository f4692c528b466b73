//! Warm pools against a real kube-apiserver, etcd and kube-controller-manager (rsession-testenv),
//! the operator in-process. There is no kubelet, so a test marks pool pods Ready itself through
//! the pods' status subresource (what the kubelet would write); everything else — the pool
//! controller, claims with their resourceVersion precondition, owner references and garbage
//! collection — is the real thing.
//!
//! Needs the binaries from `e2e/local/build-binaries.sh` (see `RSESSION_K8S_BIN`).

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{Operator, config_for, control_plane};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use rsession_api::status::CONDITION_CLAIMED;
use rsession_api::well_known as wk;
use rsession_api::{RSession, RSessionPool};
use rsession_testenv::PodSecurity;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` every 100 ms until it returns `Some`, failing with `what` after [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn apply(client: &Client, ns: &str, yaml: &str) {
    rsession_testenv::apply_yaml(client, yaml, Some(ns))
        .await
        .expect("apply");
}

/// A pool of `replicas` whose pods may all start at once: with no kubelet here, pods turn Ready
/// only when a test says so, so `spec.maxStarting` would hold the rest back.
fn pool_yaml(name: &str, replicas: i32) -> String {
    format!(
        "apiVersion: rsession.dev/v1alpha1\nkind: RSessionPool\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  maxStarting: 200\n"
    )
}

fn pooled_session_yaml(name: &str, pool: &str) -> String {
    format!(
        "apiVersion: rsession.dev/v1alpha1\nkind: RSession\nmetadata:\n  name: {name}\nspec:\n  poolRef:\n    name: {pool}\n"
    )
}

async fn pool_pods(client: &Client, ns: &str, pool: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{}={pool}", wk::LABEL_POOL)))
        .await
        .expect("list pool pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn unclaimed(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| !p.labels().contains_key(wk::LABEL_SESSION))
        .collect()
}

/// Writes what the kubelet would once Rserve passes its readiness probe.
async fn mark_ready(client: &Client, ns: &str, pod: &str, ip: &str) {
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"},
        ],
    }});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("mark pod Ready");
}

/// Waits for `n` unclaimed pool pods with their credentials Secret and the pool's harness
/// ConfigMap (which they mount: a kubelet starts the container only once it exists) and marks
/// them Ready (IPs 10.99.0.<first>..).
async fn fill_ready(client: &Client, ns: &str, pool: &str, n: usize, first: u8) -> Vec<String> {
    let names = eventually(&format!("{n} unclaimed pods of {pool}"), || async {
        let pods = pool_pods(client, ns, pool).await;
        let names: Vec<String> = unclaimed(&pods).iter().map(|p| p.name_any()).collect();
        (names.len() == n).then_some(names)
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for (i, name) in names.iter().enumerate() {
        eventually(
            "the pool pod's credentials Secret and the pool's harness ConfigMap",
            || async {
                let secret = secrets.get_opt(&format!("{name}-credentials")).await;
                let config_map = config_maps.get_opt(&format!("{pool}.rsessionpool")).await;
                (secret.expect("get").is_some() && config_map.expect("get").is_some()).then_some(())
            },
        )
        .await;
        let ip = format!("10.99.0.{}", usize::from(first) + i);
        mark_ready(client, ns, name, &ip).await;
    }
    names
}

async fn claimed_status(client: &Client, ns: &str, name: &str) -> RSession {
    let api: Api<RSession> = Api::namespaced(client.clone(), ns);
    eventually(&format!("status.claim of {name}"), || async {
        let rs = api.get(name).await.expect("get RSession");
        rs.status.as_ref()?.claim.as_ref()?;
        Some(rs)
    })
    .await
}

/// A pool of `n` Ready pods made by the operator, which is then stopped, so that only what the
/// test does next acts on them. Returns the pods' names.
async fn ready_pool_then_stop(
    client: &Client,
    ns: &str,
    pool: &str,
    n: usize,
    first_ip: u8,
) -> Vec<String> {
    let operator = Operator::start(client.clone(), config_for(Some(ns)));
    apply(client, ns, &pool_yaml(pool, i32::try_from(n).expect("n"))).await;
    let pods = fill_ready(client, ns, pool, n, first_ip).await;
    operator.stop().await;
    pods
}

/// Creates RSession `name` bound to `pool` (suspended: no reconcile starts a pod for it).
async fn create_pooled(
    client: &Client,
    ns: &str,
    name: &str,
    pool: &str,
    suspend: bool,
) -> RSession {
    let rs: RSession = serde_json::from_value(json!({
        "apiVersion": "rsession.dev/v1alpha1", "kind": "RSession",
        "metadata": {"name": name},
        "spec": {"poolRef": {"name": pool}, "lifecycle": {"suspend": suspend}},
    }))
    .expect("rsession");
    Api::<RSession>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .expect("create")
}

/// The template hash of `pool` as the operator computes it (what a claim selects on).
async fn pool_hash(client: &Client, ns: &str, pool: &str) -> String {
    let pool = Api::<RSessionPool>::namespaced(client.clone(), ns)
        .get(pool)
        .await
        .expect("pool");
    let config = config_for(Some(ns));
    let template = rsession_operator::pool::build::template_session(
        &pool,
        rsession_operator::pool::build::TEMPLATE_NAME,
        &config,
        None,
    )
    .expect("template");
    rsession_operator::pool::build::template_hash(&template, &config)
}

fn password_of(secret: &Secret) -> Vec<u8> {
    secret.data.as_ref().expect("data")[wk::SECRET_KEY_PASSWORD]
        .0
        .clone()
}

#[tokio::test]
async fn a_pool_fills_claims_bind_warm_then_cold_and_the_pool_refills() {
    let cp = control_plane().await;
    cp.with_temp_ns("pool", PodSecurity::Restricted, |client, ns| async move {
        let operator = Operator::start(client.clone(), config_for(Some(&ns)));
        apply(&client, &ns, &pool_yaml("web", 1)).await;

        let warm_pod = fill_ready(&client, &ns, "web", 1, 1).await.remove(0);
        // The NetworkPolicy exists (it is applied before the first pool pod) and covers every pool pod.
        let np = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
            .get("web.rsessionpool")
            .await
            .expect("pool NetworkPolicy");
        let selector = np
            .spec
            .as_ref()
            .and_then(|s| s.pod_selector.as_ref())
            .and_then(|s| s.match_labels.clone());
        assert_eq!(
            selector
                .and_then(|l| l.get(wk::LABEL_POOL).cloned())
                .as_deref(),
            Some("web")
        );

        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pool_pod = pods.get(&warm_pod).await.expect("pool pod");
        let owner = &pool_pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("RSessionPool", "web")
        );
        let secret_owners = Api::<Secret>::namespaced(client.clone(), &ns)
            .get(&format!("{warm_pod}-credentials"))
            .await
            .expect("secret")
            .metadata
            .owner_references
            .unwrap_or_default();
        assert_eq!(secret_owners.len(), 1);
        assert_eq!(
            (
                secret_owners[0].kind.as_str(),
                secret_owners[0].name.as_str()
            ),
            ("Pod", warm_pod.as_str())
        );
        // The pool's harness ConfigMap stays the pool's; the claimed pod keeps what it preloaded.
        let harness_owners = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get("web.rsessionpool")
            .await
            .expect("harness ConfigMap")
            .metadata
            .owner_references
            .unwrap_or_default();
        assert_eq!(
            (
                harness_owners[0].kind.as_str(),
                harness_owners[0].name.as_str()
            ),
            ("RSessionPool", "web")
        );
        let pool_status = eventually("pool status Ready 1", || async {
            let p = Api::<RSessionPool>::namespaced(client.clone(), &ns)
                .get("web")
                .await
                .expect("pool");
            p.status.filter(|s| s.ready_replicas == 1)
        })
        .await;
        assert_eq!(
            pool_status.selector.as_deref(),
            Some("rsession.dev/pool=web,!rsession.dev/session")
        );

        // Warm: bound to the Ready pool pod in the first reconcile.
        apply(&client, &ns, &pooled_session_yaml("alice", "web")).await;
        let alice = claimed_status(&client, &ns, "alice").await;
        let st = alice.status.as_ref().expect("status");
        let claim = st.claim.as_ref().expect("claim");
        assert!(claim.warm, "{claim:?}");
        assert_eq!(claim.pod_name.as_deref(), Some(warm_pod.as_str()));
        assert_eq!(st.pod_name.as_deref(), Some(warm_pod.as_str()));
        let cond = st.condition(CONDITION_CLAIMED).expect("Claimed condition");
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("True", "ClaimedWarm")
        );
        let claimed = pods.get(&warm_pod).await.expect("claimed pod");
        assert_eq!(
            claimed.labels().get(wk::LABEL_SESSION).map(String::as_str),
            Some("alice")
        );
        assert_eq!(
            claimed.labels().get(wk::LABEL_POOL).map(String::as_str),
            Some("web")
        );
        let owners = claimed.owner_references();
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].name.as_str()),
            ("RSession", "alice")
        );
        // The session's own Secret holds the password the claimed Rserve already has.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let ours = eventually("alice-credentials", || async {
            secrets.get_opt("alice-credentials").await.expect("get")
        })
        .await;
        let theirs = secrets
            .get(&format!("{warm_pod}-credentials"))
            .await
            .expect("pod secret");
        assert_eq!(password_of(&ours), password_of(&theirs));
        // Its Service and NetworkPolicy follow too (`claim::WARM_CHILDREN_DELAY` after the claim).
        eventually("alice's Service and NetworkPolicy", || async {
            let service =
                Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), &ns)
                    .get_opt("alice")
                    .await
                    .expect("get");
            let policy = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
                .get_opt("alice")
                .await
                .expect("get");
            (service.is_some() && policy.is_some()).then_some(())
        })
        .await;
        let alice = eventually("alice Ready", || async {
            let rs = Api::<RSession>::namespaced(client.clone(), &ns)
                .get("alice")
                .await
                .expect("get");
            rs.is_ready().then_some(rs)
        })
        .await;
        assert_eq!(
            alice.status.as_ref().and_then(|s| s.endpoint.as_deref()),
            Some("10.99.0.1:6311")
        );

        // The pool replaces the claimed pod; its replacement is not Ready (no kubelet), so the
        // next session starts cold and says so.
        eventually("a replacement pool pod", || async {
            let pods = pool_pods(&client, &ns, "web").await;
            (unclaimed(&pods).len() == 1).then_some(())
        })
        .await;
        apply(&client, &ns, &pooled_session_yaml("bob", "web")).await;
        let bob = claimed_status(&client, &ns, "bob").await;
        let st = bob.status.as_ref().expect("status");
        assert!(!st.claim.as_ref().expect("claim").warm);
        let cond = st.condition(CONDITION_CLAIMED).expect("Claimed condition");
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_str()),
            ("False", "PoolEmpty")
        );
        assert_eq!(st.pod_name.as_deref(), Some("bob-1"));
        let bob_pod = eventually("bob-1", || async {
            pods.get_opt("bob-1").await.expect("get")
        })
        .await;
        assert!(
            !bob_pod.labels().contains_key(wk::LABEL_POOL),
            "a cold pod is the session's own"
        );

        let pool = eventually("pool counts one claimed pod", || async {
            let p = Api::<RSessionPool>::namespaced(client.clone(), &ns)
                .get("web")
                .await
                .expect("pool");
            p.status
                .filter(|s| s.claimed_replicas == 1 && s.replicas == 1)
        })
        .await;
        assert_eq!(pool.ready_replicas, 0);

        // Deleting the RSession garbage-collects the claimed pod, and with it the pod's Secret.
        Api::<RSession>::namespaced(client.clone(), &ns)
            .delete("alice", &DeleteParams::default())
            .await
            .expect("delete alice");
        eventually("claimed pod and its Secret collected", || async {
            let pod = pods.get_opt(&warm_pod).await.expect("get");
            let secret = secrets
                .get_opt(&format!("{warm_pod}-credentials"))
                .await
                .expect("get");
            (pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some()) && secret.is_none())
                .then_some(())
        })
        .await;
        assert!(
            operator.error_lines().is_empty(),
            "{:?}",
            operator.error_lines()
        );
        operator.stop().await;
    })
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn scale_and_template_changes_touch_unclaimed_pods_only() {
    let cp = control_plane().await;
    cp.with_temp_ns("poolscale", PodSecurity::Restricted, |client, ns| async move {
        let operator = Operator::start(client.clone(), config_for(Some(&ns)));
        apply(&client, &ns, &pool_yaml("ds", 3)).await;
        fill_ready(&client, &ns, "ds", 3, 10).await;
        apply(&client, &ns, &pooled_session_yaml("carol", "ds")).await;
        let carol = claimed_status(&client, &ns, "carol").await;
        let carol_pod = carol.status.and_then(|s| s.pod_name).expect("pod");

        // The scale subresource (kubectl scale, an HPA) sets spec.replicas.
        let pools: Api<RSessionPool> = Api::namespaced(client.clone(), &ns);
        let scale = pools.get_scale("ds").await.expect("get scale");
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
        pools
            .patch_scale("ds", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}})))
            .await
            .expect("patch scale");
        eventually("one unclaimed pod left", || async {
            let pods = pool_pods(&client, &ns, "ds").await;
            (unclaimed(&pods).len() == 1).then_some(())
        })
        .await;

        // A new template replaces the unclaimed pod; carol's pod stays as it was.
        let before = Api::<Pod>::namespaced(client.clone(), &ns).get(&carol_pod).await.expect("carol pod");
        apply(&client, &ns, "apiVersion: rsession.dev/v1alpha1\nkind: RSessionPool\nmetadata:\n  name: ds\nspec:\n  replicas: 1\n  template:\n    image: example.invalid/r:2\n").await;
        eventually("the unclaimed pod rebuilt from the new template", || async {
            let pods = pool_pods(&client, &ns, "ds").await;
            let fresh = unclaimed(&pods);
            (fresh.len() == 1
                && fresh[0].spec.as_ref().is_some_and(|s| s.containers[0].image.as_deref() == Some("example.invalid/r:2")))
            .then_some(())
        })
        .await;
        let after = Api::<Pod>::namespaced(client.clone(), &ns).get(&carol_pod).await.expect("carol pod");
        assert_eq!(before.metadata.uid, after.metadata.uid);
        assert_ne!(
            after.spec.as_ref().and_then(|s| s.containers[0].image.as_deref()),
            Some("example.invalid/r:2"),
            "a claimed pod is never rebuilt"
        );
        operator.stop().await;
    })
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn concurrent_claims_bind_each_pool_pod_at_most_once() {
    let cp = control_plane().await;
    cp.with_temp_ns(
        "poolrace",
        PodSecurity::Restricted,
        |client, ns| async move {
            // The pool controller makes the pods; then it is stopped, so only the claims act.
            ready_pool_then_stop(&client, &ns, "race", 4, 20).await;
            // Eight claimants against four Ready pods, all at once, as eight operator replicas
            // would (each with its own reservations: only the patch's precondition decides).
            let mut claimants = Vec::new();
            for i in 0..8 {
                claimants.push(create_pooled(&client, &ns, &format!("c{i}"), "race", true).await);
            }
            let hash = pool_hash(&client, &ns, "race").await;
            let results = futures::future::join_all(claimants.iter().map(|rs| {
                let client = client.clone();
                let ns = ns.clone();
                let hash = hash.clone();
                async move {
                    let own = rsession_operator::pool::reserved::Reserved::default();
                    rsession_operator::claim::claim(&client, &own, &ns, rs, "race", &hash)
                        .await
                        .expect("claim")
                        .map(|pod| pod.name_any())
                }
            }))
            .await;
            let mut won: Vec<String> = results.iter().flatten().cloned().collect();
            won.sort();
            let before = won.len();
            won.dedup();
            assert_eq!(before, won.len(), "a pod was claimed twice: {results:?}");
            assert_eq!(won.len(), 4, "every Ready pod claimed once: {results:?}");
            // Each pod names exactly the one claimant that won it.
            for pod in pool_pods(&client, &ns, "race").await {
                let session = pod
                    .labels()
                    .get(wk::LABEL_SESSION)
                    .cloned()
                    .expect("claimed");
                let i = results
                    .iter()
                    .position(|r| r.as_deref() == Some(pod.name_any().as_str()))
                    .expect("winner");
                assert_eq!(session, format!("c{i}"));
                assert_eq!(pod.owner_references()[0].name, session);
            }
        },
    )
    .await
    .expect("temp namespace");
}

/// Pod PATCHes in `ns` the API server refused with 409 Conflict, from its audit log.
fn refused_pod_patches(cp: &rsession_testenv::ControlPlane, ns: &str) -> usize {
    cp.audit_events()
        .expect("audit log")
        .iter()
        .filter(|e| {
            e["stage"] == "ResponseComplete"
                && e["verb"] == "patch"
                && e["objectRef"]["resource"] == "pods"
                && e["objectRef"]["namespace"] == ns
                && e["responseStatus"]["code"] == 409
        })
        .count()
}

#[tokio::test]
async fn concurrent_claims_of_one_replica_pick_different_pods() {
    let cp = control_plane().await;
    cp.with_temp_ns(
        "poolspread",
        PodSecurity::Restricted,
        |client, ns| async move {
            ready_pool_then_stop(&client, &ns, "spread", 4, 60).await;
            let mut claimants = Vec::new();
            for i in 0..4 {
                claimants.push(create_pooled(&client, &ns, &format!("s{i}"), "spread", true).await);
            }
            // What the cache gives every claimant of one replica: the same four candidates.
            let candidates = pool_pods(&client, &ns, "spread").await;
            let reserved = rsession_operator::pool::reserved::Reserved::default();
            let results = futures::future::join_all(claimants.iter().map(|rs| {
                rsession_operator::claim::claim_among(
                    &client,
                    &reserved,
                    &ns,
                    rs,
                    candidates.clone(),
                )
            }))
            .await;
            let mut won: Vec<String> = results
                .into_iter()
                .map(|r| r.expect("claim").expect("a pod").name_any())
                .collect();
            won.sort();
            won.dedup();
            assert_eq!(won.len(), 4, "each claimant its own pod: {won:?}");
            // Without the reservations, four random picks from the same four pods collide
            // (and pay a refused PATCH) nine times in ten.
            assert_eq!(refused_pod_patches(cp, &ns), 0, "refused claim patches");
        },
    )
    .await
    .expect("temp namespace");
}

#[tokio::test]
async fn a_claim_cut_short_before_status_is_adopted_with_the_pods_password() {
    let cp = control_plane().await;
    cp.with_temp_ns(
        "poolcut",
        PodSecurity::Restricted,
        |client, ns| async move {
            let pod = ready_pool_then_stop(&client, &ns, "cut", 1, 40)
                .await
                .remove(0);
            // What an operator that crashed right after its claim patch leaves: the pod bound to
            // the RSession, no status, no session Secret.
            let rs = create_pooled(&client, &ns, "dave", "cut", false).await;
            let hash = pool_hash(&client, &ns, "cut").await;
            let own = rsession_operator::pool::reserved::Reserved::default();
            let claimed = rsession_operator::claim::claim(&client, &own, &ns, &rs, "cut", &hash)
                .await
                .expect("claim")
                .expect("a Ready pod");
            assert_eq!(claimed.name_any(), pod);

            // The next operator adopts the pod (no second claim, no cold pod) and gives the session
            // the password the pod's Rserve runs with.
            let operator = Operator::start(client.clone(), config_for(Some(&ns)));
            let dave = claimed_status(&client, &ns, "dave").await;
            let st = dave.status.as_ref().expect("status");
            assert_eq!(st.pod_name.as_deref(), Some(pod.as_str()));
            let claim = st.claim.as_ref().expect("claim");
            assert!(
                claim.warm && claim.pod_name.as_deref() == Some(pod.as_str()),
                "{claim:?}"
            );
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
            let ours = eventually("dave-credentials", || async {
                secrets.get_opt("dave-credentials").await.expect("get")
            })
            .await;
            let theirs = secrets
                .get(&format!("{pod}-credentials"))
                .await
                .expect("pod secret");
            assert_eq!(password_of(&ours), password_of(&theirs));
            let pods = Api::<Pod>::namespaced(client.clone(), &ns);
            assert!(
                pods.get_opt("dave-1").await.expect("get").is_none(),
                "no cold pod"
            );
            operator.stop().await;
        },
    )
    .await
    .expect("temp namespace");
}
