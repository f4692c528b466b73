//! Pure builders of an RSessionPool's children: its NetworkPolicy and R harness ConfigMap, and per
//! pool pod the pod and its credentials Secret. Pool pods are built by the same builders as session
//! pods ([`crate::build`]) from a session-shaped view of the template ([`template_session`]),
//! then relabelled: they carry the pool's labels instead of a session's until claimed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use rand::Rng;
use rsession_api::well_known as wk;
use rsession_api::{LifecycleSpec, RSession, RSessionPool};
use sha2::{Digest, Sha256};

use crate::build::Component;
use crate::build::network_policy::build_network_policy;
use crate::build::pod::{PodStart, build_pod};
use crate::build::secret::{build_secret, pwdfile_entry};
use crate::build::startup::HARNESS_KEY;
use crate::config::OperatorConfig;
use crate::validate::{Session, SpecError, validate};

/// Name a pool's template is validated and hashed under (for its NetworkPolicy, the template hash
/// and a claim's candidate selection): hashing a pod built under one fixed name makes the hash
/// depend on the template, the operator configuration and the harness only.
pub const TEMPLATE_NAME: &str = "pool-template";

/// Characters of the random suffix of pool pod names. At least one letter is forced, so a pool pod
/// name never looks like a session pod's `<session>-<digits>`.
const SUFFIX_LEN: usize = 5;

/// Name of the pool's NetworkPolicy. The dot keeps it apart from every session NetworkPolicy,
/// which is named after an RSession (a DNS-1035 label, no dots).
pub fn network_policy_name(pool: &str) -> String {
    format!("{pool}.rsessionpool")
}

/// Name of the pool's R harness ConfigMap: the pool's NetworkPolicy's ([`network_policy_name`]),
/// another kind.
pub fn harness_config_map_name(pool: &str) -> String {
    network_policy_name(pool)
}

/// A fresh pool pod name: `<pool>-<5 random lower-case letters and digits, one letter at least>`.
pub fn pod_name(pool: &str) -> String {
    let mut rng = rand::rng();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut suffix: Vec<u8> = (0..SUFFIX_LEN)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect();
    if suffix.iter().all(u8::is_ascii_digit) {
        suffix[0] = alphabet[rng.random_range(0..26)];
    }
    format!("{pool}-{}", String::from_utf8_lossy(&suffix))
}

/// Labels of a pool's pods, their Secrets and the pool's harness ConfigMap.
pub fn pool_labels(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (wk::LABEL_APP_NAME.to_owned(), wk::APP_NAME.to_owned()),
        (wk::LABEL_APP_INSTANCE.to_owned(), pool.to_owned()),
        (wk::LABEL_MANAGED_BY.to_owned(), wk::MANAGER.to_owned()),
        (wk::LABEL_PART_OF.to_owned(), wk::APP_NAME.to_owned()),
        (wk::LABEL_POOL.to_owned(), pool.to_owned()),
    ])
}

/// Label selector of a pool's unclaimed pods (`status.selector`, the scale subresource's).
pub fn unclaimed_selector(pool: &str) -> String {
    format!("{}={pool},!{}", wk::LABEL_POOL, wk::LABEL_SESSION)
}

