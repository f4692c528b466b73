//! Prints the RSession CRD as YAML on stdout.
//!
//! `cargo run -p rsession-api --bin crdgen > crds/rsession.dev_rsessions.yaml`

use std::io::Write;

fn main() -> std::process::ExitCode {
    match rsession_api::crd_yaml() {
        Ok(yaml) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(yaml.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crdgen: cannot render the RSession CRD as YAML: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
