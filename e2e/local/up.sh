#!/usr/bin/env bash
# Brings up a real single-node Kubernetes cluster on this machine without Docker:
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from Go modules),
# containerd + runc + CNI bridge/host-local/loopback/portmap (Debian packages), kubelet,
# kube-proxy (Service ClusterIPs), a NetworkPolicy enforcer (kube-network-policies where the
# kernel has the nftables queue expression, else kube-router's policy controller on iptables +
# ipset; see README) and CoreDNS as kube-dns, all built from Go modules. Pods get
# their own network namespaces on the bridge cni0 and have no default route: nothing leaves
# the machine.
#
# Usage: e2e/local/up.sh          (idempotent: running components are kept)
# Environment: RSESSION_CACHE (default ~/.cache/rsession), RSESSION_CLUSTER_DIR (state,
#   default $RSESSION_CACHE/cluster), RSESSION_ALLOW_UNENFORCED_NETWORK_POLICY=1 (start even
#   when no NetworkPolicy enforcer can run; the default is to fail). Needs root.
# Host settings it changes (down.sh restores them): the sysctls in HOST_SYSCTLS (node/lib.sh),
# iptables chains and ipsets, the bridges rsession0 and cni0.
# Prints `export KUBECONFIG=...` on the last line of stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=node/lib.sh
. "$here/node/lib.sh"
# shellcheck source=node/pki.sh
. "$here/node/pki.sh"
# shellcheck source=node/network-policy.sh
. "$here/node/network-policy.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root (containerd, kubelet, network setup)"
total=10
t0=$(date +%s)
step() { log "($1/$total) $2"; }

# start_bg <component> <command...>: starts a component in its own session with its log in
# $LOGS, unless the one started before is still alive.
start_bg() {
  local name="$1"; shift
  if pid_of "$name" >/dev/null; then
    log "    $name: already running (pid $(pid_of "$name"))"
    return
  fi
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  # The command line, for component.sh to start the same process again.
  printf '%q ' "$@" >"$RUN/$name.cmd"
  log "    $name: started (pid $!, log $LOGS/$name.log)"
}

# render <template> <output>: substitutes the settings from node/lib.sh into a config template.
render() {
  (
    export STATE CONTAINERD_SOCK PAUSE_IMAGE CNI_BIN_DIR POD_BRIDGE POD_CIDR POD_GATEWAY \
      SERVICE_CIDR NODE_IP NODE_NAME CLUSTER_CIDR CLUSTER_DNS_IP
    envsubst '${STATE} ${CONTAINERD_SOCK} ${PAUSE_IMAGE} ${CNI_BIN_DIR} ${POD_BRIDGE} ${POD_CIDR} ${POD_GATEWAY} ${SERVICE_CIDR} ${NODE_IP} ${NODE_NAME} ${CLUSTER_CIDR} ${CLUSTER_DNS_IP}' <"$1" >"$2.new"
  )
  # Rewrite only on change (kube-proxy exits when its configuration file changes); a
  # component already running with an older file is restarted by restart_if_changed.
  if cmp -s "$2.new" "$2"; then rm -f "$2.new"; rendered_changed=0; else mv "$2.new" "$2"; rendered_changed=1; fi
}

