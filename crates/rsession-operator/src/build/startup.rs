//! What the session pod's R process runs, all of it in the container's command
//! ([`r_expression`]): the package preload, the egress check, the R harness (pool pods only,
//! from their pool's ConfigMap) and Rserve, configured by `run.Rserve()` arguments. Rserve's
//! password file comes from a pod annotation through a downward API volume (`build::pod`).
//!
//! Why the pod reads nothing from a Secret or ConfigMap of its session: the kubelet's first read
//! of an object a new pod mounts races the API server's node authorizer, whose graph learns of a
//! newly bound pod a moment after the kubelet may (kubernetes/kubernetes#128910, #133269). When
//! the kubelet loses, its read is refused, its object cache waits out a 1 s sync and the mount is
//! retried 500 ms later: on the local cluster 1 or 2 of 20 cold starts took 1.5 s longer for it
//! (docs/benchmarks.md, 2026-12-01 17:14). emptyDir and downward API volumes are filled from the
//! pod object the kubelet already holds, with no read to race.
//!
//! Rserve configuration keys follow the Rserve documentation (rforge.net/Rserve/doc.html,
//! "Configuration"); Rserve 1.8's `run.Rserve(..., config.file)` takes them as named arguments.

use rsession_api::well_known as wk;

/// Key of the MCP frontend's R harness ([`rsession_harness::HARNESS_R`]) in a pool's harness
/// ConfigMap (`pool::build::build_harness_config_map`): the Rserve parent of a pool pod sources it
/// before it listens, so a claimed session's first connection skips installing it. A cold
/// session's pod does without: its frontend installs the harness on the first connection
/// (about 13 ms), which is why a cold pod needs no ConfigMap.
pub const HARNESS_KEY: &str = "harness.R";
/// Mount path of the pool's harness ConfigMap in a pool pod.
pub const HARNESS_DIR: &str = "/etc/rserve/harness";
/// Mount path of the downward API volume holding Rserve's password file
/// ([`wk::SECRET_KEY_PASSWORD_FILE`], from [`wk::ANNOTATION_RSERVE_PWDFILE`]).
pub const CREDENTIALS_DIR: &str = "/etc/rserve/credentials";
/// Environment variable that turns the egress check on: seconds to wait for egress to be
/// denied. The pod builder sets it (see `build::pod::verifies_egress_denied`).
pub const VERIFY_EGRESS_ENV: &str = "RSESSION_VERIFY_EGRESS_DENIED_SECS";
/// Longest R expression R's front end runs from `-e` options, in bytes (R 4.2
/// `src/unix/system.c`: longer input is dropped with a warning).
pub const R_EXPRESSION_MAX: usize = 10_000;

/// Rserve's configuration, as `(key, value)` pairs: remote connections with required plaintext
/// authentication against the password file, no file transfer commands, no remote shutdown,
/// non-interactive, UTF-8, working directories under `/tmp`. No `source` or `eval` entries:
/// `run.Rserve()` ignores them (Rserve 1.8-11 NEWS), so [`r_expression`] runs the scripts first.
pub fn rserve_config() -> Vec<(&'static str, String)> {
    [
        ("remote", "enable".to_owned()),
        ("port", wk::RSERVE_PORT.to_string()),
        ("auth", "required".to_owned()),
        ("plaintext", "enable".to_owned()),
        (
            "pwdfile",
            format!("{CREDENTIALS_DIR}/{}", wk::SECRET_KEY_PASSWORD_FILE),
        ),
        ("fileio", "disable".to_owned()),
        ("shutdown", "disable".to_owned()),
        ("interactive", "no".to_owned()),
        ("encoding", "utf8".to_owned()),
        ("workdir", format!("{}/Rserv", wk::TMP_PATH)),
    ]
    .to_vec()
}

/// `Rserve::run.Rserve(...)` with [`rserve_config`], in the foreground of the R process that
/// preloaded (forked connections inherit what it loaded). `config.file = '/dev/null'`: no
/// configuration file of the image applies.
pub fn run_rserve() -> String {
    let args: Vec<String> = rserve_config()
        .into_iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .collect();
    format!(
        "Rserve::run.Rserve(config.file = '/dev/null', {})",
        args.join(", ")
    )
}

