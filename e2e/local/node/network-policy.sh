# The NetworkPolicy enforcer of the local node (sourced by up.sh; uses its start_bg, build_go,
# kubectl_admin). Two enforcers, picked by what the kernel can do:
#   kube-network-policies (SIG Network): nftables, the first packet of each connection goes to
#     user space through the nftables `queue` expression (CONFIG_NFT_QUEUE);
#   kube-router, only its policy controller (--run-firewall; router/BGP and service proxy off):
#     iptables filter chains with the `set` match and ipset hash:ip / hash:net sets.
# Both run on the node as host processes with a ServiceAccount token of their own.

# nft_queue_error: prints why the kernel cannot run kube-network-policies, or nothing.
nft_queue_error() {
  local err=""
  nft add table inet rsession-probe 2>/dev/null || { echo "nft cannot add a table"; return; }
  nft add chain inet rsession-probe probe 2>/dev/null
  err="$(nft add rule inet rsession-probe probe queue num 100 bypass 2>&1 | head -1)" || true
  nft delete table inet rsession-probe 2>/dev/null || true
  echo "$err"
}

# ipset_error: prints why the kernel cannot run kube-router's policy controller (ipset
# hash:ip and hash:net, and an iptables rule with the `set` match), or nothing.
ipset_error() {
  local err="" s
  for s in "rsession-probe-ip hash:ip" "rsession-probe-net hash:net"; do
    # shellcheck disable=SC2086
    err="$(ipset create $s 2>&1 | head -1)" || { echo "ipset create $s: $err"; ipset_probe_cleanup; return; }
  done
  iptables -N RSESSION-PROBE 2>/dev/null || true
  err="$(iptables -A RSESSION-PROBE -m set --match-set rsession-probe-net src -j RETURN 2>&1 | head -1)" \
    || { ipset_probe_cleanup; echo "iptables -m set: $err"; return; }
  ipset_probe_cleanup
}
ipset_probe_cleanup() {
  iptables -F RSESSION-PROBE 2>/dev/null || true
  iptables -X RSESSION-PROBE 2>/dev/null || true
  ipset destroy rsession-probe-ip 2>/dev/null || true
  ipset destroy rsession-probe-net 2>/dev/null || true
}

# sa_token <service account> <file>: a year-long token of a kube-system ServiceAccount.
sa_token() {
  kubectl_admin -n kube-system create token "$1" --duration 8760h >"$2.new" && mv "$2.new" "$2"
}

start_kube_network_policies() {
  build_go "$here/node/network-policies" sigs.k8s.io/kube-network-policies/cmd "$KNP_BIN/kube-network-policies"
  kubectl_admin apply --server-side --field-manager rsession-e2e-up -f "$here/node/network-policies-rbac.yaml" >/dev/null
  if ! pid_of kube-network-policies >/dev/null; then
    # kube-network-policies reads its credentials the in-cluster way; give it a ServiceAccount
    # token through a private mount namespace so that nothing lands on the host's /run/secrets.
    sa_token kube-network-policies "$STATE/network-policies/token"
    cp "$PKI/ca.crt" "$STATE/network-policies/ca.crt"
    echo kube-system >"$STATE/network-policies/namespace"
    mkdir -p "$KNP_SA_DIR"
  fi
  start_bg kube-network-policies env KUBERNETES_SERVICE_HOST="$NODE_IP" KUBERNETES_SERVICE_PORT="$APISERVER_PORT" \
    unshare --mount --propagation private -- sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh \
    "$STATE/network-policies" "$KNP_SA_DIR" \
    "$KNP_BIN/kube-network-policies" --hostname-override "$NODE_NAME" --disable-nri \
    --netfilter-bug-1766-fix=false --metrics-bind-address 127.0.0.1:9080
}

# kube-router v2.1.0: the advisories reported against it concern its service proxy (IPVS) and
# BGP router, both off here (see e2e/local/README.md).
start_kube_router() {
  local dir="$STATE/kube-router"
  build_go "$here/node/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "$KUBE_ROUTER_BIN/kube-router"
  kubectl_admin apply --server-side --field-manager rsession-e2e-up -f "$here/node/kube-router-rbac.yaml" >/dev/null
  mkdir -p "$dir"
  if ! pid_of kube-router >/dev/null; then
    sa_token kube-router "$dir/token"
    cat >"$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://$NODE_IP:$APISERVER_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: kube-router
  user: {tokenFile: "$dir/token"}
contexts:
- name: kube-router
  context: {cluster: local, user: kube-router}
current-context: kube-router
KC
  fi
  start_bg kube-router "$KUBE_ROUTER_BIN/kube-router" --kubeconfig "$dir/kubeconfig" \
    --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --run-loadbalancer=false \
    --enable-ipv4=true --enable-ipv6=false \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --health-port "$KUBE_ROUTER_HEALTH_PORT" --metrics-port 0
}

# stop_network_policy_enforcers: stops either enforcer and removes what it put in the kernel
# (used by down.sh; chains named KUBE-* are removed there with kube-proxy's).
stop_network_policy_enforcers() {
  stop_component kube-network-policies
  nft delete table inet kube-network-policies 2>/dev/null || true
  stop_component kube-router
}

# remove_kube_router_ipsets: after its iptables chains are gone, the sets they referenced.
remove_kube_router_ipsets() {
  command -v ipset >/dev/null || return 0
  ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)' | while read -r set; do
    ipset destroy "$set" 2>/dev/null || true
  done || true
}