# restart_if_changed <component>: stops a running component whose configuration the last
# render changed, so that start_bg starts it again with the new file.
restart_if_changed() {
  local pid
  [ "$rendered_changed" -eq 1 ] || return 0
  pid="$(pid_of "$1")" || return 0
  log "    $1: configuration changed, restarting"
  kill -TERM "$pid"
  wait_until "$1 stopped" 30 not_alive "$pid" || die "$1 (pid $pid) did not stop"
}
not_alive() { ! kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
step 1 "host packages (containerd, runc, CNI plugins, umoci, debootstrap, iptables, ipset, nftables)"
need=()
for pair in containerd:containerd runc:runc "$CNI_BIN_DIR/bridge":containernetworking-plugins \
  umoci:umoci debootstrap:debootstrap iptables:iptables nft:nftables conntrack:conntrack \
  envsubst:gettext-base openssl:openssl objdump:binutils curl:curl ipset:ipset; do
  cmd="${pair%%:*}" pkg="${pair#*:}"
  command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  log "    apt-get install ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
mkdir -p "$STATE" "$LOGS" "$RUN" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/kubelet" "$STATE/network-policies"

# ---------------------------------------------------------------------------------------------
step 2 "binaries (cached under $RSESSION_CACHE; a cold build takes tens of minutes)"
"$here/build-binaries.sh" >/dev/null
build_go() { # build_go <module dir> <package> <output> [extra -ldflags]
  local dir="$1" pkg="$2" out="$3" extra="${4:-}" start
  [ -x "$out" ] && { log "    $(basename "$out"): cached"; return; }
  start=$(date +%s)
  log "    $(basename "$out"): building from $dir..."
  mkdir -p "$(dirname "$out")"
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $extra" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  log "    $(basename "$out"): built in $(( $(date +%s) - start ))s"
}
k8s_version_ldflags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=33"
build_go "$here/node/kube-proxy" k8s.io/kubernetes/cmd/kube-proxy "$K8S_BIN/kube-proxy" "$k8s_version_ldflags"
build_go "$here/node/coredns" github.com/coredns/coredns "$COREDNS_BIN/coredns"

# ---------------------------------------------------------------------------------------------
step 3 "node network ($NODE_BRIDGE $NODE_IP) and certificates"
if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
  ip link add "$NODE_BRIDGE" type bridge
fi
ip addr replace "$NODE_IP/32" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
# The bridge plugin turns on IP forwarding (needed for Service DNAT between pods); this
# guard drops every forwarded packet that would leave through anything but the pod bridge.
if ! iptables -C FORWARD ! -o "$POD_BRIDGE" -m comment --comment "$FORWARD_GUARD_COMMENT" -j DROP 2>/dev/null; then
  iptables -I FORWARD 1 ! -o "$POD_BRIDGE" -m comment --comment "$FORWARD_GUARD_COMMENT" -j DROP
fi
make_pki
# The kubelet, kube-proxy and the CNI bridge plugin change host sysctls (for example
# vm.overcommit_memory=1 and kernel.panic=10 from the kubelet): keep the values from before the
# first start so that down.sh can put them back.
save_host_sysctls

# ---------------------------------------------------------------------------------------------
step 4 "etcd on 127.0.0.1:$ETCD_PORT"
start_bg etcd "$K8S_BIN/etcd" --name rsession-local --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "rsession-local=http://127.0.0.1:$ETCD_PEER_PORT" \
  --listen-metrics-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --quota-backend-bytes 2147483648
wait_until "etcd healthy" 60 component_healthy etcd \
  || die "etcd not healthy, see $LOGS/etcd.log"

# ---------------------------------------------------------------------------------------------
step 5 "kube-apiserver on https://$NODE_IP:$APISERVER_PORT (RBAC, Node, PodSecurity)"
start_bg kube-apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
  --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --allow-privileged=true --profiling=false --enable-priority-and-fairness=true
wait_until "apiserver ready" 120 component_healthy kube-apiserver \
  || die "kube-apiserver not ready, see $LOGS/kube-apiserver.log"

# ---------------------------------------------------------------------------------------------
step 6 "kube-controller-manager and kube-scheduler"
start_bg kube-controller-manager "$K8S_BIN/kube-controller-manager" \
  --kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
  --allocate-node-cidrs=true --cluster-cidr "$CLUSTER_CIDR" --node-cidr-mask-size 24 \
  --service-cluster-ip-range "$SERVICE_CIDR"
start_bg kube-scheduler "$K8S_BIN/kube-scheduler" \
  --kubeconfig "$STATE/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false
wait_until "kube-controller-manager healthy" 60 component_healthy kube-controller-manager \
  || die "kube-controller-manager not healthy, see $LOGS/kube-controller-manager.log"
wait_until "kube-scheduler healthy" 60 component_healthy kube-scheduler \
  || die "kube-scheduler not healthy, see $LOGS/kube-scheduler.log"

# ---------------------------------------------------------------------------------------------
step 7 "containerd, CNI bridge $POD_BRIDGE ($POD_CIDR) and the pause image"
render "$here/node/containerd.toml" "$STATE/containerd.toml"
restart_if_changed containerd
render "$here/node/cni.conflist" "$STATE/cni/net.d/10-rsession.conflist"
start_bg containerd containerd --config "$STATE/containerd.toml"
wait_until "containerd serving" 60 component_healthy containerd \
  || die "containerd not serving, see $LOGS/containerd.log"
CONTAINERD_ADDRESS="$CONTAINERD_SOCK" "$repo/images/build.sh" pause

# ---------------------------------------------------------------------------------------------
step 8 "kubelet (node $NODE_NAME, cgroupfs driver)"
render "$here/node/kubelet.yaml" "$STATE/kubelet.yaml"
restart_if_changed kubelet
start_bg kubelet "$K8S_BIN/kubelet" --config "$STATE/kubelet.yaml" \
  --kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$STATE/kubelet" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
wait_until "node registered" 120 kubectl_admin get node "$NODE_NAME" \
  || die "node not registered, see $LOGS/kubelet.log"

# ---------------------------------------------------------------------------------------------
step 9 "kube-proxy and the NetworkPolicy enforcer"
render "$here/node/kube-proxy.yaml" "$STATE/kube-proxy.yaml"
restart_if_changed kube-proxy
start_bg kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
rm -f "$STATE/network-policy-unenforced"
# The probe picks the enforcer this kernel can run: kube-network-policies needs the nftables
# `queue` expression (it sends the first packet of each connection to user space);
# kube-router's policy controller needs iptables with the `set` match and ipset hash:ip/hash:net.
queue_err="$(nft_queue_error)"
ipset_err="$(ipset_error)"
if [ -z "$queue_err" ]; then ENFORCER=kube-network-policies
elif [ -z "$ipset_err" ]; then ENFORCER=kube-router
else ENFORCER=none
fi
echo "$ENFORCER" >"$STATE/network-policy-enforcer"
case "$ENFORCER" in
  kube-network-policies) start_kube_network_policies ;;
  kube-router) start_kube_router ;;
  none)
    reason="no NetworkPolicy enforcer can run on this kernel: nftables queue: $queue_err; iptables set match/ipset: $ipset_err"
    echo "$reason" >"$STATE/network-policy-unenforced"
    [ "${RSESSION_ALLOW_UNENFORCED_NETWORK_POLICY:-0}" = 1 ] \
      || die "$reason (RSESSION_ALLOW_UNENFORCED_NETWORK_POLICY=1 starts the cluster anyway)"
    log "    WARNING: NetworkPolicy is NOT enforced on this node: $reason" ;;
