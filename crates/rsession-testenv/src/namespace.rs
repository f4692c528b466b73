//! Throw-away namespaces, one per test, so tests share a control plane without seeing each
//! other's objects.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client};
use rand::distr::{Alphanumeric, SampleString};

use crate::control_plane::ControlPlane;
use crate::error::{Error, Result};

/// Namespace label that makes PodSecurity admission enforce a Pod Security Standard level
/// (Kubernetes `pod-security.kubernetes.io/enforce`).
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// The Pod Security Standard a temp namespace enforces through [`ENFORCE_LABEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodSecurity {
    /// No label: the cluster default (`privileged`) applies.
    Unlabelled,
    /// `pod-security.kubernetes.io/enforce=baseline`.
    Baseline,
    /// `pod-security.kubernetes.io/enforce=restricted`.
    Restricted,
}

impl PodSecurity {
    fn level(self) -> Option<&'static str> {
        match self {
            PodSecurity::Unlabelled => None,
            PodSecurity::Baseline => Some("baseline"),
            PodSecurity::Restricted => Some("restricted"),
        }
    }
}

/// How long a new namespace may take to get its `default` ServiceAccount (created by
/// kube-controller-manager; the ServiceAccount admission plugin rejects pods before it exists).
const SA_TIMEOUT: Duration = Duration::from_secs(60);

impl ControlPlane {
    /// Creates namespace `t-<hint>-<8 random characters>` with the given Pod Security level and
    /// waits for its `default` ServiceAccount (when the controller manager runs).
    ///
    /// # Errors
    /// [`Error::Kube`] when creation fails; [`Error::Timeout`] when the ServiceAccount does not
    /// appear within 60 s.
    pub async fn create_namespace(
        &self,
        client: &Client,
        hint: &str,
        security: PodSecurity,
    ) -> Result<String> {
        let hint: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let suffix = Alphanumeric
            .sample_string(&mut rand::rng(), 8)
            .to_ascii_lowercase();
        let name = format!("t-{}-{suffix}", hint.trim_matches('-'));
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: security
                    .level()
                    .map(|level| [(ENFORCE_LABEL.to_owned(), level.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .map_err(Error::kube(format!("create namespace {name}")))?;
        if self.has_controller_manager() {
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
            let appeared = tokio::time::timeout(
                SA_TIMEOUT,
                await_condition(accounts, "default", |sa: Option<&ServiceAccount>| {
                    sa.is_some()
                }),
            )
            .await;
            if !matches!(appeared, Ok(Ok(_))) {
                return Err(Error::Timeout {
                    what: format!("ServiceAccount {name}/default"),
                    seconds: SA_TIMEOUT.as_secs(),
                    dir: self.dir().to_owned(),
                    tails: self.log_tails(30),
                });
            }
        }
        Ok(name)
    }

    /// Runs `test(client, namespace)` in a fresh namespace (see
    /// [`ControlPlane::create_namespace`]) and deletes the namespace afterwards.
    ///
    /// When `test` panics, the namespace's objects (`kubectl get` of every namespaced kind) and
    /// the control plane's log tails are printed, the temp folder is kept, the namespace is
    /// still deleted, and the panic is resumed so the test fails with its own message.
    ///
    /// # Errors
    /// Setup errors only (the namespace could not be created or the admin client built).
    pub async fn with_temp_ns<F, Fut, T>(
        &self,
        hint: &str,
        security: PodSecurity,
        test: F,
    ) -> Result<T>
    where
        F: FnOnce(Client, String) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let client = self.client()?;
        let name = self.create_namespace(&client, hint, security).await?;
        let outcome = tokio::spawn(test(client.clone(), name.clone())).await;
        if outcome.is_err() {
            eprintln!("{}", self.describe_namespace(&name).await);
            self.mark_failed();
        }
        let deleted = Api::<Namespace>::all(client)
            .delete(&name, &DeleteParams::background())
            .await;
        if let Err(e) = deleted {
            tracing::warn!(namespace = %name, error = %e, "could not delete the test namespace");
        }
        match outcome {
            Ok(value) => Ok(value),
            Err(join) => match join.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(join) => panic!("test task in namespace {name} was cancelled: {join}"),
            },
        }
    }

    /// A `kubectl get -o wide` listing of every namespaced kind in `namespace`, for failure
    /// reports (errors are included as text).
    pub async fn describe_namespace(&self, namespace: &str) -> String {
        let kinds = match self
            .kubectl(&[
                "api-resources",
                "--verbs=list",
                "--namespaced",
                "-o",
                "name",
            ])
            .await
        {
            Ok(kinds) => kinds.lines().collect::<Vec<_>>().join(","),
            Err(e) => return format!("(could not list resource kinds: {e})"),
        };
        match self
            .kubectl(&["get", &kinds, "-n", namespace, "-o", "wide", "--show-kind"])
            .await
        {
            Ok(listing) => format!("----- objects in namespace {namespace} -----\n{listing}"),
            Err(e) => format!("(could not list namespace {namespace}: {e})"),
        }
    }
}
