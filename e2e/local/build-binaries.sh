#!/usr/bin/env bash
# Builds the Kubernetes and etcd binaries RSession's tests run, from Go modules
# at the versions pinned in e2e/local/{k8s,etcd}/go.mod, into a cache folder
# outside the repository. A binary already in the cache is reused.
#
# Usage: e2e/local/build-binaries.sh [binary ...]
#   binaries: etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
#   (default: all). Prints the bin folder on the last line of stdout.
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
  want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
fi

log() { echo "[build-binaries] $*" >&2; }

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
    *) log "unknown binary: $b"; exit 2 ;;
  esac
  mv "$bin/.$b.tmp" "$bin/$b"
  log "($i/$total) $b: built in $(( $(date +%s) - start ))s"
done
echo "$bin"
