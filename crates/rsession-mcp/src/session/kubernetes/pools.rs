//! Warm pools (RSessionPool, `rsession.dev/v1alpha1`): which pool, if any, a
//! new session's RSession names in `spec.poolRef`, and how the session
//! started, read from its Ready status.
//!
//! Pure steps: [`choose`] (the `pool` argument, the default pool and the
//! spec of new sessions → a pool or a cold start, or `invalid_argument`),
//! [`spec_for`] (the RSession spec: `poolRef` set and the pod-shaping fields
//! unset, as the CRD's CEL rules demand), [`start_of`] (`status.claim` →
//! [`SessionStart`]). [`Pools::resolve`] reads the chosen pool before the
//! RSession is created: from a watch-fed cache of the namespace's pools when
//! one runs ([`Pools::watch`]; one API call less on the way to a warm
//! session's first result), else, or when the cache lacks it, with a GET.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use rsession_api::{PoolReference, RSession, RSessionPool, RSessionSpec, WorkspaceKind};
use serde_json::json;

use super::errors::{api_error, is_not_found};
use crate::errors::{ErrorCode, ToolError};
use crate::session::{PoolRequest, SessionStart, millis};

/// Longest RSessionPool name (the CRD's rule: pool pods are named
/// `<pool>-<5 characters>`).
pub const MAX_POOL_NAME: usize = 40;

/// Whether `name` can name an RSessionPool: a DNS-1035 label (lower-case
/// letters, digits and `-`, starting with a letter, not ending with `-`) of
/// at most [`MAX_POOL_NAME`] characters, as the CRD validates it.
pub fn valid_pool_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_POOL_NAME
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The pod-shaping fields `spec` sets (their names in the CRD), which a
/// session from a pool must leave to the pool's template.
pub fn pod_fields_set(spec: &RSessionSpec) -> Vec<&'static str> {
    // Destructured in full, so a new spec field has to be sorted in here.
    let RSessionSpec {
        image,
        image_pull_policy,
        resources,
        workspace: _,
        network,
        database,
        lifecycle: _,
        runtime_class_name,
        node_selector,
        tolerations,
        pool_ref: _,
    } = spec;
    [
        ("image", image.is_some()),
        ("imagePullPolicy", image_pull_policy.is_some()),
        ("resources", resources.is_some()),
        ("network", network.is_some()),
        ("database", database.is_some()),
        ("runtimeClassName", runtime_class_name.is_some()),
        ("nodeSelector", node_selector.is_some()),
        ("tolerations", tolerations.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// Why sessions with the spec `spec` (`--session-spec`) cannot come from a
/// pool, one item per conflict (empty: they can).
pub fn pool_conflicts(spec: &RSessionSpec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.workspace.kind == WorkspaceKind::Persistent {
        out.push(
            "new sessions have a Persistent workspace (--session-spec workspace.kind), and pool pods have an Ephemeral one"
                .to_string(),
        );
    }
    let fields = pod_fields_set(spec);
    if !fields.is_empty() {
        out.push(format!(
            "--session-spec sets {}, which a pool session takes from the pool's template",
            fields.join(", ")
        ));
    }
    out
}

/// Where a new session's pod should come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Choice {
    /// A pod started for the session, no `spec.poolRef`.
    Cold,
    /// `spec.poolRef` names this pool. `explicit`: the call named it (a
    /// missing pool is an error); else it is the default pool (a missing one
    /// means a cold start).
    Pool { name: String, explicit: bool },
}

/// The pool a new session asks for: `request` (the `pool` argument), else
/// `default` (`--default-pool`), for sessions with the spec `spec`.
///
/// Errors (`invalid_argument`): a named pool that is not a valid pool name,
/// or that cannot serve sessions of `spec` ([`pool_conflicts`]). The default
/// pool is not used in those cases: a cold start, the normal path.
pub(super) fn choose(
    request: &PoolRequest,
    default: Option<&str>,
    spec: &RSessionSpec,
) -> Result<Choice, ToolError> {
    match request {
        PoolRequest::Cold => Ok(Choice::Cold),
        PoolRequest::Default => Ok(match default {
            Some(name) if pool_conflicts(spec).is_empty() => Choice::Pool {
                name: name.to_string(),
                explicit: false,
            },
            _ => Choice::Cold,
        }),
        PoolRequest::Named(name) => {
            if !valid_pool_name(name) {
                return Err(ToolError::invalid(format!(
                    "pool {name:?} is not an RSessionPool name (lower-case letters, digits and '-', starting with a letter, at most {MAX_POOL_NAME} characters)"
                ))
                .with_details(json!({"pool": name})));
            }
            let conflicts = pool_conflicts(spec);
            if !conflicts.is_empty() {
                return Err(ToolError::invalid(format!(
                    "pool {name:?} cannot serve this session: {}. Leave pool out, or pass pool: \"\", for a cold start.",
                    conflicts.join("; ")
                ))
                .with_details(json!({
                    "pool": name,
                    "conflicts": conflicts,
                    "pod_fields": pod_fields_set(spec),
                })));
            }
            Ok(Choice::Pool {
                name: name.clone(),
                explicit: true,
            })
        }
    }
}

/// The spec of a new RSession: `base` (`--session-spec`) as it is for a cold
/// start; with `pool`, `spec.poolRef` set and every pod-shaping field unset
/// (the CRD's CEL rules: the pod comes from the pool's template), keeping
/// only the lifecycle and the workspace of `base` ([`choose`] has made sure
/// that workspace is Ephemeral).
pub(super) fn spec_for(base: &RSessionSpec, pool: Option<&str>) -> RSessionSpec {
    let Some(name) = pool else {
        return base.clone();
    };
    RSessionSpec {
        workspace: base.workspace.clone(),
        lifecycle: base.lifecycle.clone(),
        pool_ref: Some(PoolReference {
            name: name.to_string(),
        }),
        ..RSessionSpec::default()
    }
}

/// The pool a create goes ahead with, after [`Pools::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// The pool `spec.poolRef` names; `None`: a cold start.
    pub pool: Option<String>,
    /// Its Ready, unclaimed pods when it was read (`status.readyReplicas`).
    pub ready_replicas: Option<i32>,
    /// Why the default pool is not used, when that is worth saying.
    pub note: Option<String>,
}

