#!/usr/bin/env bash
# End-to-end run on the local from-source cluster: cluster up, images from debug binaries,
# chart installed, synthetic OMOP PostgreSQL, the Rust suite (e2e/suite: the test files e2e,
# checkpoint, pool, escape, faults and load, each with --ignored --test-threads=1), a summary. Exits non-zero
# when any test fails. NetworkPolicy must be enforced: the policy tests fail (never skip)
# on a cluster without an enforcer.
#
# Usage: e2e/run-e2e.sh [--down] [--bench] [-- <extra cargo test args, e.g. a test name>]
#   --down    stop the cluster afterwards (default: leave it up)
#   --bench   also run the start-up benchmark (writes target-e2e/bench-startup.md)
# Environment:
#   CARGO_TARGET_DIR   where the debug binaries and the suite build (default <repo>/target)
#   RSESSION_E2E_BIN_DIR  take rsession-operator and rsession-mcp from this folder instead of
#                      building debug binaries
#   RSESSION_E2E_RELEASE  Helm release name (default rse2e); namespaces <release>-system and
#                      <release>-sessions
# Needs root (the local cluster, images/build.sh) and everything e2e/local/README.md lists.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
down=0 bench=0 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --down) down=1 ;;
    --bench) bench=1 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "[run-e2e] $*" >&2; }
target="${CARGO_TARGET_DIR:-$repo/target}"
release="${RSESSION_E2E_RELEASE:-rse2e}"
sys_ns="$release-system" sess_ns="$release-sessions"
tag=e2e   # operator and mcp images; other releases on this cluster keep their :dev images

export PATH="${RSESSION_CACHE:-$HOME/.cache/rsession}/k8s-v1.33.13/bin:$PATH"
admin_kc="${RSESSION_CACHE:-$HOME/.cache/rsession}/cluster/admin.kubeconfig"
# A cluster that is already up and Ready is used as it is (up.sh re-run on a running cluster
# waits for a CoreDNS Ready transition newer than its own start, which never comes).
if [ -f "$admin_kc" ] && KUBECONFIG="$admin_kc" kubectl get --raw /readyz >/dev/null 2>&1 \
   && KUBECONFIG="$admin_kc" kubectl wait --for=condition=Ready node --all --timeout=10s >/dev/null 2>&1; then
  log "cluster already up and Ready"
  export KUBECONFIG="$admin_kc"
else
  log "cluster up"
  up_out="$("$repo/e2e/local/up.sh")"   # set -e stops here when the cluster does not come up
  eval "$(grep '^export ' <<<"$up_out")"
  [ -n "${KUBECONFIG:-}" ] || { echo "up.sh printed no KUBECONFIG" >&2; exit 1; }
fi
kubectl get nodes >&2

bins="$(mktemp -d)"; trap 'rm -rf "$bins"' EXIT
if [ -n "${RSESSION_E2E_BIN_DIR:-}" ]; then
  log "binaries from $RSESSION_E2E_BIN_DIR"
  ln -s "$(readlink -f "$RSESSION_E2E_BIN_DIR/rsession-operator")" "$(readlink -f "$RSESSION_E2E_BIN_DIR/rsession-mcp")" "$bins/"
else
  log "debug binaries"
  (cd "$repo" && cargo build -p rsession-operator -p rsession-mcp)
  ln -s "$target/debug/rsession-operator" "$target/debug/rsession-mcp" "$bins/"
fi
log "images: r-sandbox:dev and db-proxy:dev (cached OCI tarballs reused), operator and mcp:$tag from the debug binaries"
"$repo/images/build.sh" r-sandbox db-proxy
RSESSION_BIN_DIR="$bins" RSESSION_IMAGE_TAG="$tag" "$repo/images/build.sh" operator mcp

