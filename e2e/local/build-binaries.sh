#!/usr/bin/env bash
# Builds the Kubernetes and etcd binaries RSession's tests run, from Go modules
# at the versions pinned in e2e/local/{k8s,etcd}/go.mod, into a cache folder
# outside the repository. A binary already in the cache is reused.
#
# Usage: e2e/local/build-binaries.sh [binary ...]
#   binaries: etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl helm
#   (default: all). Prints the bin folder on the last line of stdout.
#   helm is pinned in e2e/local/helm/go.mod; the chart tests and installs use it.
# Environment: RSESSION_CACHE (default ~/.cache/rsession).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="v1.33.13"
ETCD_VERSION="v3.5.35"
cache="${RSESSION_CACHE:-$HOME/.cache/rsession}"
bin="$cache/k8s-$K8S_VERSION/bin"
mkdir -p "$bin"

want=("$@")
if [ ${#want[@]} -eq 0 ]; then
  want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl helm)
fi

log() { echo "[build-binaries] $*" >&2; }

# One build at a time per cache folder: a second caller (tests and up.sh started together)
# waits here, then finds the binaries built.
exec 9>"$bin/.lock"
if ! flock -n 9; then
  log "another build-binaries.sh is building into $bin; waiting for it"
  flock 9
fi

k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=33 \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=33"

total=${#want[@]}
i=0
for b in "${want[@]}"; do
  i=$((i + 1))
  if [ -x "$bin/$b" ]; then
    log "($i/$total) $b: cached at $bin/$b"
    continue
  fi
  start=$(date +%s)
  log "($i/$total) $b: building (a cold build takes several minutes on 2 cores)..."
  case "$b" in
    etcd)
      (cd "$here/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/.etcd.tmp" go.etcd.io/etcd/server/v3) ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kubectl)
      (cd "$here/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags "$k8s_ldflags" -o "$bin/.$b.tmp" "k8s.io/kubernetes/cmd/$b") ;;
    helm)
      # Version stamps as Helm's Makefile sets them; the default Kubernetes version of
      # `helm template`/`helm lint` follows the client-go minor Helm is built with.
      (cd "$here/helm" && kminor="$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)" \
        && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
         -X helm.sh/helm/v3/internal/version.version=$(go list -m -f '{{.Version}}' helm.sh/helm/v3) \
         -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
         -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kminor \
         -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor" \
         -o "$bin/.$b.tmp" helm.sh/helm/v3/cmd/helm) ;;
    *) log "unknown binary: $b"; exit 2 ;;
  esac
  mv "$bin/.$b.tmp" "$bin/$b"
  log "($i/$total) $b: built in $(( $(date +%s) - start ))s"
done
echo "$bin"
