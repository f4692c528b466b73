//! The control plane's certificates and keys, generated with the `openssl` command line.
//!
//! One CA signs the apiserver's serving certificate (SANs `127.0.0.1`, `localhost` and the
//! in-cluster `kubernetes.default.svc` names) and the client certificates; Kubernetes takes the
//! user from the subject CN and the groups from the O fields. The service-account signing key
//! pair signs and verifies bound service-account tokens. All keys are ECDSA P-256 (fast to make).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
";

/// A PEM certificate and its PKCS#8 PEM private key on disk.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Every certificate and key the control plane uses, under `<dir>/pki`.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA (also the `--client-ca-file` and the kubeconfig's certificate authority).
    pub ca: KeyPair,
    /// The apiserver's serving certificate.
    pub apiserver: KeyPair,
    /// Client certificate for the test's admin user (`O=system:masters`).
    pub admin: KeyPair,
    /// Client certificate for kube-controller-manager (`CN=system:kube-controller-manager`,
    /// bound by the bootstrap RBAC policy).
    pub controller_manager: KeyPair,
    /// Service-account token signing key (private).
    pub sa_key: PathBuf,
    /// Service-account token verification key (public).
    pub sa_pub: PathBuf,
}

/// The admin user's name (subject CN of its client certificate).
pub const ADMIN_USER: &str = "rsession-testenv-admin";

impl Pki {
    /// Generates the PKI into `<dir>/pki`.
    ///
    /// # Errors
    /// [`Error::Openssl`] with openssl's stderr when a command fails, [`Error::Io`] when it
    /// cannot be run or the folder cannot be written.
    pub fn generate(dir: &Path) -> Result<Pki> {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).map_err(Error::io(format!("create {}", pki.display())))?;
        let cnf = pki.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).map_err(Error::io("write openssl.cnf"))?;

        let ca = pair(&pki, "ca");
        issue(&cnf, &ca, "/CN=rsession-testenv-ca", "ca", None)?;
        let apiserver = pair(&pki, "apiserver");
        issue(&cnf, &apiserver, "/CN=kube-apiserver", "server", Some(&ca))?;
        let admin = pair(&pki, "admin");
        let admin_subject = format!("/O=system:masters/CN={ADMIN_USER}");
        issue(&cnf, &admin, &admin_subject, "client", Some(&ca))?;
        let controller_manager = pair(&pki, "kube-controller-manager");
        issue(
            &cnf,
            &controller_manager,
            "/CN=system:kube-controller-manager",
            "client",
            Some(&ca),
        )?;

        let sa_key = pki.join("sa.key");
        let sa_pub = pki.join("sa.pub");
        openssl(&[
            "genpkey".as_ref(),
            "-algorithm".as_ref(),
            "EC".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:prime256v1".as_ref(),
            "-out".as_ref(),
            sa_key.as_os_str(),
        ])?;
        openssl(&[
            "pkey".as_ref(),
            "-in".as_ref(),
            sa_key.as_os_str(),
            "-pubout".as_ref(),
            "-out".as_ref(),
            sa_pub.as_os_str(),
        ])?;
        Ok(Pki {
            ca,
            apiserver,
            admin,
            controller_manager,
            sa_key,
            sa_pub,
        })
    }
}

fn pair(dir: &Path, name: &str) -> KeyPair {
    KeyPair {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    }
}

/// Creates a key and a certificate for `subject` with the extensions of section `ext`, signed by
/// `ca` (self-signed when `None`), valid for 7 days.
fn issue(cnf: &Path, out: &KeyPair, subject: &str, ext: &str, ca: Option<&KeyPair>) -> Result<()> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "req".as_ref(),
        "-config".as_ref(),
        cnf.as_os_str(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:prime256v1".as_ref(),
        "-nodes".as_ref(),
        "-days".as_ref(),
        "7".as_ref(),
        "-subj".as_ref(),
        subject.as_ref(),
        "-extensions".as_ref(),
        ext.as_ref(),
        "-keyout".as_ref(),
        out.key.as_os_str(),
        "-out".as_ref(),
        out.cert.as_os_str(),
    ];
    if let Some(ca) = ca {
        args.extend([
            "-CA".as_ref(),
            ca.cert.as_os_str(),
            "-CAkey".as_ref(),
            ca.key.as_os_str(),
        ]);
    }
    openssl(&args)
}

fn openssl(args: &[&std::ffi::OsStr]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .map_err(Error::io("run openssl (install the openssl package)"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Openssl {
            args: args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
