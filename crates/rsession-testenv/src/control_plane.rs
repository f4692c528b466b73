//! Starting, using and stopping the control plane.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::{Api, Client, Config};

use crate::bins::Binaries;
use crate::error::{Error, Result};
use crate::pki::{ADMIN_USER, KeyPair, Pki};
use crate::process::{Daemon, KEEP_MARKER, Watchdog, reap_strays, tail};

/// How to start a [`ControlPlane`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Start kube-controller-manager (garbage collector, namespace lifecycle, service-account
    /// and token controllers). Default `true`.
    pub controller_manager: bool,
    /// Run etcd with `--unsafe-no-fsync`: the data folder is thrown away after the run, so
    /// durability buys nothing and fsync dominates write latency. Default `true`.
    pub etcd_unsafe_no_fsync: bool,
    /// Extra kube-apiserver flags (`--name=value`), appended after the fixture's own.
    pub apiserver_args: Vec<String>,
    /// How long startup may take before [`Error::Timeout`]. Default 120 s (2 shared cores).
    pub startup_timeout: Duration,
    /// Write an audit log (level `Metadata`, JSON lines) read by [`ControlPlane::audit_events`].
    /// Default `true`.
    pub audit: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controller_manager: true,
            etcd_unsafe_no_fsync: true,
            apiserver_args: Vec::new(),
            startup_timeout: Duration::from_secs(120),
            audit: true,
        }
    }
}

/// The processes of one control plane; dropping it kills them and lets the watchdog remove
/// the temp folder.
#[derive(Debug)]
struct Processes {
    daemons: Vec<Daemon>,
    watchdog: Watchdog,
}

impl Processes {
    fn add(&mut self, daemon: Daemon) -> Result<()> {
        let registered = self.watchdog.guard(&daemon);
        self.daemons.push(daemon);
        registered
    }

    fn check_running(&mut self) -> Result<()> {
        self.daemons.iter_mut().try_for_each(Daemon::check_running)
    }

    fn tails(&self, lines: usize) -> String {
        self.daemons
            .iter()
            .map(|d| {
                format!(
                    "----- {} ({}), last {lines} lines -----\n{}\n",
                    d.name,
                    d.log.display(),
                    tail(&d.log, lines)
                )
            })
            .collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for daemon in self.daemons.iter_mut().rev() {
            daemon.kill();
        }
        self.watchdog.finish();
    }
}

/// A running etcd + kube-apiserver (+ kube-controller-manager) on loopback, built from the
/// pinned sources by `e2e/local/build-binaries.sh`.
///
/// The apiserver runs with `--authorization-mode=Node,RBAC`, the default admission plugins plus
/// `NodeRestriction` and `PodSecurity`, and serves TLS from a test CA; the admin client
/// certificate is in group `system:masters`. There is no kubelet or scheduler: pods stay
/// `Pending`.
///
/// Dropping the value kills every process group and removes the temp folder (kept when
/// [`ControlPlane::mark_failed`] was called or `RSESSION_TESTENV_KEEP=1`). A value that is never
/// dropped (a `static`, see [`ControlPlane::shared`]) is torn down by a watchdog when the test
/// process exits.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    bins: Binaries,
    pki: Pki,
    kubeconfig: PathBuf,
    config: Config,
    controller_manager: bool,
    processes: Mutex<Processes>,
}

/// Audit policy: every request at `Metadata` level (who, verb, resource, response code), once
/// per request (no `RequestReceived` stage).
const AUDIT_POLICY: &str = "\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
";

const AUDIT_LOG: &str = "audit.log";

static SHARED: tokio::sync::OnceCell<std::result::Result<ControlPlane, String>> =
    tokio::sync::OnceCell::const_new();

fn free_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(Error::io("find a free loopback port"))
}

