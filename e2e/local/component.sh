#!/usr/bin/env bash
# Stops, starts or restarts one component of the local cluster started by e2e/local/up.sh,
# with the command line up.sh started it with; start and restart return once the component
# passes the health check up.sh waits on. The e2e fault tests use it (kube-apiserver and
# kubelet restarts, an apiserver outage).
#
# Usage: e2e/local/component.sh stop|start|restart <component>
#   components: etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet
#               kube-proxy kube-network-policies kube-router
# Environment: as up.sh. Needs root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_TAG=component
# shellcheck source=node/lib.sh
. "$here/node/lib.sh"

[ $# -eq 2 ] || { echo "usage: $0 stop|start|restart <component>" >&2; exit 2; }
action="$1" name="$2"
[ "$(id -u)" -eq 0 ] || die "must run as root"
printf '%s\n' "${COMPONENTS[@]}" | grep -qxF "$name" || die "unknown component $name (one of: ${COMPONENTS[*]})"
[ -f "$RUN/$name.cmd" ] || die "$name was not started by up.sh (no $RUN/$name.cmd)"

start() {
  if pid_of "$name" >/dev/null; then log "$name: already running"; return; fi
  local t0 cmd
  t0=$(date +%s%N)
  cmd="$(cat "$RUN/$name.cmd")"
  eval "setsid $cmd >>\"\$LOGS/\$name.log\" 2>&1 </dev/null &"
  echo $! >"$RUN/$name.pid"
  wait_until "$name healthy" 120 component_healthy "$name" || die "$name not healthy, see $LOGS/$name.log"
  log "$name: started, healthy after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

case "$action" in
  stop) stop_component "$name" ;;
  start) start ;;
  restart) stop_component "$name"; start ;;
  *) die "unknown action $action (stop, start or restart)" ;;
esac
