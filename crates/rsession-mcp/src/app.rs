//! Wiring: flags → backend (maybe starting the local Rserve) → session
//! manager; and orderly shutdown (sessions closed, then Rserve stopped).

use std::sync::Arc;

use crate::config::{Args, BackendKind};
use crate::local_rserve::{LaunchError, LocalRserve, LocalRserveOptions};
use crate::metrics::Metrics;
use crate::session::direct::{DirectBackend, RserveTarget};
use crate::session::{Credentials, SessionManager};
use crate::tools::RSessionServer;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag value is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The local Rserve did not start.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

/// A started server: shared manager and metrics, and the local Rserve if we own one.
pub struct App {
    /// Sessions.
    pub manager: Arc<SessionManager>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    local: Option<LocalRserve>,
}

impl App {
    /// Build the backend named by `args` (starting a local Rserve when no
    /// `--rserve` is given) and the session manager.
    pub async fn start(args: &Args) -> Result<App, StartError> {
        let config = args.manager_config().map_err(StartError::Config)?;
        let metrics = Arc::new(Metrics::new());
        let (backend, local) = match args.backend {
            BackendKind::Direct if args.rserve.is_empty() => {
                let local = LocalRserve::start(&LocalRserveOptions {
                    r_binary: args.r_binary.clone(),
                    ..LocalRserveOptions::default()
                })
                .await?;
                let root = args
                    .workspace_root
                    .clone()
                    .unwrap_or_else(|| local.dir().join("workspaces").display().to_string());
                let target = RserveTarget {
                    addr: local.addr().to_string(),
                    credentials: Some(local.credentials().clone()),
                };
                let backend = DirectBackend::new(vec![target], root)
                    .map_err(|e| StartError::Config(e.message))?;
                (backend, Some(local))
            }
            BackendKind::Direct => {
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
                    .workspace_root
                    .clone()
                    .unwrap_or_else(|| "/tmp/rsession-workspaces".into());
                let backend =
                    DirectBackend::new(targets, root).map_err(|e| StartError::Config(e.message))?;
                (backend, None)
            }
        };
        let manager = Arc::new(SessionManager::new(
            Arc::new(backend),
            config,
            metrics.clone(),
        ));
        Ok(App {
            manager,
            metrics,
            local,
        })
    }

    /// An MCP server value over this app's sessions, acting for `owner`.
    pub fn server(&self, owner: &str) -> RSessionServer {
        RSessionServer::new(self.manager.clone(), self.metrics.clone(), owner)
    }

    /// Close every session, then stop the local Rserve if we started one.
    pub async fn shutdown(self) {
        self.manager.close_all().await;
        if let Some(local) = self.local {
            local.stop().await;
        }
    }
}
