//! Writes `config/namespace/sessions.yaml`, `config/manager/operator.yaml` and
//! `config/mcp/mcp.yaml` from the chart (see `rsession_chart_tests::kustomize`). Run after
//! changing `charts/rsession`; the chart tests fail until the committed files match.

use std::process::ExitCode;

use rsession_chart_tests::{Tools, kustomize, repo_root};

fn main() -> ExitCode {
    let written = Tools::locate().and_then(|tools| kustomize::generate(&tools));
    match written {
        Ok(files) => {
            for file in files {
                let path = repo_root().join(&file.path);
                if let Err(e) = std::fs::write(&path, &file.text) {
                    eprintln!("kustomize-gen: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", file.path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kustomize-gen: {e}");
            ExitCode::FAILURE
        }
    }
}