/// The pool lookups of one backend.
pub(super) struct Pools {
    api: Api<RSessionPool>,
    namespace: String,
    default: Option<String>,
    /// Set once the default pool was found missing or unreadable and that
    /// was logged; cleared when it is read again, so each outage of the
    /// default pool is logged once rather than on every create.
    default_warned: AtomicBool,
    /// The namespace's RSessionPools as a watch last showed them ([`Pools::watch`]).
    cache: Option<Store<RSessionPool>>,
    /// The task feeding `cache`; ends with these lookups.
    _watch: Option<tokio_util::task::AbortOnDropHandle<()>>,
}

impl Pools {
    /// Lookups in `namespace` with `default` as the default pool; logs at
    /// once when sessions of `spec` can never use the default pool.
    pub(super) fn new(
        api: Api<RSessionPool>,
        namespace: &str,
        default: Option<String>,
        spec: &RSessionSpec,
    ) -> Self {
        if let Some(name) = &default {
            let conflicts = pool_conflicts(spec);
            if !conflicts.is_empty() {
                tracing::warn!(pool = %name, conflicts = %conflicts.join("; "), "--default-pool is never used: every session starts cold");
            }
        }
        Pools {
            api,
            namespace: namespace.to_string(),
            default,
            default_warned: AtomicBool::new(false),
            cache: None,
            _watch: None,
        }
    }

