//! Comparing RBAC rules (`rbac.authorization.k8s.io/v1` `PolicyRule`) written in different
//! orders: the chart's templates and `config/rbac` must grant exactly the same rights.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

use crate::{Error, Result, object_key};

/// One `(apiGroup, resource, resourceName, verb)` grant; `resourceName` is empty when the rule
/// names none (any object), and non-resource URLs use the group `nonResourceURL`.
pub type Grant = (String, String, String, String);

/// Expands rules into the set of single grants they allow, so that `[pods, services]` in one
/// rule equals two rules with one resource each, and verb order does not matter.
pub fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for verb in &rule.verbs {
            for url in rule.non_resource_urls.iter().flatten() {
                out.insert((
                    "nonResourceURL".into(),
                    url.clone(),
                    String::new(),
                    verb.clone(),
                ));
            }
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    let names: Vec<String> = match &rule.resource_names {
                        Some(names) if !names.is_empty() => names.clone(),
                        _ => vec![String::new()],
                    };
                    for name in names {
                        out.insert((group.clone(), resource.clone(), name, verb.clone()));
                    }
                }
            }
        }
    }
    out
}

/// The grants of rules written as `(apiGroup, resources, verbs)` triples, for pinning what a
/// Role or ClusterRole must grant: `expand(&[("", &["pods"], &["get", "list"])])`.
pub fn expand(rules: &[(&str, &[&str], &[&str])]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in rules {
        for resource in *resources {
            for verb in *verbs {
                out.insert((
                    (*group).to_owned(),
                    (*resource).to_owned(),
                    String::new(),
                    (*verb).to_owned(),
                ));
            }
        }
    }
    out
}

/// What the operator's ClusterRole (`charts/rsession/templates/operator-rbac.yaml`, and
/// `config/rbac/role.yaml`) grants: the RSession and RSessionPool controllers' watches, reads
/// and status writes; the children they server-side apply; the pods they delete; Events; and,
/// for the pool controller ahead of use, get on pods, list/watch/delete on Secrets and
/// get/update on `rsessionpools/status`.
pub fn operator_grants() -> BTreeSet<Grant> {
    expand(&[
        ("rsession.dev", &["rsessions"], &["get", "list", "watch"]),
        ("rsession.dev", &["rsessions/status"], &["patch"]),
        (
            "rsession.dev",
            &["rsessionpools"],
            &["get", "list", "watch"],
        ),
        ("rsession.dev", &["rsessionpools/status"], &["patch"]),
        (
            "",
            &["pods"],
            &["list", "watch", "create", "patch", "delete"],
        ),
        ("", &["secrets"], &["get", "create", "patch"]),
        (
            "",
            &["configmaps", "services", "persistentvolumeclaims"],
            &["create", "patch"],
        ),
        (
            "networking.k8s.io",
            &["networkpolicies"],
            &["create", "patch"],
        ),
        ("events.k8s.io", &["events"], &["create", "patch"]),
    ])
}

/// What the MCP frontend's Role in the sessions namespace grants: RSessions it manages, the
/// RSessionPool a `create_session` names (read only; watched for a cache), the sessions' credentials Secrets (get
/// only), and Events naming the caller (kube's Recorder creates them and patches a repeat).
pub fn mcp_grants() -> BTreeSet<Grant> {
    expand(&[
        (
            "rsession.dev",
            &["rsessions"],
            &["create", "get", "list", "watch", "delete", "patch"],
        ),
        (
            "rsession.dev",
            &["rsessionpools"],
            &["get", "list", "watch"],
        ),
        ("", &["secrets"], &["get"]),
        ("events.k8s.io", &["events"], &["create", "patch"]),
    ])
}

/// What the user ClusterRole (`<fullname>-user`, for callers of the MCP frontend and people
/// with kubectl) grants: RSessions and RSessionPools alike, and the pools' scale subresource;
/// no status, no Secrets.
pub fn user_grants() -> BTreeSet<Grant> {
    expand(&[
        (
            "rsession.dev",
            &["rsessions", "rsessionpools"],
            &["create", "get", "list", "watch", "delete", "patch"],
        ),
        (
            "rsession.dev",
            &["rsessionpools/scale"],
            &["get", "update", "patch"],
        ),
    ])
}

/// [`grants`] of the `rules` of a rendered Role or ClusterRole (no `rules` means none).
///
/// # Errors
/// [`Error::Yaml`] when `rules` is not a list of `PolicyRule`.
pub fn grants_of(object: &Value) -> Result<BTreeSet<Grant>> {
    let rules: Vec<PolicyRule> = match object.get("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(rules) => serde_json::from_value(rules.clone()).map_err(|e| Error::Yaml {
            what: object_key(object),
            message: e.to_string(),
        })?,
    };
    Ok(grants(&rules))
}

