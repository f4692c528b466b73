//! The workspace PersistentVolumeClaim for Persistent workspaces without `existingClaim`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use rsession_api::{RetainPolicy, WorkspaceKind};

use super::{Component, owned_meta, pvc_name};
use crate::validate::Session;

/// Builds the workspace PVC, or `None` when the workspace is Ephemeral or mounts an existing
/// claim. With `retainPolicy: Retain` the PVC carries no owner reference, so garbage
/// collection leaves it when the RSession is deleted (its labels still name the session).
pub fn build_pvc(s: &Session) -> Option<PersistentVolumeClaim> {
    if s.workspace.kind != WorkspaceKind::Persistent || s.workspace.existing_claim.is_some() {
        return None;
    }
    let mut metadata = owned_meta(s, pvc_name(&s.name), Component::Workspace);
    if s.workspace.retain_policy == RetainPolicy::Retain {
        metadata.owner_references = None;
    }
    Some(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: s.workspace.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: s
                    .workspace
                    .size
                    .clone()
                    .map(|size| BTreeMap::from([("storage".to_owned(), size)])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::{rsession, session_of};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn persistent() -> rsession_api::RSession {
        let mut rs = rsession("s");
        rs.spec.workspace.kind = WorkspaceKind::Persistent;
        rs.spec.workspace.size = Some(Quantity("5Gi".into()));
        rs
    }

    #[test]
    fn ephemeral_workspace_has_no_pvc() {
        assert!(build_pvc(&session_of(&rsession("s"))).is_none());
    }

    #[test]
    fn existing_claim_is_not_created_or_owned() {
        let mut rs = persistent();
        rs.spec.workspace.existing_claim = Some("mine".into());
        assert!(build_pvc(&session_of(&rs)).is_none());
    }

    #[test]
    fn persistent_workspace_pvc_requests_the_size_and_is_owned() {
        let pvc = build_pvc(&session_of(&persistent())).expect("pvc");
        assert_eq!(pvc.metadata.name.as_deref(), Some("s-workspace"));
        let req = pvc
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .expect("requests");
        assert_eq!(req["storage"], Quantity("5Gi".into()));
        assert!(pvc.metadata.owner_references.is_some());
    }

    #[test]
    fn retained_pvc_has_no_owner_reference() {
        let mut rs = persistent();
        rs.spec.workspace.retain_policy = RetainPolicy::Retain;
        let pvc = build_pvc(&session_of(&rs)).expect("pvc");
        assert_eq!(pvc.metadata.owner_references, None);
    }
}
