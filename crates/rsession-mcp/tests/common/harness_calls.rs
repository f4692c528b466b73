//! Typed shortcuts over [`SessionManager::call`] for manager-level tests:
//! the file and package entry points without going through MCP.

use rserve::Sexp;
use rsession_mcp::errors::ToolError;
use rsession_mcp::harness::{HarnessCall, Reply};
use rsession_mcp::session::{ExecReport, SessionManager, Watch};

/// One harness entry point per method, each answering its R value (or the
/// evaluation report for installs); errors are those of
/// [`SessionManager::call`].
pub trait HarnessCalls {
    /// The manager the calls go to.
    fn manager(&self) -> &SessionManager;

    /// `call` in session `id` of `owner`, default deadline, nobody watching.
    async fn send<T: TryFrom<Reply, Error = ToolError>>(
        &self,
        owner: &str,
        id: &str,
        call: HarnessCall,
    ) -> Result<T, ToolError> {
        let watch = Watch::default();
        let reply = self.manager().call(owner, id, call, None, &watch).await?;
        reply.try_into()
    }

    /// [`HarnessCall::ListFiles`]: files under `path` (relative to the workspace).
    async fn list_files(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<Sexp, ToolError> {
        let path = path.into();
        self.send(owner, id, HarnessCall::ListFiles { path, recursive })
            .await
    }

    /// [`HarnessCall::ReadFile`]: up to `max_bytes` of a workspace file.
    async fn read_file(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        max_bytes: Option<u64>,
    ) -> Result<Sexp, ToolError> {
        let (path, max_bytes) = (path.into(), max_bytes.unwrap_or(u64::MAX));
        let call = HarnessCall::ReadFile {
            path,
            max_bytes,
            offset: 0,
        };
        self.send(owner, id, call).await
    }

    /// [`HarnessCall::WriteFile`]: write `content` to a workspace file.
    async fn write_file(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        content: &[u8],
        overwrite: bool,
    ) -> Result<Sexp, ToolError> {
        let (path, content) = (path.into(), content.to_vec());
        let call = HarnessCall::WriteFile {
            path,
            content,
            overwrite,
        };
        self.send(owner, id, call).await
    }

    /// [`HarnessCall::InstallPackages`] from the configured repository.
    async fn install_packages(
        &self,
        owner: &str,
        id: &str,
        packages: &[String],
    ) -> Result<ExecReport, ToolError> {
        let repository = self.manager().config().package_repository.clone();
        let packages = packages.to_vec();
        let call = HarnessCall::InstallPackages {
            packages,
            repository,
        };
        self.send(owner, id, call).await
    }
}

impl HarnessCalls for SessionManager {
    fn manager(&self) -> &SessionManager {
        self
    }
}
