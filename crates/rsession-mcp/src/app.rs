//! Wiring: flags → backend (maybe starting the local Rserve) → session
//! manager; and orderly shutdown (sessions closed, then Rserve stopped).

use std::sync::Arc;

use crate::auth::{KubeAuth, KubeAuthConfig, LOCAL_OWNER};
use crate::config::{Args, AuthMode, BackendKind};
use crate::local_rserve::{LaunchError, LocalRserve, LocalRserveOptions};
use crate::metrics::Metrics;
use crate::pager::PagerConfig;
use crate::session::direct::{DirectBackend, RserveTarget};
use crate::session::kubernetes::{KubernetesBackend, KubernetesConfig};
use crate::session::sandboxed::SandboxedBackend;
use crate::session::{Backend, Credentials, SessionManager};
use crate::tools::{RSessionServer, TaskConfig};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The local Rserve did not start.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// No Kubernetes client configuration (in-cluster or `KUBECONFIG`).
    #[error("connecting to Kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// A started server: shared manager and metrics, and the local Rserve if we own one.
pub struct App {
    /// Sessions.
    pub manager: Arc<SessionManager>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// HTTP caller authentication (`--auth kubernetes`), to wrap the router
    /// with [`crate::auth::layer`].
    pub auth: Option<Arc<KubeAuth>>,
    /// Owner of the stdio caller's sessions: the cluster identity of the
    /// kubeconfig (kubernetes backend), else `local`.
    pub local_owner: String,
    /// Paging of long tool output (`read_output`).
    pub pager: PagerConfig,
    /// Task store bounds.
    pub tasks: TaskConfig,
    local: Option<LocalRserve>,
}

