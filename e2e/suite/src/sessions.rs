//! RSession objects the tests apply themselves: specs the frontend's `create_session` does not
//! make (memory or CPU limits, egress rules, a database, a Persistent workspace), labelled for
//! an agent so the frontend adopts them (`execute_in_session` with the RSession's name), plus
//! the fixtures they need (a hostPath PersistentVolume, the OMOP database Secret) and counts
//! of the children the operator made.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use rsession_api::{RSession, well_known as wk};
use serde_json::{Value, json};

use crate::{
    Agent, FIELD_MANAGER, LABEL_OWNER, apply, delete_rsession, env, is_ready, wait_deleted,
    wait_for,
};

/// The frontend's owner label value for user `name`: `u-` and the first 48 hex digits of
/// SHA-256 of the name (`rsession-mcp`'s `owner_label_value`), computed with `sha256sum`.
pub fn owner_label_value(name: &str) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("sha256sum")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(name.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "sha256sum failed");
    let hex = String::from_utf8(out.stdout)?;
    let hex = hex.get(..48).context("short sha256sum output")?;
    Ok(format!("u-{hex}"))
}

/// An RSession named `name` with `spec` (JSON in the CRD's camelCase form) and `labels`.
pub fn rsession_object(
    name: &str,
    spec: Value,
    labels: BTreeMap<String, String>,
) -> Result<RSession> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "rsession.dev/v1alpha1",
        "kind": "RSession",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))?)
}

/// Applies RSession `name` with `spec` owned by `agent` (the frontend's owner and part-of
/// labels, so it adopts it: `execute_in_session` with `name` works for that agent only), after
/// deleting a leftover of the same name, and waits up to 180 s for Ready.
pub async fn adopted_session(
    client: &Client,
    agent: &Agent,
    name: &str,
    spec: Value,
) -> Result<RSession> {
    delete_rsession(client, &agent.ns, name).await?;
    let labels = BTreeMap::from([
        (LABEL_OWNER.to_owned(), agent.owner_label()?),
        (wk::LABEL_PART_OF.to_owned(), wk::APP_NAME.to_owned()),
    ]);
    apply(client, &agent.ns, &rsession_object(name, spec, labels)?).await?;
    let api: Api<RSession> = Api::namespaced(client.clone(), &agent.ns);
    wait_for(&api, name, 180, "Ready", is_ready()).await
}

/// Creates (or keeps) PersistentVolume `name`: a hostPath folder `dir` on this node, made
/// writable for uid 1000 (hostPath gets no fsGroup), storage class `class`, 1 GiB, Retain.
pub async fn hostpath_pv(client: &Client, name: &str, dir: &str, class: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": class,
            "hostPath": {"path": dir, "type": "Directory"},
        },
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&pv),
        )
        .await?;
    Ok(())
}

/// Deletes RSession `session`, its PersistentVolumeClaims and PersistentVolume `pv`, waiting
/// for each to be gone.
pub async fn delete_persistent(client: &Client, ns: &str, session: &str, pv: &str) -> Result<()> {
    delete_rsession(client, ns, session).await?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{}={session}", wk::LABEL_SESSION));
    for pvc in pvcs.list(&lp).await?.items {
        let name = kube::ResourceExt::name_any(&pvc);
        pvcs.delete(&name, &DeleteParams::default()).await?;
        wait_deleted(&pvcs, &name, 60).await?;
    }
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    if pvs.get_opt(pv).await?.is_some() {
        pvs.delete(pv, &DeleteParams::default()).await?;
        wait_deleted(&pvs, pv, 60).await?;
    }
    Ok(())
}

/// Name of the Secret [`omop_secret`] applies.
pub const OMOP_SECRET: &str = "e2e-omop-cdm";

/// Applies Secret [`OMOP_SECRET`] in `ns` with the synthetic OMOP CDM's connection
/// (`RSESSION_E2E_PG_*`), in the keys `spec.database.secretRef` reads.
pub async fn omop_secret(client: &Client, ns: &str) -> Result<()> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(OMOP_SECRET.into()),
            ..Default::default()
        },
        string_data: Some(
            [
                ("host", "RSESSION_E2E_PG_HOST"),
                ("port", "RSESSION_E2E_PG_PORT"),
                ("dbname", "RSESSION_E2E_PG_DB"),
                ("user", "RSESSION_E2E_PG_USER"),
                ("password", "RSESSION_E2E_PG_PASSWORD"),
                ("schema", "RSESSION_E2E_PG_SCHEMA"),
            ]
            .into_iter()
            .map(|(k, v)| Ok((k.to_owned(), env(v)?)))
            .collect::<Result<_>>()?,
        ),
        ..Default::default()
    };
    apply(client, ns, &secret).await?;
    Ok(())
}