fn arg(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

fn path_arg(name: &str, value: &Path) -> String {
    arg(name, value.display())
}

impl ControlPlane {
    /// The control plane shared by every test of this test binary, started on first use.
    /// Tests isolate themselves with namespaces ([`ControlPlane::with_temp_ns`]).
    ///
    /// # Errors
    /// [`Error::Shared`] with the startup error's text, for this and every later caller.
    pub async fn shared() -> Result<&'static ControlPlane> {
        let started = SHARED
            .get_or_init(|| async {
                ControlPlane::start(Options::default())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        started.as_ref().map_err(|e| Error::Shared(e.clone()))
    }

    /// [`ControlPlane::shared`] with the repository's generated CRDs (`crds/`) installed and
    /// established: the starting point of tests that create RSessions.
    ///
    /// # Errors
    /// As [`ControlPlane::shared`] and [`crate::apply_crds`].
    pub async fn shared_with_crds() -> Result<&'static ControlPlane> {
        let cp = Self::shared().await?;
        crate::apply_crds(&cp.client()?, &crate::workspace_root().join("crds")).await?;
        Ok(cp)
    }

    /// Starts a new control plane in a fresh temp folder under `$TMPDIR/rsession-testenv`.
    ///
    /// # Errors
    /// [`Error::MissingBinary`] when the binaries are not built; [`Error::Exited`] or
    /// [`Error::Timeout`] (with log tails) when a binary dies or does not become ready.
    pub async fn start(options: Options) -> Result<ControlPlane> {
        let started = Instant::now();
        let bins = Binaries::locate();
        let mut needed = vec!["etcd", "kube-apiserver", "kubectl"];
        if options.controller_manager {
            needed.push("kube-controller-manager");
        }
        bins.require(&needed)?;

        let base = std::env::temp_dir().join("rsession-testenv");
        std::fs::create_dir_all(&base).map_err(Error::io(format!("create {}", base.display())))?;
        reap_strays(&base);
        let dir = tempfile::Builder::new()
            .prefix("cp-")
            .tempdir_in(&base)
            .map_err(Error::io("create the control plane's temp folder"))?
            .keep();
        let mut processes = Processes {
            daemons: Vec::new(),
            watchdog: Watchdog::spawn(&dir)?,
        };
        if std::env::var_os("RSESSION_TESTENV_KEEP").is_some_and(|v| v == "1") {
            mark_keep(&dir);
        }

        let pki = Pki::generate(&dir)?;
        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let api_port = free_port()?;

        let mut etcd_args = vec![
            arg("name", "testenv"),
            path_arg("data-dir", &dir.join("etcd")),
            arg(
                "listen-client-urls",
                format!("http://127.0.0.1:{etcd_port}"),
            ),
            arg(
                "advertise-client-urls",
                format!("http://127.0.0.1:{etcd_port}"),
            ),
            arg("listen-peer-urls", format!("http://127.0.0.1:{peer_port}")),
            arg(
                "initial-advertise-peer-urls",
                format!("http://127.0.0.1:{peer_port}"),
            ),
            arg(
                "initial-cluster",
                format!("testenv=http://127.0.0.1:{peer_port}"),
            ),
            arg("log-level", "warn"),
        ];
        if options.etcd_unsafe_no_fsync {
            etcd_args.push("--unsafe-no-fsync".into());
        }
        processes.add(Daemon::spawn(
            "etcd",
            &bins.path("etcd"),
            &etcd_args,
            dir.join("etcd.log"),
        )?)?;

        let mut api_args = vec![
            arg("etcd-servers", format!("http://127.0.0.1:{etcd_port}")),
            arg("bind-address", "127.0.0.1"),
            arg("advertise-address", "127.0.0.1"),
            arg("secure-port", api_port),
            // No kubelet runs pods here, so the `kubernetes` Service needs no endpoints (and
            // Endpoints may not hold a loopback address).
            arg("endpoint-reconciler-type", "none"),
            path_arg("cert-dir", &dir.join("apiserver-certs")),
            path_arg("tls-cert-file", &pki.apiserver.cert),
            path_arg("tls-private-key-file", &pki.apiserver.key),
            path_arg("client-ca-file", &pki.ca.cert),
            arg(
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ),
            path_arg("service-account-key-file", &pki.sa_pub),
            path_arg("service-account-signing-key-file", &pki.sa_key),
            arg("service-cluster-ip-range", "10.96.0.0/16"),
            arg("authorization-mode", "Node,RBAC"),
            arg("enable-admission-plugins", "NodeRestriction,PodSecurity"),
            arg("allow-privileged", "true"),
            arg("profiling", "false"),
            arg("shutdown-delay-duration", "0s"),
            arg("log-flush-frequency", "1s"),
            arg("v", "1"),
        ];
        if options.audit {
            let policy = dir.join("audit-policy.yaml");
            std::fs::write(&policy, AUDIT_POLICY).map_err(Error::io("write the audit policy"))?;
            api_args.extend([
                path_arg("audit-policy-file", &policy),
                path_arg("audit-log-path", &dir.join(AUDIT_LOG)),
                arg("audit-log-format", "json"),
                arg("audit-log-mode", "blocking"),
            ]);
        }
        api_args.extend(options.apiserver_args.iter().cloned());
        processes.add(Daemon::spawn(
            "kube-apiserver",
            &bins.path("kube-apiserver"),
            &api_args,
            dir.join("kube-apiserver.log"),
        )?)?;

        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&kubeconfig, &server, &pki.ca.cert, ADMIN_USER, &pki.admin)?;
        let config = load_kubeconfig(&kubeconfig).await?;
        let processes = Mutex::new(processes);
        let client = Client::try_from(config.clone())
            .map_err(Error::kube("build a client from the admin kubeconfig"))?;

        wait_until(
            &processes,
            &dir,
            "kube-apiserver /readyz",
            options.startup_timeout,
            || {
                let client = client.clone();
                async move {
                    let request = http::Request::get("/readyz").body(Vec::new());
                    match request {
                        Ok(request) => client.request_text(request).await.is_ok_and(|t| t == "ok"),
                        Err(_) => false,
                    }
                }
            },
        )
        .await?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis(),
            "kube-apiserver ready"
        );

        if options.controller_manager {
            let kcm_kubeconfig = dir.join("kube-controller-manager.kubeconfig");
            write_kubeconfig(
                &kcm_kubeconfig,
                &server,
                &pki.ca.cert,
                "system:kube-controller-manager",
                &pki.controller_manager,
            )?;
            let kcm_args = vec![
                path_arg("kubeconfig", &kcm_kubeconfig),
                path_arg("authentication-kubeconfig", &kcm_kubeconfig),
                path_arg("authorization-kubeconfig", &kcm_kubeconfig),
                arg("bind-address", "127.0.0.1"),
                arg("secure-port", free_port()?),
                path_arg("cert-dir", &dir.join("kcm-certs")),
                arg("leader-elect", "false"),
                arg("use-service-account-credentials", "true"),
                path_arg("service-account-private-key-file", &pki.sa_key),
                path_arg("root-ca-file", &pki.ca.cert),
                path_arg("cluster-signing-cert-file", &pki.ca.cert),
                path_arg("cluster-signing-key-file", &pki.ca.key),
                arg("controllers", "*"),
                arg("kube-api-qps", 100),
                arg("kube-api-burst", 200),
                // No front-proxy here: don't look up the requestheader CA (it would log errors).
                arg("authentication-skip-lookup", "true"),
                arg("log-flush-frequency", "1s"),
                arg("v", "1"),
            ];
            lock(&processes).add(Daemon::spawn(
                "kube-controller-manager",
                &bins.path("kube-controller-manager"),
                &kcm_args,
                dir.join("kube-controller-manager.log"),
            )?)?;
            // The service-account controller creating `default/default` shows the controller
            // manager is up and acting with its own credentials.
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
            wait_until(
                &processes,
                &dir,
                "kube-controller-manager to create ServiceAccount default/default",
                options.startup_timeout,
                || {
                    let accounts = accounts.clone();
                    async move { matches!(accounts.get_opt("default").await, Ok(Some(_))) }
                },
            )
            .await?;
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis(),
            dir = %dir.display(),
            "control plane ready"
        );
        Ok(ControlPlane {
            dir,
            bins,
            pki,
            kubeconfig,
            config,
            controller_manager: options.controller_manager,
            processes,
        })
    }

    /// A new client authenticated as the admin user (`system:masters`). Call it inside the
    /// test's Tokio runtime: a client must not outlive the runtime it was made in.
    ///
    /// # Errors
    /// [`Error::Kube`] when the client cannot be built (TLS setup).
    pub fn client(&self) -> Result<Client> {
        Client::try_from(self.config.clone()).map_err(Error::kube("build the admin client"))
    }

    /// Whether kube-controller-manager runs (garbage collection, namespace deletion).
    pub fn has_controller_manager(&self) -> bool {
        self.controller_manager
    }

    /// The admin client's configuration (clone and adjust it for other identities).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A client that impersonates `user` in `groups` (the `Impersonate-User` and
    /// `Impersonate-Group` headers, authorised by the admin's `system:masters` group), so
    /// requests are authorised by RBAC exactly as for that user.
    ///
    /// # Errors
    /// [`Error::Kube`] when the client cannot be built.
    pub fn impersonate(&self, user: &str, groups: &[&str]) -> Result<Client> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            Some(groups.iter().map(|g| (*g).to_owned()).collect());
        Client::try_from(config)
            .map_err(Error::kube(format!("build a client impersonating {user}")))
    }

    /// A client acting as service account `namespace/name`: user
    /// `system:serviceaccount:<namespace>:<name>` in groups `system:serviceaccounts`,
    /// `system:serviceaccounts:<namespace>` and `system:authenticated`, as the apiserver's
    /// service-account authenticator would assign.
    ///
    /// # Errors
    /// [`Error::Kube`] when the client cannot be built.
    pub fn impersonate_service_account(&self, namespace: &str, name: &str) -> Result<Client> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let ns_group = format!("system:serviceaccounts:{namespace}");
        self.impersonate(
            &user,
            &["system:serviceaccounts", &ns_group, "system:authenticated"],
        )
    }

    /// Path of the admin kubeconfig (for `kubectl`, or for an operator run as a child process).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The apiserver URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        self.config.cluster_url.to_string()
    }

    /// The temp folder holding logs (`*.log`), certificates (`pki/`), kubeconfigs and etcd data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificates and keys.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The binaries in use.
    pub fn binaries(&self) -> &Binaries {
        &self.bins
    }

    /// A `kubectl` command (the cached binary) with `--kubeconfig` set to the admin kubeconfig
    /// and its discovery cache in the temp folder.
    pub fn kubectl_command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bins.path("kubectl"));
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"));
        command.kill_on_drop(true);
        command
    }

    /// Runs `kubectl <args>` and returns its stdout.
    ///
    /// # Errors
    /// [`Error::Kubectl`] with stderr when it exits non-zero; [`Error::Io`] when it cannot run.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let output = self
            .kubectl_command()
            .args(args)
            .output()
            .await
            .map_err(Error::io("run kubectl"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(Error::Kubectl {
                args: args.join(" "),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        }
    }

    /// The apiserver's audit events so far (`audit.k8s.io/v1` `Event` objects as JSON: `verb`,
    /// `user`, `impersonatedUser`, `objectRef`, `responseStatus.code`, ...), oldest first.
    /// Empty when auditing is off. Lines that do not parse (a line being written) are skipped.
    ///
    /// # Errors
    /// [`Error::Io`] when the log cannot be read.
    pub fn audit_events(&self) -> Result<Vec<serde_json::Value>> {
        let path = self.dir.join(AUDIT_LOG);
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path)
            .map_err(Error::io(format!("read {}", path.display())))?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    /// The last `lines` lines of every binary's log, with headers.
    pub fn log_tails(&self, lines: usize) -> String {
        lock(&self.processes).tails(lines)
    }

    /// Keeps the temp folder after teardown (for a post-mortem) and prints where it is and the
    /// log tails to stderr (captured by the test harness and shown with the failure).
    pub fn mark_failed(&self) {
        mark_keep(&self.dir);
        eprintln!(
            "rsession-testenv: control plane folder kept at {}\n{}",
            self.dir.display(),
            self.log_tails(30)
        );
    }

    /// `(binary name, pid)` of every control-plane process (for resource accounting, for
    /// example `/proc/<pid>/stat` in benchmarks).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        lock(&self.processes)
            .daemons
            .iter()
            .map(|d| (d.name, d.pgid()))
            .collect()
    }

    /// Whether every binary is still running.
    ///
    /// # Errors
    /// [`Error::Exited`] for the first one that has exited.
    pub fn check_running(&self) -> Result<()> {
        lock(&self.processes).check_running()
    }
}

