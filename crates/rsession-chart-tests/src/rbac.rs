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
    fn an_extra_verb_shows_in_the_diff() {
        let a = [rule(&[""], &["secrets"], &["get"])];
        let b = [rule(&[""], &["secrets"], &["get", "list"])];
        assert_ne!(grants(&a), grants(&b));
        assert_eq!(diff(&grants(&a), &grants(&b)), "+ core/secrets list");
    }
}