/// A controller owner reference to `pool` (the pool's NetworkPolicy and unclaimed pods).
pub fn pool_owner_reference(pool: &RSessionPool) -> OwnerReference {
    OwnerReference {
        api_version: RSessionPool::api_version(&()).into_owned(),
        kind: RSessionPool::kind(&()).into_owned(),
        name: pool.metadata.name.clone().unwrap_or_default(),
        uid: pool.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// An owner reference to pod `pod` (name, uid): a pool pod's Secret is garbage-collected with
/// it, whoever owns the pod by then.
pub fn pod_owner_reference(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The template of `pool` validated as a session named `name` (a pool pod's name, or
/// [`TEMPLATE_NAME`]), owned by the pool. `database_secret` is the Secret the template's database
/// names, if any.
///
/// # Errors
/// [`SpecError`] as for an RSession with the same spec (missing metadata, a missing or invalid
/// database Secret).
pub fn template_session(
    pool: &RSessionPool,
    name: &str,
    config: &OperatorConfig,
    database_secret: Option<&Secret>,
) -> Result<Session, SpecError> {
    let view = RSession {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: pool.metadata.namespace.clone(),
            uid: pool.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        spec: pool.spec.template.to_spec(LifecycleSpec::default()),
        status: None,
    };
    let mut session = validate(&view, config, database_secret)?;
    session.owner_reference = pool_owner_reference(pool);
    Ok(session)
}

/// How a pool pod of the pool owning `session` (a [`template_session`]) starts: the operator's
/// `preloadPackages` (whatever `preloadColdSessions` says) and the pool's R harness, with Rserve's
/// password file line `pwdfile_entry`.
fn pool_pod_start<'a>(
    session: &Session,
    config: &'a OperatorConfig,
    pwdfile_entry: String,
) -> PodStart<'a> {
    PodStart {
        preload_packages: &config.preload_packages,
        harness_config_map: Some(harness_config_map_name(&session.owner_reference.name)),
        pwdfile_entry,
    }
}

/// Hash (first 10 hex digits of SHA-256) of the pod spec `session` (from [`template_session`])
/// produces under the operator's `config`, and of the R harness the pod preloads: equal hashes
/// mean interchangeable pool pods. The password file line is in the pod's metadata, not hashed.
pub fn template_hash(session: &Session, config: &OperatorConfig) -> String {
    let mut s = session.clone();
    s.name = TEMPLATE_NAME.into();
    let pod = build_pod(
        &s,
        config,
        TEMPLATE_NAME,
        &pool_pod_start(session, config, String::new()),
    );
    let spec = serde_json::to_vec(&pod.spec).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(&spec);
    hasher.update(rsession_harness::digest().as_bytes());
    hex::encode(hasher.finalize())[..10].to_owned()
}

fn relabel(meta: &mut ObjectMeta, pool: &str, extra: &[(&str, &str)]) {
    let mut labels = pool_labels(pool);
    if let Some(component) = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(wk::LABEL_APP_COMPONENT))
    {
        labels.insert(wk::LABEL_APP_COMPONENT.to_owned(), component.clone());
    }
    for (k, v) in extra {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    meta.labels = Some(labels);
}

/// The pool pod `session.name` (a [`pod_name`]): the session pod the template describes, with
/// the pool's labels and the template hash instead of a session's label, its Rserve logging in
/// with `password`.
pub fn build_pool_pod(
    session: &Session,
    config: &OperatorConfig,
    pool: &str,
    hash: &str,
    password: &str,
) -> Pod {
    let start = pool_pod_start(session, config, pwdfile_entry(password));
    let mut pod = build_pod(session, config, &session.name, &start);
    relabel(&mut pod.metadata, pool, &[(wk::LABEL_POOL_TEMPLATE, hash)]);
    pod
}

/// The credentials Secret of pool pod `session.name` (holding `password`), owned by that pod
/// (`owner`, see [`pod_owner_reference`]) so it goes with it.
pub fn build_pod_secret(
    session: &Session,
    pool: &str,
    password: &str,
    owner: OwnerReference,
) -> Secret {
    let mut secret = build_secret(session, password);
    relabel(&mut secret.metadata, pool, &[]);
    secret.metadata.owner_references = Some(vec![owner]);
    secret
}

/// The pool's R harness ConfigMap ([`harness_config_map_name`], key [`HARNESS_KEY`]: the MCP
/// frontend's [`rsession_harness::HARNESS_R`]), owned by the pool: every pool pod mounts it, and
/// its Rserve parent sources it before it listens. It is applied before any pool pod exists.
pub fn build_harness_config_map(pool: &RSessionPool) -> ConfigMap {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let mut labels = pool_labels(&name);
    labels.insert(
        wk::LABEL_APP_COMPONENT.to_owned(),
        Component::Harness.as_str().to_owned(),
    );
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(harness_config_map_name(&name)),
            namespace: pool.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![pool_owner_reference(pool)]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            HARNESS_KEY.to_owned(),
            rsession_harness::HARNESS_R.to_owned(),
        )])),
        ..ConfigMap::default()
    }
}

/// The pool's NetworkPolicy: the session NetworkPolicy of the template (ingress from the MCP
/// frontend only, egress denied but for the database and the allow-list), selecting every pod of
/// the pool, claimed or not. It is applied before the pool's first pod is created.
pub fn build_pool_network_policy(
    session: &Session,
    config: &OperatorConfig,
    pool: &str,
    database_addresses: &[std::net::IpAddr],
) -> NetworkPolicy {
    let mut np = build_network_policy(session, config, database_addresses);
    np.metadata.name = Some(network_policy_name(pool));
    relabel(&mut np.metadata, pool, &[]);
    if let Some(spec) = np.spec.as_mut() {
        spec.pod_selector = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    wk::LABEL_POOL.to_owned(),
                    pool.to_owned(),
                )])),
                match_expressions: None,
            },
        );
    }
    np
}

#[cfg(test)]
pub(crate) mod tests {
    use rsession_api::{EgressRule, NetworkSpec, RSessionPoolSpec};

    use super::*;

    pub(crate) fn pool(name: &str) -> RSessionPool {
        let mut p = RSessionPool::new(
            name,
            RSessionPoolSpec {
                replicas: 2,
                ..RSessionPoolSpec::default()
            },
        );
        p.metadata.namespace = Some("ns".into());
        p.metadata.uid = Some("pool-uid".into());
        p
    }

    fn session(p: &RSessionPool, name: &str) -> Session {
        template_session(p, name, &OperatorConfig::default(), None).expect("valid template")
    }