/// The R expression the pod's R process runs (`R -e`): [`preload_script`] of
/// `preload_packages`, then [`verify_egress_script`] (which does nothing unless
/// [`VERIFY_EGRESS_ENV`] is set), then, with `harness`, the R harness from [`HARNESS_DIR`]
/// ([`rsession_harness::preload_r`]), then [`run_rserve`]. The check runs after the preload so
/// that R start-up and preloading overlap the NetworkPolicy enforcer's work, and before the
/// harness, which replaces `quit()` (the check quits with status 1 when egress is open).
pub fn r_expression(preload_packages: &[String], harness: bool) -> String {
    let harness = if harness {
        rsession_harness::preload_r(
            &format!("{HARNESS_DIR}/{HARNESS_KEY}"),
            rsession_harness::Preload::Compiled,
        )
    } else {
        String::new()
    };
    format!(
        "{}{}{harness}\n{}\n",
        preload_script(preload_packages),
        verify_egress_script(),
        run_rserve()
    )
}

/// The package preload: attaches each of `packages` that is installed (quietly; a missing package is
/// skipped, not an error) so forked connections inherit them.
pub fn preload_script(packages: &[String]) -> String {
    let quoted: Vec<String> = packages
        .iter()
        .filter(|p| is_r_package_name(p))
        .map(|p| format!("\"{p}\""))
        .collect();
    format!(
        "# rsession-operator: package preload, run once by the Rserve parent process.\n\
         local({{\n  \
           for (p in c({list})) {{\n    \
             if (requireNamespace(p, quietly = TRUE)) {{\n      \
               suppressPackageStartupMessages(library(p, character.only = TRUE))\n    \
             }}\n  \
           }}\n\
         }})\n",
        list = quoted.join(", ")
    )
}

/// The egress check, run by the Rserve parent just before Rserve listens. When
/// [`VERIFY_EGRESS_ENV`] is set, it waits until a TCP connect to the Kubernetes API Service
/// (`KUBERNETES_SERVICE_HOST`:`KUBERNETES_SERVICE_PORT`, set in every pod even with
/// `enableServiceLinks: false`), which the session's NetworkPolicy denies, is refused or times
/// out (1 s), retrying every 0.25 s; if it still connects after that many seconds it writes
/// "egress is not denied: ..." to stderr and quits with status 1, so the pod fails with that
/// message. R's `socketConnection` is IPv4-only, so an IPv6 API address is reported and skipped.
pub fn verify_egress_script() -> String {
    format!(
        r#"# rsession-operator: egress check, run by the Rserve parent before Rserve listens.
# A NetworkPolicy enforcer programs a new pod's rules a moment after the pod starts; until then
# its egress is open. No session may start in that window, so wait here until a destination the
# policy denies (the Kubernetes API Service) refuses a connection, and fail the pod if it never
# does (no enforcement for this pod).
local({{
  secs <- suppressWarnings(as.numeric(Sys.getenv("{env}")))
  if (is.na(secs)) return(invisible())
  host <- Sys.getenv("KUBERNETES_SERVICE_HOST")
  port <- suppressWarnings(as.integer(Sys.getenv("KUBERNETES_SERVICE_PORT")))
  if (!nzchar(host) || is.na(port)) {{
    message("rsession: egress check skipped: KUBERNETES_SERVICE_HOST/PORT are not set")
    return(invisible())
  }}
  if (grepl(":", host, fixed = TRUE)) {{
    message("rsession: egress check skipped: R sockets cannot reach the IPv6 address ", host)
    return(invisible())
  }}
  accepted <- function() tryCatch({{
    con <- suppressWarnings(socketConnection(host, port, blocking = TRUE, open = "r+b", timeout = 1))
    close(con)
    TRUE
  }}, error = function(e) FALSE)
  deadline <- Sys.time() + secs
  while (accepted()) {{
    if (Sys.time() >= deadline) {{
      message(sprintf(
        "egress is not denied: %s:%d accepted a connection; no NetworkPolicy enforcement for this pod (checked for %g s)",
        host, port, secs))
      quit(save = "no", status = 1)
    }}
    Sys.sleep(0.25)
  }}
}})
"#,
        env = VERIFY_EGRESS_ENV
    )
}