    /// These lookups answered from a cache of the namespace's RSessionPools, fed by a watch
    /// (`list` and `watch` on rsessionpools; a pool the cache does not hold yet, or every pool
    /// while the watch is refused, is still read with a GET). Must run inside a Tokio runtime.
    pub(super) fn watch(&mut self) {
        let (store, writer) = reflector::store();
        let api = self.api.clone();
        let feed = async move {
            let mut refused_logged = false;
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer);
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                if let Err(e) = event
                    && !std::mem::replace(&mut refused_logged, true)
                {
                    tracing::warn!(error = %e, "watching RSessionPools failed (RBAC: list and watch rsessionpools?); pools are read with a GET per create_session");
                }
            }
        };
        self.set_cache(
            store,
            Some(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(feed))),
        );
    }

    /// These lookups with `cache` in front of the GET.
    pub(super) fn set_cache(
        &mut self,
        cache: Store<RSessionPool>,
        watch: Option<tokio_util::task::AbortOnDropHandle<()>>,
    ) {
        self.cache = Some(cache);
        self._watch = watch;
    }

    /// Pool `name` from the cache, if there is one and it holds the pool.
    fn cached(&self, name: &str) -> Option<std::sync::Arc<RSessionPool>> {
        self.cache
            .as_ref()?
            .get(&ObjectRef::new(name).within(&self.namespace))
    }

    /// The plan for pool `name`, read as `pool`.
    fn found(&self, name: String, pool: &RSessionPool, explicit: bool) -> Plan {
        if !explicit {
            self.default_warned.store(false, Ordering::Relaxed);
        }
        Plan {
            pool: Some(name),
            ready_replicas: pool.status.as_ref().map(|s| s.ready_replicas),
            note: None,
        }
    }

    /// The pool a session created with `request` and `spec` names, read
    /// from the API when there is one ([`choose`], then a GET).
    ///
    /// Errors: those of [`choose`]; `pool_not_found` naming a pool the call
    /// named that does not exist; the API errors of the GET
    /// (`backend_unavailable`, `forbidden`). A default pool that does not
    /// exist (or that this server may not read) is logged once and the
    /// session starts cold.
    pub(super) async fn resolve(
        &self,
        request: &PoolRequest,
        spec: &RSessionSpec,
    ) -> Result<Plan, ToolError> {
        let (name, explicit) = match choose(request, self.default.as_deref(), spec)? {
            Choice::Cold => return Ok(Plan::default()),
            Choice::Pool { name, explicit } => (name, explicit),
        };
        if let Some(pool) = self.cached(&name) {
            return Ok(self.found(name, &pool, explicit));
        }
        match self.api.get(&name).await {
            Ok(pool) => Ok(self.found(name, &pool, explicit)),
            Err(e) if explicit && is_not_found(&e) => Err(ToolError::new(
                ErrorCode::PoolNotFound,
                format!(
                    "there is no RSessionPool {name:?} in namespace {} (or the RSessionPool resource type is not installed). Leave pool out for the server's default, or pass pool: \"\" for a cold start.",
                    self.namespace
                ),
            )
            .with_details(json!({"pool": name, "namespace": self.namespace}))),
            Err(e) if !explicit && (is_not_found(&e) || api_error_is(&e, 403)) => {
                let why = if is_not_found(&e) {
                    "does not exist"
                } else {
                    "may not be read by this server (RBAC: get rsessionpools)"
                };
                if !self.default_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(pool = %name, namespace = %self.namespace, "the default pool {why}; sessions start cold until it can be read");
                } else {
                    tracing::debug!(pool = %name, "the default pool {why}; starting cold");
                }
                Ok(Plan {
                    note: Some(format!("the default pool {name} {why}")),
                    ..Plan::default()
                })
            }
            Err(e) => Err(api_error("read RSessionPools", &e)),
        }
    }
}

fn api_error_is(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// How the Ready RSession `rs`, created after `plan`, started, `elapsed`
/// after the create began: `status.claim` (written by the operator for
/// sessions with `spec.poolRef`) says warm or cold and which pod.
pub(super) fn start_of(rs: &RSession, plan: &Plan, elapsed: Duration) -> SessionStart {
    let status = rs.status.as_ref();
    let pod_name = status.and_then(|s| s.pod_name.clone());
    let ready_ms = millis(elapsed);
    let Some(pool) = &plan.pool else {
        let note = match &plan.note {
            Some(why) => format!("a new pod; {why}"),
            None => "a new pod".to_string(),
        };
        return SessionStart {
            warm: false,
            pool: None,
            pod_name,
            ready_ms,
            note: Some(note),
        };
    };
    match status.and_then(|s| s.claim.as_ref()) {
        Some(claim) => SessionStart {
            warm: claim.warm,
            pool: Some(pool.clone()),
            pod_name: claim.pod_name.clone().or(pod_name),
            ready_ms,
            note: (!claim.warm)
                .then(|| format!("pool {pool} had no Ready pod, so a new pod was started")),
        },
        None => SessionStart {
            warm: false,
            pool: Some(pool.clone()),
            pod_name,
            ready_ms,
            note: Some(format!(
                "the operator reported no claim on pool {pool} (status.claim)"
            )),
        },
    }
}