impl App {
    /// Build the backend named by `args` (starting a local Rserve when no
    /// `--rserve` is given) and the session manager.
    pub async fn start(args: &Args) -> Result<App, StartError> {
        let config = args.manager_config().map_err(StartError::Config)?;
        let metrics = Arc::new(Metrics::new());
        let mut auth = None;
        let mut local_owner = LOCAL_OWNER.to_string();
        let (backend, local): (Arc<dyn Backend>, _) = match args.backend {
            BackendKind::Kubernetes => {
                let kube_config = kube::Config::infer()
                    .await
                    .map_err(|e| StartError::Config(format!("no Kubernetes configuration: {e}")))?;
                let client = crate::session::kubernetes::client::client(kube_config)?;
                let namespace = args
                    .namespace
                    .clone()
                    .or_else(|| {
                        std::env::var("POD_NAMESPACE")
                            .ok()
                            .filter(|n| !n.is_empty())
                    })
                    .unwrap_or_else(|| client.default_namespace().to_string());
                let mut k = KubernetesConfig::new(namespace.clone());
                k.ready_timeout = args.ready_timeout().map_err(StartError::Config)?;
                k.activity_interval = args.activity_interval().map_err(StartError::Config)?;
                k.spec = args.session_spec().map_err(StartError::Config)?;
                k.default_pool = args.default_pool().map_err(StartError::Config)?;
                if let Some(root) = &args.plain_workspace_root() {
                    k.workspace = root.clone();
                }
                if args.auth_mode() == AuthMode::Kubernetes {
                    let mut a = KubeAuthConfig::new(namespace.clone());
                    a.audiences = args.token_audiences.clone();
                    a.cache_ttl = args.auth_cache_ttl().map_err(StartError::Config)?;
                    auth = Some(Arc::new(KubeAuth::new(client.clone(), a)));
                }
                let kubeconfig_user = kube::config::Kubeconfig::read().ok().and_then(|c| {
                    let context = c.current_context.clone()?;
                    c.contexts
                        .iter()
                        .find(|n| n.name == context)
                        .and_then(|n| n.context.as_ref())
                        .and_then(|ctx| ctx.user.clone())
                });
                local_owner =
                    crate::auth::local_identity(&client, kubeconfig_user.as_deref()).await;
                tracing::info!(%namespace, owner = %local_owner, "kubernetes backend");
                (
                    Arc::new(
                        KubernetesBackend::new(client, k)
                            .with_pool_watch()
                            .with_session_watch(),
                    ),
                    None,
                )
            }
            BackendKind::Direct if args.rserve.is_empty() && args.sandbox.is_sandboxed() => {
                let policy = args.sandbox_policy();
                crate::sandbox::preflight(&policy)
                    .await
                    .map_err(|e| StartError::Config(e.to_string()))?;
                tracing::info!(
                    sandbox = policy.mode.as_str(),
                    allow_network = policy.allow_network,
                    memory_limit_bytes = policy.memory_limit_bytes,
                    max_processes = policy.max_processes,
                    "direct backend: each session's R in its own sandbox"
                );
                let keep = (!args.no_checkpoint).then_some(args.max_kept_sessions);
                let root = args
                    .sandboxed_workspace_root()
                    .map_err(StartError::Config)?;
                if let Some(root) = &root {
                    tracing::info!(workspace_root = %root.display(), kept = keep.is_some(), "session workspaces");
                }
                let backend = SandboxedBackend::new(policy, args.r_binary.clone(), root, keep)
                    .map_err(|e| {
                        StartError::Config(format!("preparing the workspace root: {e}"))
                    })?;
                (Arc::new(backend), None)
            }
            BackendKind::Direct if args.rserve.is_empty() => {
                tracing::warn!(
                    "--sandbox danger-full-access: R runs with this server's rights (reads and writes your files, reaches the network, signals your processes)"
                );
                let local = LocalRserve::start(&LocalRserveOptions {
                    r_binary: args.r_binary.clone(),
                    // Sourced once here instead of installed on every connection; compiling
                    // would add 0.6 s to the server's start (rsession_harness::Preload).
                    harness: Some(rsession_harness::Preload::Source),
                    ..LocalRserveOptions::default()
                })
                .await?;
                let root = args
                    .plain_workspace_root()
                    .unwrap_or_else(|| local.dir().join("workspaces").display().to_string());
                let target = RserveTarget {
                    addr: local.addr().to_string(),
                    credentials: Some(local.credentials().clone()),
                };
                let backend = DirectBackend::new(vec![target], root)
                    .map_err(|e| StartError::Config(e.message))?;
                (Arc::new(backend), Some(local))
            }
            BackendKind::Direct => {
                if args.sandbox.is_sandboxed() {
                    return Err(StartError::Config(format!(
                        "--rserve names an Rserve this server does not start, so it cannot put it in the {} sandbox; add --sandbox danger-full-access to use it as it is configured",
                        args.sandbox.as_str()
                    )));
                }
                let credentials = match (&args.rserve_user, &args.rserve_password_file) {
                    (Some(user), Some(file)) => {
                        let text = std::fs::read_to_string(file).map_err(|e| {
                            StartError::Config(format!("reading {}: {e}", file.display()))
                        })?;
                        Some(Credentials {
                            username: user.clone(),
                            password: text.lines().next().unwrap_or_default().to_string(),
                        })
                    }
                    (None, None) => None,
                    _ => {
                        return Err(StartError::Config(
                            "--rserve-user and --rserve-password-file go together".into(),
                        ));
                    }
                };
                let targets = args
                    .rserve
                    .iter()
                    .map(|addr| RserveTarget {
                        addr: addr.clone(),
                        credentials: credentials.clone(),
                    })
                    .collect();
                let root = args
                    .plain_workspace_root()
                    .unwrap_or_else(|| "/tmp/rsession-workspaces".into());
                let backend =
                    DirectBackend::new(targets, root).map_err(|e| StartError::Config(e.message))?;
                (Arc::new(backend), None)
            }
        };
        if args.backend != BackendKind::Kubernetes && args.default_pool.is_some() {
            tracing::warn!(
                "--default-pool is ignored: warm pools exist only on the kubernetes backend"
            );
        }
        if auth.is_none() && args.auth_mode() == AuthMode::Kubernetes {
            return Err(StartError::Config(
                "--auth kubernetes needs --backend kubernetes (the reviews use its cluster connection)".into(),
            ));
        }
        let manager = Arc::new(SessionManager::new(backend, config, metrics.clone()));
        manager.start_checkpoints();
        Ok(App {
            manager,
            metrics,
            auth,
            local_owner,
            pager: args.pager_config(),
            tasks: args.task_config(),
            local,
        })
    }

    /// An MCP server value over this app's sessions, acting for `owner`.
    pub fn server(&self, owner: &str) -> RSessionServer {
        RSessionServer::new(
            self.manager.clone(),
            self.metrics.clone(),
            self.pager,
            owner,
        )
        .with_task_config(self.tasks)
    }

    /// Close every session, then stop the local Rserve if we started one.
    pub async fn shutdown(self) {
        self.manager.close_all().await;
        if let Some(local) = self.local {
            local.stop().await;
        }
    }
}
