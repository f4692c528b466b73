#!/usr/bin/env bash
# Stops the local cluster started by e2e/local/up.sh and removes what it put on the machine:
# pod containers and their network namespaces, the cni0 and rsession0 bridges, kube-proxy's and
# kube-router's iptables chains and ipsets, kube-network-policies' nftables table, the forward
# guard, kubelet mounts and pod cgroups, and puts back the host sysctls the node changed.
# Idempotent: safe to run when nothing is running.
#
# Usage: e2e/local/down.sh [--purge]
#   --purge  also delete the state folder (etcd data, certificates, containerd images)
# Environment: as up.sh (RSESSION_CACHE, RSESSION_CLUSTER_DIR). Needs root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_TAG=down
# shellcheck source=node/lib.sh
. "$here/node/lib.sh"
# shellcheck source=node/network-policy.sh
. "$here/node/network-policy.sh"

purge=0
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || die "must run as root"

# Policy and proxy first (their cleanup needs nothing else), then the kubelet so that it
# does not restart containers while they are removed.
stop_network_policy_enforcers
stop_component kube-proxy
stop_component kubelet

# Pod containers: kill and delete every task and container in containerd's k8s.io namespace.
if [ -S "$CONTAINERD_SOCK" ] && pid_of containerd >/dev/null; then
  ctr_() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
  tasks="$(ctr_ tasks ls -q 2>/dev/null || true)"
  # --force kills the task with SIGKILL and waits for it before deleting it.
  for t in $tasks; do ctr_ tasks delete --force "$t" >/dev/null 2>&1 || true; done
  for c in $(ctr_ containers ls -q 2>/dev/null || true); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
  [ -z "$tasks" ] || log "containers: removed $(echo "$tasks" | wc -w)"
fi
stop_component containerd
# The control plane shuts down gracefully in 2-3 s each: stop the three API clients together.
for name in kube-scheduler kube-controller-manager kube-apiserver; do stop_component "$name" & done
wait
stop_component etcd

# Network namespaces made by the CRI plugin for pods, then the bridges and IPAM leases.
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
  ip netns delete "$ns" 2>/dev/null || true
done
for dev in "$POD_BRIDGE" "$NODE_BRIDGE"; do
  if ip link show "$dev" >/dev/null 2>&1; then ip link delete "$dev"; log "network: removed $dev"; fi
done
rm -rf "$STATE/cni/ipam"
while iptables -C FORWARD ! -o "$POD_BRIDGE" -m comment --comment "$FORWARD_GUARD_COMMENT" -j DROP 2>/dev/null; do
  iptables -D FORWARD ! -o "$POD_BRIDGE" -m comment --comment "$FORWARD_GUARD_COMMENT" -j DROP
done
rmdir -p "$KNP_SA_DIR" 2>/dev/null || true
# kube-proxy's and the kubelet's iptables chains (KUBE-*): drop the jumps into them, then the
# chains. (`kube-proxy --cleanup` would also create empty iptables-legacy tables.)
for table in nat filter mangle; do
  iptables -t "$table" -S 2>/dev/null | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-' \
    | while read -r rule; do
        # iptables -S quotes comments; eval reads the rule back with the same quoting.
        eval "iptables -t $table ${rule/#-A/-D}" 2>/dev/null || true
      done || true
  # `|| true`: on a fresh machine iptables is not installed yet (up.sh installs it), and a
  # failed assignment would end this script silently under `set -e`.
  chains="$(iptables -t "$table" -S 2>/dev/null | awk '/^-N KUBE-/{print $2}' || true)"
  for c in $chains; do iptables -t "$table" -F "$c" 2>/dev/null || true; done
  for c in $chains; do iptables -t "$table" -X "$c" 2>/dev/null || true; done
done

remove_kube_router_ipsets

# Mounts the kubelet made for pod volumes, deepest first.
if [ -d "$STATE/kubelet" ]; then
  findmnt -rn -o TARGET | grep -E "^$STATE/kubelet(/|\$)" | sort -r | while read -r m; do umount -l "$m" || true; done || true
fi
# Pod cgroups (cgroup v1: one tree per controller), deepest first; a cgroup stays busy for a
# moment after its last task exits, so retry for up to 10 s.
remove_pod_cgroups() {
  local ctl left=0
  for ctl in /sys/fs/cgroup/*/kubepods; do
    [ -d "$ctl" ] || continue
    find "$ctl" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ ! -d "$ctl" ] || left=1
  done
  [ "$left" -eq 0 ]
}
wait_until "pod cgroups removed" 10 remove_pod_cgroups || log "warning: some kubepods cgroups are still busy"

# Last, with nothing left running that sets them again.
restore_host_sysctls

if [ "$purge" -eq 1 ] && [ -d "$STATE" ]; then
  # containerd's snapshots may still be mounted if it was killed hard.
  findmnt -rn -o TARGET | grep "^$STATE/" | sort -r | while read -r m; do umount -l "$m" || true; done || true
  rm -rf "$STATE"
  log "state: removed $STATE"
fi
log "done"
