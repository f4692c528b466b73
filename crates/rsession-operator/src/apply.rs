//! The apply step: server-side apply of typed objects under the operator's one field manager
//! ([`wk::MANAGER`], forced: the operator owns every field it writes), and pod deletion.
//! Expected answers (NotFound on delete) are not errors.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::TypeMeta;
use kube::{Client, Resource};
use rsession_api::well_known as wk;
use rsession_api::{RSession, RSessionStatus};
use serde::Serialize;

use crate::build::children::Children;
use crate::error::Error;

/// Status written with server-side apply: only `status`, under the operator's field manager.
#[derive(Serialize, Debug)]
struct StatusApply<'a, S> {
    #[serde(flatten)]
    types: TypeMeta,
    status: &'a S,
}

fn apply_params() -> PatchParams {
    PatchParams::apply(wk::MANAGER).force()
}

/// Server-side applies `obj` (named by its `metadata.name`) and returns what the API server
/// stored.
pub(crate) async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(&name, &apply_params(), &Patch::Apply(obj))
        .await?)
}

/// Applies every child of the bundle in `namespace`, one request each, all sent at once and
/// awaited together: Secret, Service, NetworkPolicy, PVC (when there is one). The caller
/// applies the pod only after this returns: the pod must never run before its NetworkPolicy
/// exists, and the MCP frontend logs in with the Secret. `tests/api_calls.rs` pins the
/// set of calls, in the order they are sent.
pub(crate) async fn apply_children(
    client: &Client,
    namespace: &str,
    children: &Children,
) -> Result<(), Error> {
    // Independent objects, sent together: one round trip rather than three or four on the way
    // to a cold session's pod (which is applied only after all of them exist, so it never runs
    // without its NetworkPolicy) and in every claim's reconcile.
    let pvc = async {
        match &children.pvc {
            Some(pvc) => apply_in(client, namespace, pvc).await.map(drop),
            None => Ok(()),
        }
    };
    tokio::try_join!(
        apply_in(client, namespace, &children.secret),
        apply_in(client, namespace, &children.service),
        apply_in(client, namespace, &children.network_policy),
        pvc,
    )?;
    Ok(())
}

/// [`apply`] of a namespaced object of any type into `namespace`.
pub(crate) async fn apply_in<K>(client: &Client, namespace: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    apply(&Api::namespaced(client.clone(), namespace), obj).await
}

/// Deletes a pod; NotFound is the expected answer for a pod that is already gone.
pub(crate) async fn delete_pod(api: &Api<Pod>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Server-side applies `status` to the `status` subresource of RSession `name`.
pub(crate) async fn apply_status(
    api: &Api<RSession>,
    name: &str,
    status: &RSessionStatus,
) -> Result<(), Error> {
    apply_status_of(api, name, rsession_api::type_meta(), status).await
}

/// Server-side applies `status` (of the resource whose `apiVersion` and `kind` are `types`) to
/// the `status` subresource of object `name`.
///
/// Errors: [`Error::Gone`] when the object no longer exists (the status subresource answers
/// NotFound only then: it was deleted while its reconcile ran); other API errors as they come.
pub(crate) async fn apply_status_of<K, S>(
    api: &Api<K>,
    name: &str,
    types: TypeMeta,
    status: &S,
) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize + std::fmt::Debug,
{
    let patch = StatusApply { types, status };
    match api
        .patch_status(name, &apply_params(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::Gone),
        Err(e) => Err(e.into()),
    }
}

/// Deletes `name` only while its resourceVersion is still `resource_version` (when given):
/// NotFound and a failed precondition (409 Conflict: the object changed, for example a pool pod
/// claimed meanwhile) are expected answers, reported as `false`.
pub(crate) async fn delete_unchanged<K>(
    api: &Api<K>,
    name: &str,
    resource_version: Option<String>,
) -> Result<bool, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: resource_version.map(|rv| kube::api::Preconditions {
            resource_version: Some(rv),
            uid: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
