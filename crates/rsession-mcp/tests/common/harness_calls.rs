//! Typed shortcuts over [`SessionManager::call`] for manager-level tests:
//! the file and package entry points without going through MCP.

use rserve::Sexp;
use rsession_mcp::errors::ToolError;
use rsession_mcp::harness::HarnessCall;
use rsession_mcp::session::{ExecReport, SessionManager, Watch};

/// One harness entry point per method, each answering its R value (or the
/// evaluation report for installs); errors are those of
/// [`SessionManager::call`].
pub trait HarnessCalls {
    /// [`HarnessCall::ListFiles`]: files under `path` (relative to the workspace).
    async fn list_files(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<Sexp, ToolError>;
    /// [`HarnessCall::ReadFile`]: up to `max_bytes` of a workspace file.
    async fn read_file(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        max_bytes: Option<u64>,
    ) -> Result<Sexp, ToolError>;
    /// [`HarnessCall::WriteFile`]: write `content` to a workspace file.
    async fn write_file(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        content: &[u8],
        overwrite: bool,
    ) -> Result<Sexp, ToolError>;
    /// [`HarnessCall::InstallPackages`] from the configured repository.
    async fn install_packages(
        &self,
        owner: &str,
        id: &str,
        packages: &[String],
    ) -> Result<ExecReport, ToolError>;
}

impl HarnessCalls for SessionManager {
    async fn list_files(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        recursive: bool,
    ) -> Result<Sexp, ToolError> {
        let call = HarnessCall::ListFiles {
            path: path.into(),
            recursive,
        };
        self.call(owner, id, call, None, &Watch::default())
            .await?
            .try_into()
    }

    async fn read_file(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        max_bytes: Option<u64>,
    ) -> Result<Sexp, ToolError> {
        let max_bytes = max_bytes.unwrap_or(u64::MAX);
        let call = HarnessCall::ReadFile {
            path: path.into(),
            max_bytes,
            offset: 0,
        };
        self.call(owner, id, call, None, &Watch::default())
            .await?
            .try_into()
    }

    async fn write_file(
        &self,
        owner: &str,
        id: &str,
        path: &str,
        content: &[u8],
        overwrite: bool,
    ) -> Result<Sexp, ToolError> {
        let content = content.to_vec();
        let call = HarnessCall::WriteFile {
            path: path.into(),
            content,
            overwrite,
        };
        self.call(owner, id, call, None, &Watch::default())
            .await?
            .try_into()
    }

    async fn install_packages(
        &self,
        owner: &str,
        id: &str,
        packages: &[String],
    ) -> Result<ExecReport, ToolError> {
        let repository = self.config().package_repository.clone();
        let call = HarnessCall::InstallPackages {
            packages: packages.to_vec(),
            repository,
        };
        self.call(owner, id, call, None, &Watch::default())
            .await?
            .try_into()
    }
}
