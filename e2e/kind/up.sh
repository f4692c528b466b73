#!/usr/bin/env bash
# kind cluster for the e2e suite, for machines with Docker (NOT run on the project's test machine,
# which has no Docker; untested there).
#   e2e/kind/up.sh            create the cluster, build and load the images, install the chart
# Then run the suite as e2e/run-e2e.sh does (it prints the variables to export).
# Needs: docker, kind, kubectl, helm. Environment: CALICO_VERSION (default v3.28.2).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
name=rsession-e2e tag=e2e release="${RSESSION_E2E_RELEASE:-rse2e}"
log() { echo "[kind] $*" >&2; }

kind get clusters | grep -qx "$name" || kind create cluster --config "$repo/e2e/kind/kind-config.yaml"
kubectl config use-context "kind-$name" >&2
# A CNI that enforces NetworkPolicy (kindnet does not).
kubectl apply -f "https://raw.githubusercontent.com/projectcalico/calico/${CALICO_VERSION:-v3.28.2}/manifests/calico.yaml" >&2
kubectl -n kube-system rollout status ds/calico-node --timeout 300s >&2

log "images"
docker build -t "rsession/r-sandbox:$tag" --target full "$repo/images/r-sandbox"
docker build -f "$repo/images/operator/Dockerfile" -t "rsession/operator:$tag" "$repo"
docker build -f "$repo/images/mcp/Dockerfile" -t "rsession/mcp:$tag" "$repo"
for i in r-sandbox operator mcp; do kind load docker-image --name "$name" "rsession/$i:$tag"; done

log "chart"
helm upgrade --install "$release" "$repo/charts/rsession" -n "$release-system" --create-namespace --wait --timeout 5m \
  --set operator.image.repository=rsession/operator,operator.image.tag=$tag,operator.image.pullPolicy=Never \
  --set mcp.image.repository=rsession/mcp,mcp.image.tag=$tag,mcp.image.pullPolicy=Never \
  --set operator.sessionDefaults.defaultImage=rsession/r-sandbox:$tag,operator.sessionDefaults.defaultImagePullPolicy=Never \
  --set operator.watchNamespace="$release-sessions",sessions.namespace="$release-sessions" >&2
cat <<OUT
# Next: start a port-forward and run the suite (the database test needs a PostgreSQL reachable
# from the kind node; set RSESSION_E2E_PG_* to it, or skip that test with --skip):
kubectl -n $release-system port-forward svc/$release-rsession-mcp 18080:8080 &
export RSESSION_E2E_SESSIONS_NS=$release-sessions RSESSION_E2E_MCP_URL=http://127.0.0.1:18080/mcp RSESSION_E2E_USER_CLUSTERROLE=$release-rsession-user
cargo test -p rsession-e2e --test e2e -- --ignored --test-threads=1
OUT