/// R package names: letters, digits and '.', starting with a letter (Writing R Extensions 1.1.1).
fn is_r_package_name(p: &str) -> bool {
    p.starts_with(|c: char| c.is_ascii_alphabetic())
        && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Vec<String> {
        rserve_config()
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect()
    }

    #[test]
    fn rserve_requires_authentication_from_the_password_file() {
        let lines = config();
        assert!(lines.contains(&"auth required".to_owned()));
        assert!(lines.contains(&"plaintext enable".to_owned()));
        assert!(lines.contains(&"pwdfile /etc/rserve/credentials/rserve.pwd".to_owned()));
    }

    #[test]
    fn rserve_disables_file_transfer_and_remote_shutdown() {
        let lines = config();
        assert!(lines.contains(&"fileio disable".to_owned()));
        assert!(lines.contains(&"shutdown disable".to_owned()));
    }

    #[test]
    fn rserve_listens_remotely_on_6311_with_workdir_under_tmp() {
        let lines = config();
        assert!(lines.contains(&"remote enable".to_owned()));
        assert!(lines.contains(&"port 6311".to_owned()));
        assert!(lines.contains(&"workdir /tmp/Rserv".to_owned()));
        assert!(lines.contains(&"interactive no".to_owned()));
        assert!(lines.contains(&"encoding utf8".to_owned()));
    }

    #[test]
    fn rserve_reads_no_configuration_file_and_leaves_scripts_to_the_expression() {
        assert!(run_rserve().starts_with("Rserve::run.Rserve(config.file = '/dev/null', "));
        assert!(
            config()
                .iter()
                .all(|l| !l.starts_with("source") && !l.starts_with("eval"))
        );
    }

    #[test]
    fn expression_preloads_then_checks_egress_then_loads_the_harness_then_runs_rserve() {
        let packages = ["dplyr".to_owned()];
        let e = r_expression(&packages, true);
        let at = |part: &str| e.find(part).unwrap_or_else(|| panic!("{part:?} in {e}"));
        let harness = rsession_harness::preload_r(
            "/etc/rserve/harness/harness.R",
            rsession_harness::Preload::Compiled,
        );
        assert!(at(&preload_script(&packages)) < at(&verify_egress_script()));
        assert!(at(&verify_egress_script()) < at(&harness));
        assert!(at(&harness) < at(&run_rserve()));
        assert!(!r_expression(&packages, false).contains(&harness));
    }

    #[test]
    fn expression_fits_the_r_front_end_limit_with_a_long_preload_list() {
        let packages: Vec<String> = (0..100).map(|i| format!("package{i:03}")).collect();
        let e = r_expression(&packages, true);
        assert!(e.len() < R_EXPRESSION_MAX, "{} bytes", e.len());
    }

    #[test]
    fn preload_skips_names_that_are_not_r_packages() {
        let script = preload_script(&[
            "dplyr".into(),
            "x\"); system(\"id".into(),
            "data.table".into(),
        ]);
        assert!(script.contains("c(\"dplyr\", \"data.table\")"), "{script}");
        assert!(!script.contains("system"), "{script}");
    }

    #[test]
    fn egress_check_runs_only_when_the_operator_sets_its_variable() {
        let script = verify_egress_script();
        assert!(
            script.contains(r#"Sys.getenv("RSESSION_VERIFY_EGRESS_DENIED_SECS")"#)
                && script.contains("if (is.na(secs)) return(invisible())"),
            "{script}"
        );
    }

    #[test]
    fn egress_check_connects_to_the_kubernetes_api_service_with_a_timeout() {
        let script = verify_egress_script();
        assert!(script.contains(r#"Sys.getenv("KUBERNETES_SERVICE_HOST")"#));
        assert!(script.contains(r#"Sys.getenv("KUBERNETES_SERVICE_PORT")"#));
        assert!(script.contains(
            "socketConnection(host, port, blocking = TRUE, open = \"r+b\", timeout = 1)"
        ));
        assert!(
            script.contains("close(con)"),
            "an accepted probe connection is closed"
        );
    }

    #[test]
    fn egress_still_open_at_the_deadline_fails_the_pod_with_a_clear_message() {
        let script = verify_egress_script();
        assert!(script.contains(
            "egress is not denied: %s:%d accepted a connection; no NetworkPolicy enforcement for this pod"
        ));
        assert!(
            script.contains(r#"quit(save = "no", status = 1)"#),
            "{script}"
        );
    }
}