# Session requests are lowered (defaults 250m CPU, 512Mi): the node has 2 CPUs, and the load
# and fault tests run 10-20 sessions at once.
# Helm installs the chart's crds/ once and never upgrades them; a changed CRD is applied here
# (as on any Helm upgrade of a cluster), before the new binaries that expect it start.
log "CRDs: server-side apply of crds/ (RSession, RSessionPool)"
crd_files=()
for crd in "$repo"/crds/rsession.dev_*.yaml; do crd_files+=(-f "$crd"); done
kubectl apply --server-side --force-conflicts "${crd_files[@]}" >&2
log "chart: release $release in $sys_ns, sessions in $sess_ns"
helm upgrade --install "$release" "$repo/charts/rsession" -n "$sys_ns" --create-namespace --wait --timeout 5m \
  --set operator.image.repository=localhost/rsession/operator,operator.image.tag=$tag,operator.image.pullPolicy=Never \
  --set mcp.image.repository=localhost/rsession/mcp,mcp.image.tag=$tag,mcp.image.pullPolicy=Never \
  --set operator.sessionDefaults.defaultImage=localhost/rsession/r-sandbox:dev \
  --set operator.sessionDefaults.defaultImagePullPolicy=Never \
  --set operator.sessionDefaults.databaseProxy.image=localhost/rsession/db-proxy:dev \
  --set operator.sessionDefaults.databaseProxy.imagePullPolicy=Never \
  --set operator.sessionDefaults.defaultResources.requests.cpu=25m \
  --set operator.sessionDefaults.defaultResources.requests.memory=128Mi \
  --set operator.watchNamespace="$sess_ns",sessions.namespace="$sess_ns" >&2
kubectl -n "$sys_ns" rollout restart deploy >&2   # same tag, new image content
kubectl -n "$sys_ns" rollout status deploy --timeout 180s >&2

# The frontend is reached at its Service's ClusterIP (kube-proxy serves it on the node, and
# it outlives a restart of the frontend pod, which the fault tests do); the suite forwards a
# loopback port to it, so the Host header is 127.0.0.1, which the frontend accepts.
mcp_addr="$(kubectl -n "$sys_ns" get svc -l app.kubernetes.io/component=mcp \
  -o jsonpath='{.items[0].spec.clusterIP}:{.items[0].spec.ports[0].port}')"
case "$mcp_addr" in *[0-9]:[0-9]*) ;; *) echo "no MCP frontend Service address ($mcp_addr)" >&2; exit 1 ;; esac
export RSESSION_E2E_SESSIONS_NS="$sess_ns"
export RSESSION_E2E_SYSTEM_NS="$sys_ns"
export RSESSION_E2E_MCP_ADDR="$mcp_addr"
unset RSESSION_E2E_MCP_URL
export RSESSION_E2E_USER_CLUSTERROLE="$release-rsession-user"
export RSESSION_E2E_COMPONENT_CTL="$repo/e2e/local/component.sh"
# The frontend binary itself, for tests that run a second frontend here (tests/checkpoint.rs).
export RSESSION_E2E_MCP_BIN="$bins/rsession-mcp"
kubectl get clusterrole "$RSESSION_E2E_USER_CLUSTERROLE" >/dev/null

log "synthetic OMOP CDM in PostgreSQL"
pg_out="$("$repo/e2e/local/omop-postgres.sh")"
# eval only what the script promises to print; anything else is a bug there, said plainly here
if bad="$(grep -vE '^export RSESSION_E2E_PG_[A-Z_]+=[^;&|`$()]*$' <<<"$pg_out")"; then
  echo "omop-postgres.sh printed something other than export lines: $bad" >&2; exit 1
fi
eval "$pg_out"

log "suite"
out=/tmp/rsession-e2e.log
: >"$out"
status=0
(cd "$repo" && cargo test -p rsession-e2e --no-run) 2>&1 | tail -n 20 >&2 || status=$?
if [ "$status" = 0 ]; then
  for t in e2e checkpoint pool escape faults load; do
    log "suite: $t"
    (cd "$repo" && cargo test -p rsession-e2e --test "$t" -- --ignored --test-threads=1 --nocapture "${extra[@]}") 2>&1 \
      | tee -a "$out" || status=1
  done
fi
if [ "$bench" = 1 ]; then
  (cd "$repo" && cargo test -p rsession-e2e --test bench --test pool_bench --test resume_bench -- --ignored --nocapture) 2>&1 | tee -a "$out" || status=1
fi
log "summary"
# Prefixed, so that a caller counting "test result:" lines (e2e/test.sh) counts each once.
grep -E '^test |^test result|^LOAD' "$out" | sed 's/^/[summary] /' >&2 || true
if [ "$down" = 1 ]; then "$repo/e2e/local/down.sh"; fi
exit "$status"
