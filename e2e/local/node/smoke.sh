#!/usr/bin/env bash
# Smoke test of the local node against whatever KUBECONFIG names (default: up.sh's admin
# kubeconfig): a restricted-PodSecurity namespace, an r-sandbox pod running Rserve under the
# restricted securityContext becoming Ready (TCP probe 6311), pod-to-pod, Service and cluster
# DNS traffic, no default route in pods, and a NetworkPolicy that denies ingress blocking a
# second pod while a policy that allows it lets it through. When up.sh could start no
# NetworkPolicy enforcer, the policy checks fail with the reason (they never skip).
# Prints timings and `N passed, N failed, N skipped`; exits non-zero on any failure.
#
# Usage: e2e/local/node/smoke.sh [--keep]   (--keep leaves the namespace for inspection)
# Needs: the cluster from e2e/local/up.sh and `images/build.sh r-sandbox` imported.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_TAG=smoke
# shellcheck source=lib.sh
. "$here/lib.sh"
export KUBECONFIG="${KUBECONFIG:-$KUBECONFIG_ADMIN}"
kc() { "$K8S_BIN/kubectl" "$@"; }
ns=rsession-smoke
image="${RSESSION_SANDBOX_IMAGE:-localhost/rsession/r-sandbox:dev}"
keep=0
[ "${1:-}" = "--keep" ] && keep=1