    #[test]
    fn pool_pod_names_never_look_like_session_pod_names() {
        for _ in 0..200 {
            let n = pod_name("web");
            let suffix = n.strip_prefix("web-").expect("prefix");
            assert_eq!(suffix.len(), SUFFIX_LEN);
            assert!(suffix.bytes().any(|b| b.is_ascii_lowercase()), "{n}");
            assert!(
                suffix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
        }
    }

    #[test]
    fn pool_pod_is_owned_by_the_pool_and_carries_pool_labels_not_a_session_label() {
        let p = pool("web");
        let s = session(&p, "web-ab1cd");
        let pod = build_pool_pod(&s, &OperatorConfig::default(), "web", "h", "pw");
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.get(wk::LABEL_POOL).map(String::as_str), Some("web"));
        assert_eq!(
            labels.get(wk::LABEL_POOL_TEMPLATE).map(String::as_str),
            Some("h")
        );
        assert_eq!(
            labels.get(wk::LABEL_APP_COMPONENT).map(String::as_str),
            Some("session")
        );
        assert!(!labels.contains_key(wk::LABEL_SESSION));
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("RSessionPool", "pool-uid")
        );
        assert_eq!(pod.metadata.name.as_deref(), Some("web-ab1cd"));
    }

    #[test]
    fn pod_secret_is_owned_by_the_pod_and_named_after_it() {
        let p = pool("web");
        let s = session(&p, "web-ab1cd");
        let secret = build_pod_secret(&s, "web", "pw", pod_owner_reference("web-ab1cd", "pod-uid"));
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("web-ab1cd-credentials")
        );
        let owner = &secret.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Pod", "pod-uid")
        );
        let labels = secret.metadata.labels.as_ref().expect("labels");
        assert!(!labels.contains_key(wk::LABEL_SESSION));
    }

    #[test]
    fn pool_pods_preload_the_packages_and_the_pools_harness_and_log_in_with_their_password() {
        let p = pool("web");
        let s = session(&p, "web-ab1cd");
        let pod = build_pool_pod(&s, &OperatorConfig::default(), "web", "h", "pw");
        let spec = pod.spec.as_ref().expect("spec");
        // whatever `preloadColdSessions` says
        let command = spec.containers[0]
            .command
            .clone()
            .expect("command")
            .join(" ");
        assert!(command.contains("\"dplyr\""), "{command}");
        assert!(
            command.contains(&rsession_harness::preload_r(
                "/etc/rserve/harness/harness.R",
                rsession_harness::Preload::Compiled
            )),
            "{command}"
        );
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find_map(|v| v.config_map.as_ref())
            .expect("harness ConfigMap volume");
        assert_eq!(volume.name, "web.rsessionpool");
        assert_eq!(
            pod.metadata.annotations.as_ref().expect("annotations")[wk::ANNOTATION_RSERVE_PWDFILE],
            pwdfile_entry("pw")
        );
    }

    #[test]
    fn harness_config_map_is_owned_by_the_pool_and_holds_the_harness() {
        let cm = build_harness_config_map(&pool("web"));
        assert_eq!(cm.metadata.name.as_deref(), Some("web.rsessionpool"));
        assert_eq!(
            cm.data.as_ref().expect("data")[HARNESS_KEY],
            rsession_harness::HARNESS_R
        );
        let owner = &cm.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("RSessionPool", "pool-uid")
        );
    }

    #[test]
    fn template_hash_ignores_pod_names_and_follows_the_template() {
        let mut p = pool("web");
        let config = OperatorConfig::default();
        let a = template_hash(&session(&p, "web-aaaaa"), &config);
        let b = template_hash(&session(&p, "web-bbbbb"), &config);
        assert_eq!(a, b);
        // the passwords of two pool pods differ, their pods' specs do not
        let spec = |pw| build_pool_pod(&session(&p, "web-aaaaa"), &config, "web", &a, pw).spec;
        assert_eq!(spec("pw1"), spec("pw2"));
        p.spec.template.image = Some("other:1".into());
        assert_ne!(a, template_hash(&session(&p, "web-aaaaa"), &config));
    }

    #[test]
    fn pool_network_policy_selects_every_pool_pod_and_keeps_egress_denied() {
        let mut p = pool("web");
        p.spec.template.network = Some(NetworkSpec {
            egress: vec![EgressRule {
                cidr: "10.1.2.3/32".into(),
                ports: vec![443],
            }],
        });
        let s = session(&p, TEMPLATE_NAME);
        let np = build_pool_network_policy(&s, &OperatorConfig::default(), "web", &[]);
        assert_eq!(np.metadata.name.as_deref(), Some("web.rsessionpool"));
        let spec = np.spec.expect("spec");
        assert_eq!(
            spec.pod_selector.and_then(|s| s.match_labels),
            Some(BTreeMap::from([(
                wk::LABEL_POOL.to_owned(),
                "web".to_owned()
            )]))
        );
        let types = spec.policy_types.unwrap_or_default();
        assert!(types.contains(&"Egress".to_owned()) && types.contains(&"Ingress".to_owned()));
        let egress = serde_json::to_string(&spec.egress).expect("json");
        assert!(egress.contains("10.1.2.3/32"), "{egress}");
    }
}
