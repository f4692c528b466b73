//! Prints a CRD of the RSession API as YAML on stdout: `rsessions` (the default) or
//! `rsessionpools`.
//!
//! `cargo run -p rsession-api --bin crdgen > crds/rsession.dev_rsessions.yaml`
//! `cargo run -p rsession-api --bin crdgen rsessionpools > crds/rsession.dev_rsessionpools.yaml`

use std::io::Write;

fn main() -> std::process::ExitCode {
    let which = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "rsessions".into());
    let rendered = match which.as_str() {
        "rsessions" => rsession_api::crd_yaml(),
        "rsessionpools" => rsession_api::pool_crd_yaml(),
        other => {
            eprintln!("crdgen: unknown CRD {other:?}; expected rsessions or rsessionpools");
            return std::process::ExitCode::from(2);
        }
    };
    match rendered {
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
            eprintln!("crdgen: cannot render the {which} CRD as YAML: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