/// A readable diff of two grant sets: lines `+ group/resource verb` only in `right` and
/// `- ...` only in `left`; empty when equal.
pub fn diff(left: &BTreeSet<Grant>, right: &BTreeSet<Grant>) -> String {
    let show = |(g, r, n, v): &Grant| {
        let group = if g.is_empty() { "core" } else { g.as_str() };
        let name = if n.is_empty() {
            String::new()
        } else {
            format!("[{n}]")
        };
        format!("{group}/{r}{name} {v}")
    };
    let mut lines: Vec<String> = left
        .difference(right)
        .map(|g| format!("- {}", show(g)))
        .collect();
    lines.extend(right.difference(left).map(|g| format!("+ {}", show(g))));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let strings = |s: &[&str]| Some(s.iter().map(|x| (*x).to_string()).collect());
        PolicyRule {
            api_groups: strings(groups),
            resources: strings(resources),
            verbs: verbs.iter().map(|x| (*x).to_string()).collect(),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn order_and_grouping_do_not_matter() {
        let a = [rule(&[""], &["pods", "secrets"], &["get", "list"])];
        let b = [
            rule(&[""], &["secrets"], &["list", "get"]),
            rule(&[""], &["pods"], &["get"]),
            rule(&[""], &["pods"], &["list"]),
        ];
        assert_eq!(grants(&a), grants(&b));
        assert_eq!(diff(&grants(&a), &grants(&b)), "");
    }

    #[test]
    fn expand_equals_the_same_rules_written_out() {
        let written = [
            rule(&["rsession.dev"], &["rsessionpools"], &["get", "list"]),
            rule(&[""], &["pods", "secrets"], &["delete"]),
        ];
        let expanded = expand(&[
            ("rsession.dev", &["rsessionpools"], &["list", "get"]),
            ("", &["secrets", "pods"], &["delete"]),
        ]);
        assert_eq!(grants(&written), expanded);
        assert_eq!(expanded.len(), 4);
    }

    #[test]
    fn operator_grants_cover_pools_and_pool_children() {
        let grants = operator_grants();
        let has = |g: &str, r: &str, v: &str| {
            grants.contains(&(g.to_owned(), r.to_owned(), String::new(), v.to_owned()))
        };
        for verb in ["get", "list", "watch"] {
            assert!(has("rsession.dev", "rsessionpools", verb), "{verb} pools");
        }
        assert!(has("rsession.dev", "rsessionpools/status", "patch"));
        for verb in ["list", "watch", "create", "patch", "delete"] {
            assert!(has("", "pods", verb), "{verb} pods");
        }
        for verb in ["get", "create", "patch"] {
            assert!(has("", "secrets", verb), "{verb} secrets");
        }
        // Pool pods' Secrets go with their pod (owner reference): no delete, list or watch.
        for verb in ["list", "watch", "delete"] {
            assert!(!has("", "secrets", verb), "{verb} secrets");
        }
        // The operator never writes specs: pools and sessions are the users'.
        for verb in ["create", "update", "patch", "delete"] {
            assert!(!has("rsession.dev", "rsessionpools", verb), "{verb} pools");
            assert!(!has("rsession.dev", "rsessions", verb), "{verb} sessions");
        }
        assert!(!has("rsession.dev", "rsessionpools/scale", "update"));
    }

    #[test]
    fn mcp_and_user_grants_on_pools() {
        let mcp = mcp_grants();
        let pool = |v: &str| {
            (
                "rsession.dev".to_owned(),
                "rsessionpools".to_owned(),
                String::new(),
                v.to_owned(),
            )
        };
        assert!(mcp.contains(&pool("get")) && mcp.contains(&pool("list")));
        assert!(!mcp.contains(&pool("create")) && !mcp.contains(&pool("patch")));
        let user = user_grants();
        for verb in ["create", "get", "list", "watch", "delete", "patch"] {
            assert!(user.contains(&pool(verb)), "user {verb} pools");
        }
        assert!(user.contains(&(
            "rsession.dev".into(),
            "rsessionpools/scale".into(),
            String::new(),
            "update".into()
        )));
        assert!(
            !user
                .iter()
                .any(|g| g.1.ends_with("/status") || g.1 == "secrets")
        );
    }

    #[test]
    fn an_extra_verb_shows_in_the_diff() {
        let a = [rule(&[""], &["secrets"], &["get"])];
        let b = [rule(&[""], &["secrets"], &["get", "list"])];
        assert_ne!(grants(&a), grants(&b));
        assert_eq!(diff(&grants(&a), &grants(&b)), "+ core/secrets list");
    }
}