async fn count_labelled<K>(client: &Client, ns: &str, selector: &str) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list_metadata(&ListParams::default().labels(selector))
        .await?
        .items
        .len())
}

/// How many pods, services, secrets, configmaps and networkpolicies carry the session label of
/// RSession `session` (kind → count).
pub async fn children_counts(
    client: &Client,
    ns: &str,
    session: &str,
) -> Result<BTreeMap<&'static str, usize>> {
    let sel = format!("{}={session}", wk::LABEL_SESSION);
    Ok(BTreeMap::from([
        ("pods", count_labelled::<Pod>(client, ns, &sel).await?),
        (
            "services",
            count_labelled::<Service>(client, ns, &sel).await?,
        ),
        ("secrets", count_labelled::<Secret>(client, ns, &sel).await?),
        (
            "configmaps",
            count_labelled::<ConfigMap>(client, ns, &sel).await?,
        ),
        (
            "networkpolicies",
            count_labelled::<NetworkPolicy>(client, ns, &sel).await?,
        ),
    ]))
}

async fn label_values<K>(client: &Client, ns: &str, out: &mut BTreeSet<String>) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(wk::LABEL_SESSION);
    for o in api.list_metadata(&lp).await?.items {
        if let Some(v) = o
            .metadata
            .labels
            .and_then(|mut l| l.remove(wk::LABEL_SESSION))
        {
            out.insert(v);
        }
    }
    Ok(())
}

/// Every value of the session label on pods, services, secrets, configmaps and
/// networkpolicies in `ns` (to find children whose RSession is gone).
pub async fn labelled_sessions(client: &Client, ns: &str) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    label_values::<Pod>(client, ns, &mut out).await?;
    label_values::<Service>(client, ns, &mut out).await?;
    label_values::<Secret>(client, ns, &mut out).await?;
    label_values::<ConfigMap>(client, ns, &mut out).await?;
    label_values::<NetworkPolicy>(client, ns, &mut out).await?;
    Ok(out)
}

/// RSession `name` in `ns`.
pub async fn get_rsession(client: &Client, ns: &str, name: &str) -> Result<RSession> {
    Ok(Api::<RSession>::namespaced(client.clone(), ns)
        .get(name)
        .await?)
}

/// The pods of the release's `component` (`operator`, `mcp`) in the system namespace.
pub async fn component_pods(client: &Client, component: &str) -> Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &crate::system_ns()?);
    let lp = ListParams::default().labels(&format!("{}={component}", wk::LABEL_APP_COMPONENT));
    Ok(pods.list(&lp).await?.items)
}

/// Each pod of `component` with the `lastTransitionTime` of its `Ready` condition and that
/// condition's status: a pod that went NotReady and back shows a later time.
pub async fn component_readiness(client: &Client, component: &str) -> Result<Vec<String>> {
    Ok(component_pods(client, component)
        .await?
        .iter()
        .map(|p| {
            let ready = p
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .find(|c| c.type_ == "Ready");
            format!(
                "{} Ready={} since {}",
                p.name_any(),
                ready.map_or("?", |c| c.status.as_str()),
                ready
                    .and_then(|c| c.last_transition_time.as_ref())
                    .map_or_else(|| "?".to_string(), |t| t.0.to_string())
            )
        })
        .collect())
}

/// The IP and `http` container port of a Running pod of `component`.
pub async fn component_http(client: &Client, component: &str) -> Result<(String, u16)> {
    let pods = component_pods(client, component).await?;
    let pod = pods
        .iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .with_context(|| format!("no Running {component} pod"))?;
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("no pod IP")?;
    let port = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("http"))
        .map(|p| p.container_port)
        .context("no http port")?;
    Ok((ip, u16::try_from(port)?))
}

/// ClusterIP and first port of the Service labelled `selector` in `ns`, if there is one.
pub async fn service_address(
    client: &Client,
    ns: &str,
    selector: &str,
) -> Result<Option<(String, u16)>> {
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    let list = svcs.list(&ListParams::default().labels(selector)).await?;
    Ok(list.items.first().and_then(|s| {
        let spec = s.spec.as_ref()?;
        let ip = spec.cluster_ip.clone().filter(|ip| ip != "None")?;
        let port = u16::try_from(spec.ports.as_ref()?.first()?.port).ok()?;
        Some((ip, port))
    }))
}
