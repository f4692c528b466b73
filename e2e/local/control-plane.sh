#!/usr/bin/env bash
# Starts the from-source control plane (etcd, kube-apiserver, kube-controller-manager on
# loopback, fresh temp folder) in the foreground, exactly as the Rust test fixture
# (crates/rsession-testenv) starts it for tests. Prints `export KUBECONFIG=...` on stdout;
# Ctrl-C stops it and removes the temp folder.
#
# Usage: e2e/local/control-plane.sh [--crds crds/] [--kubeconfig PATH] [--keep]
#                                   [--no-controller-manager]
# Environment: RSESSION_K8S_BIN (binary folder; default: the build-binaries.sh cache),
#              CARGO_TARGET_DIR (as for any cargo build).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ -z "${RSESSION_K8S_BIN:-}" ]; then
  # Builds only what is missing; prints the cache folder last.
  RSESSION_K8S_BIN="$("$here/build-binaries.sh" etcd kube-apiserver kube-controller-manager kubectl | tail -n 1)"
  export RSESSION_K8S_BIN
fi
cd "$root"
exec cargo run --quiet -p rsession-testenv --bin rsession-control-plane -- "$@"
