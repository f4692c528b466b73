//! The fixture's error type.

use std::path::PathBuf;

/// Why the control plane could not be started or used.
///
/// Every variant that concerns a running binary carries the tail of that binary's log, so a
/// failing test prints the apiserver's own explanation next to the assertion.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes or etcd binary is missing from the cache folder.
    #[error(
        "{name} not found at {}: build the binaries with e2e/local/build-binaries.sh \
         (or point RSESSION_K8S_BIN at a folder holding etcd, kube-apiserver, \
         kube-controller-manager and kubectl v1.33.x)",
        path.display()
    )]
    MissingBinary {
        /// Binary name, for example `kube-apiserver`.
        name: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },

    /// A file-system or process-spawn operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the fixture was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// `openssl` failed while generating the test PKI.
    #[error("openssl {args} failed: {stderr}")]
    Openssl {
        /// The arguments given to openssl.
        args: String,
        /// What openssl printed on stderr.
        stderr: String,
    },

    /// A control-plane binary exited while the fixture expected it to run.
    #[error("{name} exited ({status}) during startup; last lines of {}:\n{tail}", log.display())]
    Exited {
        /// Binary name.
        name: &'static str,
        /// Exit status as printed by the OS.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },

    /// A readiness condition was not met in time.
    #[error("timed out after {seconds} s waiting for {what}; logs in {}:\n{tails}", dir.display())]
    Timeout {
        /// The awaited condition, in words.
        what: String,
        /// How long the fixture waited, in seconds.
        seconds: u64,
        /// The control plane's temp folder (logs, certificates, kubeconfig).
        dir: PathBuf,
        /// The last lines of every log.
        tails: String,
    },

    /// A condition on the API was not met in time (no process logs involved).
    #[error("timed out after {seconds} s waiting for {what}")]
    Wait {
        /// The awaited condition, in words.
        what: String,
        /// How long the fixture waited, in seconds.
        seconds: u64,
    },

    /// The kubeconfig could not be written or loaded.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),

    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kube {
        /// What the fixture was doing.
        context: String,
        /// The client error (an apiserver `Status` for rejected requests).
        #[source]
        source: kube::Error,
    },

    /// A manifest file could not be parsed or had no apiVersion/kind/name.
    #[error("manifest {}: {message}", path.display())]
    Manifest {
        /// The YAML file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },

    /// `kubectl` exited non-zero.
    #[error("kubectl {args} failed ({status}): {stderr}")]
    Kubectl {
        /// The arguments given to kubectl.
        args: String,
        /// Exit status.
        status: String,
        /// What kubectl printed on stderr.
        stderr: String,
    },

    /// The shared control plane failed to start earlier in this test binary.
    #[error("the shared control plane failed to start: {0}")]
    Shared(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn kube(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let context = context.into();
        move |source| Error::Kube { context, source }
    }
}

/// Result alias for the fixture.
pub type Result<T, E = Error> = std::result::Result<T, E>;
