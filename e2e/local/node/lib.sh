# Settings and helpers shared by e2e/local/up.sh and e2e/local/down.sh (sourced, not run).
# Every address here is on this machine: the node address lives on a port-less bridge
# (rsession0), pods live on cni0, and pods get no default route.

_node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# go_mod_version <wrapper dir> <module>: the version a wrapper go.mod pins.
go_mod_version() { awk -v m="$2" '$1 == "require" && $2 == m {print $3}' "$_node_dir/$1/go.mod"; }

K8S_VERSION="v1.33.13"
KNP_VERSION="$(go_mod_version network-policies sigs.k8s.io/kube-network-policies)"
COREDNS_VERSION="$(go_mod_version coredns github.com/coredns/coredns)"
KUBE_ROUTER_VERSION="$(go_mod_version kube-router github.com/cloudnativelabs/kube-router/v2)"

RSESSION_CACHE="${RSESSION_CACHE:-$HOME/.cache/rsession}"
STATE="${RSESSION_CLUSTER_DIR:-$RSESSION_CACHE/cluster}"
K8S_BIN="$RSESSION_CACHE/k8s-$K8S_VERSION/bin"
KNP_BIN="$RSESSION_CACHE/kube-network-policies-$KNP_VERSION/bin"
COREDNS_BIN="$RSESSION_CACHE/coredns-$COREDNS_VERSION/bin"
KUBE_ROUTER_BIN="$RSESSION_CACHE/kube-router-$KUBE_ROUTER_VERSION/bin"

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
KUBE_ROUTER_HEALTH_PORT=20244

# Components in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy kube-network-policies kube-router)

# Host sysctls that the node's components change and down.sh puts back: the kubelet sets the
# first six at start-up (its "kernel defaults": overcommit, panic on oops, key quotas), the
# bridge CNI plugin turns on forwarding, kube-proxy sets route_localnet and conntrack sizes.
HOST_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables net.netfilter.nf_conntrack_max
  net.netfilter.nf_conntrack_tcp_timeout_established net.netfilter.nf_conntrack_tcp_timeout_close_wait)

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

# stop_component <component>: SIGTERM, up to 15 s for it to exit, then SIGKILL.
stop_component() {
  local name="$1" pid deadline
  if ! pid="$(pid_of "$name")"; then
    rm -f "$RUN/$name.pid"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(date +%s) + 15 ))
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: did not stop in 15s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
  log "$name: stopped in $(( $(date +%s) - deadline + 15 ))s"
}

# component_healthy <component>: the health check of that component, which up.sh and
# component.sh wait on.
component_healthy() {
  case "$1" in
    etcd) curl -sf "http://127.0.0.1:$((ETCD_PORT + 1))/health" ;;
    kube-apiserver) kubectl_admin get --raw /readyz ;;
    kube-controller-manager) curl -skf https://127.0.0.1:10257/healthz ;;
    kube-scheduler) curl -skf https://127.0.0.1:10259/healthz ;;
    containerd) ctr -a "$CONTAINERD_SOCK" version ;;
    kubelet) curl -sf http://127.0.0.1:10248/healthz ;;
    kube-proxy) curl -sf http://127.0.0.1:10256/healthz ;;
    kube-network-policies) curl -sf http://127.0.0.1:9080/metrics ;;
    kube-router) curl -sf "http://127.0.0.1:$KUBE_ROUTER_HEALTH_PORT/healthz" ;;
    *) return 2 ;;
  esac
}

# save_host_sysctls: records the HOST_SYSCTLS values once, before the first start (a second
# up.sh while the cluster runs must not record the values the cluster set).
save_host_sysctls() {
  local f="$STATE/host-sysctls.conf" k v
  [ -f "$f" ] && return 0
  for k in "${HOST_SYSCTLS[@]}"; do
    v="$(sysctl -n "$k" 2>/dev/null)" && printf '%s = %s\n' "$k" "$v"
  done >"$f.new"
  mv "$f.new" "$f"
}

# restore_host_sysctls: puts back every value save_host_sysctls recorded that differs now,
# logging each, and forgets the record.
restore_host_sysctls() {
  local f="$STATE/host-sysctls.conf" k v now
  [ -f "$f" ] || return 0
  while IFS=' = ' read -r k v; do
    [ -n "$k" ] || continue
    now="$(sysctl -n "$k" 2>/dev/null)" || continue
    if [ "$now" != "$v" ]; then
      sysctl -q -w "$k=$v" && log "sysctl: $k $now -> $v"
    fi
  done <"$f"
  rm -f "$f"
}

kubectl_admin() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
