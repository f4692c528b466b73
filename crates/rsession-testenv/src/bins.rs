//! Where the control-plane binaries live.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The Kubernetes release the binaries are built from (`e2e/local/k8s/go.mod`); it matches the
/// oldest release k8s-openapi is pinned to (`v1_33`).
pub const K8S_VERSION: &str = "v1.33.13";

/// Environment variable naming the folder that holds the binaries; it overrides
/// `$RSESSION_CACHE/k8s-<K8S_VERSION>/bin` (default cache `~/.cache/rsession`), the folder that
/// `e2e/local/build-binaries.sh` fills.
pub const BIN_DIR_ENV: &str = "RSESSION_K8S_BIN";

/// A folder holding `etcd`, `kube-apiserver`, `kube-controller-manager` and `kubectl`.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds the folder from [`BIN_DIR_ENV`], else `$RSESSION_CACHE` (else `$HOME/.cache/rsession`)
    /// `/k8s-v1.33.13/bin`. The binaries themselves are checked by [`Binaries::require`].
    pub fn locate() -> Self {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
            return Binaries { dir: dir.into() };
        }
        let cache = std::env::var_os("RSESSION_CACHE")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
                PathBuf::from(home).join(".cache/rsession")
            });
        Binaries {
            dir: cache.join(format!("k8s-{K8S_VERSION}")).join("bin"),
        }
    }

    /// Uses an explicit folder.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Binaries { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one binary (not checked).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Checks that every named binary exists as a file.
    ///
    /// # Errors
    /// [`Error::MissingBinary`] naming `e2e/local/build-binaries.sh` for the first one missing.
    pub fn require(&self, names: &[&'static str]) -> Result<()> {
        for &name in names {
            let path = self.path(name);
            if !path.is_file() {
                return Err(Error::MissingBinary { name, path });
            }
        }
        Ok(())
    }
}