esac
# Node and pod objects outlive a down.sh/up.sh cycle in etcd: only a Ready condition written
# after this run started counts.
t0_rfc3339="$(date -u -d "@$t0" +%Y-%m-%dT%H:%M:%SZ)"
fresh_ready() { # fresh_ready <jsonpath of the Ready condition's status and time> <kubectl get args...>
  local path="$1" out status when; shift
  out="$(kubectl_admin get "$@" -o jsonpath="$path")" || return 1
  for line in $out; do
    status="${line%%@*}" when="${line#*@}"
    [ "$status" = True ] && [[ ! "$when" < "$t0_rfc3339" ]] && return 0
  done
  return 1
}
wait_until "node Ready" 180 fresh_ready '{range .status.conditions[?(@.type=="Ready")]}{.status}@{.lastHeartbeatTime}{end}' \
  node "$NODE_NAME" || die "node not Ready, see $LOGS/kubelet.log"
wait_until "kube-proxy healthy" 60 component_healthy kube-proxy \
  || die "kube-proxy not healthy, see $LOGS/kube-proxy.log"
case "$ENFORCER" in
  kube-network-policies)
    wait_until "kube-network-policies serving metrics" 60 component_healthy kube-network-policies \
      || die "kube-network-policies not running, see $LOGS/kube-network-policies.log" ;;
  kube-router)
    # /healthz turns 200 once the policy controller has finished a full sync.
    wait_until "kube-router policy controller healthy" 120 component_healthy kube-router \
      || die "kube-router not healthy, see $LOGS/kube-router.log" ;;
esac

# ---------------------------------------------------------------------------------------------
step 10 "cluster DNS (CoreDNS $COREDNS_VERSION as kube-dns, $CLUSTER_DNS_IP)"
CONTAINERD_ADDRESS="$CONTAINERD_SOCK" "$repo/images/build.sh" coredns
kubectl_admin apply --server-side --field-manager rsession-e2e-up -f "$here/node/coredns.yaml" >/dev/null
wait_until "CoreDNS Ready" 120 fresh_ready \
  '{range .items[*].status.conditions[?(@.type=="Ready")]}{.status}@{.lastTransitionTime} {end}' \
  -n kube-system pods -l k8s-app=kube-dns \
  || die "CoreDNS not Ready, see kubectl -n kube-system describe pods -l k8s-app=kube-dns"

log "cluster up in $(( $(date +%s) - t0 ))s; node $NODE_NAME Ready"
echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