passed=0 failed=0 skipped=0
check() { # check <name> <command...>
  local name="$1"; shift
  if "$@" >/dev/null 2>&1; then passed=$((passed + 1)); log "PASS $name"
  else failed=$((failed + 1)); log "FAIL $name"; fi
}
# up.sh leaves this marker when the kernel cannot run the NetworkPolicy controller.
unenforced="$STATE/network-policy-unenforced"
policy_check() { # policy_check <name> <command...>: check, or fail with the reason
  if [ -f "$unenforced" ]; then failed=$((failed + 1)); log "FAIL $1: NetworkPolicy is not enforced ($(cat "$unenforced"))"
  else check "$@"; fi
}
not() { ! "$@"; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

cleanup() {
  [ "$keep" -eq 1 ] || kc delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

# A fresh namespace: wait for a previous run's namespace to be gone first.
kc delete namespace "$ns" --ignore-not-found --wait=true --timeout=120s >/dev/null
kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $ns
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
---
apiVersion: v1
kind: ConfigMap
metadata: {name: rserve-config, namespace: $ns}
data:
  Rserve.conf: |
    remote enable
    auth disable
    fileio disable
    shutdown disable
    interactive no
    encoding utf8
    workdir /tmp/Rserv
EOF

# pod_yaml <name> <app label> [command]: a pod with the restricted securityContext of the
# RSession design; without a command it runs the image's entrypoint (Rserve).
pod_yaml() {
  local name="$1" app="$2" cmd="${3:-}"
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns, labels: {app: $app}}
spec:
  automountServiceAccountToken: false
  enableServiceLinks: false
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    fsGroup: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: main
    image: $image
    imagePullPolicy: Never
$( [ -z "$cmd" ] || echo "    command: $cmd" )
    ports: [{name: rserve, containerPort: 6311}]
    readinessProbe:
      tcpSocket: {port: 6311}
      periodSeconds: 1
    resources:
      requests: {cpu: 50m, memory: 128Mi}
      limits: {cpu: "1", memory: 1Gi, ephemeral-storage: 256Mi}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    volumeMounts:
    - {name: tmp, mountPath: /tmp}
    - {name: workspace, mountPath: /workspace}
    - {name: rserve-config, mountPath: /etc/rserve, readOnly: true}
  volumes:
  - {name: tmp, emptyDir: {sizeLimit: 64Mi}}
  - {name: workspace, emptyDir: {sizeLimit: 128Mi}}
  - {name: rserve-config, configMap: {name: rserve-config}}
EOF
}

log "r-sandbox pod with Rserve in a restricted namespace"
t_apply=$(now_ms)
pod_yaml rserve rserve | kc apply -f - >/dev/null
kc -n "$ns" wait --for=condition=Ready pod/rserve --timeout=120s >/dev/null \
  || { kc -n "$ns" describe pod rserve >&2; die "rserve pod not Ready"; }
t_ready=$(now_ms)
log "    rserve pod: apply -> Ready in $((t_ready - t_apply)) ms (watch-observed)"
kc -n "$ns" get pod rserve -o jsonpath='{range .status.conditions[*]}{.type}={.lastTransitionTime}{"\n"}{end}' >&2

# The client runs the same image, but sleeps; its probe port is closed, so no readiness probe.
pod_yaml client client '["sleep", "3600"]' | sed '/readinessProbe:/,+2d' | kc apply -f - >/dev/null
kc -n "$ns" wait --for=condition=Ready pod/client --timeout=120s >/dev/null || die "client pod not Ready"
rserve_ip="$(kc -n "$ns" get pod rserve -o jsonpath='{.status.podIP}')"
kc -n "$ns" expose pod rserve --name rserve --port 6311 >/dev/null
svc_ip="$(kc -n "$ns" get service rserve -o jsonpath='{.spec.clusterIP}')"

# greeting <ip>: the first 12 bytes Rserve sends (QAP1 ID string), read with bash /dev/tcp
# from inside the client pod, giving up after 3 s.
greeting() {
  kc -n "$ns" exec client -- timeout 3 bash -c "exec 3<>/dev/tcp/$1/6311 && head -c 12 <&3" 2>/dev/null
}
is_rserve() { [ "$(greeting "$1")" = "Rsrv0103QAP1" ]; }
not_rserve() { ! is_rserve "$1"; }

# PodSecurity admission must refuse a pod without the restricted securityContext.
rejected_by_pod_security() {
  local out
  out="$(kc -n "$ns" run pss-probe --image "$image" --restart Never --dry-run=server 2>&1)" && return 1
  grep -q 'violates PodSecurity "restricted' <<<"$out"
}
check "PodSecurity restricted rejects a pod without securityContext" rejected_by_pod_security
check "container runs as uid 1000" test "$(kc -n "$ns" exec rserve -- id -u)" = 1000
check "writing under /usr fails" not kc -n "$ns" exec rserve -- touch /usr/rsession-smoke
check "no service-account token mounted" not kc -n "$ns" exec rserve -- test -e /var/run/secrets/kubernetes.io/serviceaccount/token
check "pods have no default route" not kc -n "$ns" exec client -- grep -q '^eth0[[:space:]]00000000' /proc/net/route
check "pod to pod: Rserve greeting from $rserve_ip" is_rserve "$rserve_ip"
check "Service ClusterIP $svc_ip reaches Rserve (kube-proxy)" is_rserve "$svc_ip"
check "cluster DNS resolves rserve.$ns.svc to $svc_ip (CoreDNS)" \
  test "$(kc -n "$ns" exec client -- getent hosts "rserve.$ns.svc.cluster.local" | awk '{print $1}')" = "$svc_ip"

log "NetworkPolicy: deny all ingress in $ns"
kc apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: $ns}
spec:
  podSelector: {}
  policyTypes: [Ingress]
EOF
t_policy=$(now_ms)
if [ ! -f "$unenforced" ] && wait_until "deny enforced" 30 not_rserve "$rserve_ip"; then
  log "    deny enforced within $(( $(now_ms) - t_policy )) ms"
fi
policy_check "deny-ingress policy blocks pod to pod" not_rserve "$rserve_ip"
policy_check "deny-ingress policy blocks the Service path" not_rserve "$svc_ip"

log "NetworkPolicy: allow ingress to rserve from app=client on 6311"
kc apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: $ns}
spec:
  podSelector: {matchLabels: {app: rserve}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 6311, protocol: TCP}]
EOF
[ -f "$unenforced" ] || wait_until "allow enforced" 30 is_rserve "$rserve_ip" || true
policy_check "allow policy lets app=client through" is_rserve "$rserve_ip"

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