fn mark_keep(dir: &Path) {
    let _ = std::fs::write(dir.join(KEEP_MARKER), b"");
}

fn lock(processes: &Mutex<Processes>) -> MutexGuard<'_, Processes> {
    processes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Polls `probe` every 100 ms until it is true, failing early when a binary exits and with
/// [`Error::Timeout`] (carrying log tails) after `timeout`.
async fn wait_until<F, Fut>(
    processes: &Mutex<Processes>,
    dir: &Path,
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        lock(processes).check_running()?;
        if probe().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                seconds: timeout.as_secs(),
                dir: dir.to_owned(),
                tails: lock(processes).tails(30),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a kubeconfig (JSON, which is YAML) for a client-certificate user.
fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    pair: &KeyPair,
) -> Result<()> {
    let name = "rsession-testenv";
    let kubeconfig = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: name.into(),
            cluster: Some(Cluster {
                server: Some(server.into()),
                certificate_authority: Some(ca.display().to_string()),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.into(),
            auth_info: Some(AuthInfo {
                client_certificate: Some(pair.cert.display().to_string()),
                client_key: Some(pair.key.display().to_string()),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: name.into(),
            context: Some(Context {
                cluster: name.into(),
                user: Some(user.into()),
                namespace: None,
                extensions: None,
                other: Default::default(),
            }),
            other: Default::default(),
        }],
        current_context: Some(name.into()),
        ..Kubeconfig::default()
    };
    let text =
        serde_json::to_string_pretty(&kubeconfig).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    std::fs::write(path, text).map_err(Error::io(format!("write {}", path.display())))
}

async fn load_kubeconfig(path: &Path) -> Result<Config> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))
}
