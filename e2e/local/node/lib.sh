# Settings and helpers shared by e2e/local/up.sh and e2e/local/down.sh (sourced, not run).
# Every address here is on this machine: the node address lives on a port-less bridge
# (rsession0), pods live on cni0, and pods get no default route.

_node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# go_mod_version <wrapper dir> <module>: the version a wrapper go.mod pins.
go_mod_version() { awk -v m="$2" '$1 == "require" && $2 == m {print $3}' "$_node_dir/$1/go.mod"; }

K8S_VERSION="v1.33.13"
KNP_VERSION="$(go_mod_version network-policies sigs.k8s.io/kube-network-policies)"
COREDNS_VERSION="$(go_mod_version coredns github.com/coredns/coredns)"

RSESSION_CACHE="${RSESSION_CACHE:-$HOME/.cache/rsession}"
STATE="${RSESSION_CLUSTER_DIR:-$RSESSION_CACHE/cluster}"
K8S_BIN="$RSESSION_CACHE/k8s-$K8S_VERSION/bin"
KNP_BIN="$RSESSION_CACHE/kube-network-policies-$KNP_VERSION/bin"
COREDNS_BIN="$RSESSION_CACHE/coredns-$COREDNS_VERSION/bin"

NODE_NAME="rsession-node"
NODE_BRIDGE="rsession0"    # holds the node address (a bridge with no ports works as a dummy)
NODE_IP="10.240.0.1"
POD_BRIDGE="cni0"
CLUSTER_CIDR="10.244.0.0/16"
POD_CIDR="10.244.0.0/24"   # the first /24 the controller-manager allocates
POD_GATEWAY="10.244.0.1"
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SERVICE_IP="10.96.0.1"
CLUSTER_DNS_IP="10.96.0.10" # the kube-dns Service (node/coredns.yaml)
APISERVER_PORT=6443
ETCD_PORT=23790
ETCD_PEER_PORT=23800
CONTAINERD_SOCK="/run/containerd/containerd.sock"
CNI_BIN_DIR="/usr/lib/cni"
PAUSE_IMAGE="localhost/rsession/pause:3.10"
KUBECONFIG_ADMIN="$STATE/admin.kubeconfig"
FORWARD_GUARD_COMMENT="rsession-e2e: pods never forward off this machine"
KNP_SA_DIR="/run/secrets/kubernetes.io/serviceaccount"

# Components in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-network-policies)

PKI="$STATE/pki"
LOGS="$STATE/logs"
RUN="$STATE/run"

log() { echo "[${LOG_TAG:-up}] $*" >&2; }
die() { log "error: $*"; exit 1; }

# pid_of <component>: prints the pid when the component started by up.sh is still alive.
pid_of() {
  local f="$RUN/$1.pid" pid
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: the process must still be the binary we started.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1" || return 1
  echo "$pid"
}

# wait_until <description> <seconds> <command...>: polls the command every 0.2 s until it
# succeeds; fails with the description after the deadline.
wait_until() {
  local what="$1" secs="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
  log "    $what after $(( secs - (deadline - $(date +%s)) ))s"
}

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
