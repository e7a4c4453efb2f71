#!/usr/bin/env bash
# Kills one of the cluster's daemons with SIGKILL and starts it again exactly as `up` did (the same
# command line, environment and working directory, read from the dead process before the kill), for
# the fault suite (test/chaos/faults.test.ts). Everything else keeps running: containers outlive a
# containerd restart under their runc shims; clients of the API server see it vanish and come back.
#   test/cluster/lib/restart-daemon.sh kube-apiserver|containerd|<daemon> [seconds-down]
# Exits once the daemon answers again (/readyz for the API server, `ctr version` for containerd).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/common.sh"
. "$HERE/processes.sh"

[[ $EUID -eq 0 ]] || die "must run as root"
NAME="${1:?daemon name (${DAEMONS[*]})}"
DOWN_SECONDS="${2:-0}"
[[ " ${DAEMONS[*]} " == *" $NAME "* ]] || die "unknown daemon $NAME (one of: ${DAEMONS[*]})"
daemon_alive "$NAME" || die "$NAME is not running (no live PID in $RUN_DIR/pids/$NAME.pid)"

PID="$(cat "$RUN_DIR/pids/$NAME.pid")"
mapfile -d '' ARGV < "/proc/$PID/cmdline"
mapfile -d '' ENVIRON < "/proc/$PID/environ"
WORKDIR="$(readlink "/proc/$PID/cwd")"

log "killing $NAME (pid $PID) for ${DOWN_SECONDS}s"
kill -KILL "$PID"
while kill -0 "$PID" 2>/dev/null; do sleep 0.05; done
sleep "$DOWN_SECONDS"

log "starting $NAME again"
cd "$WORKDIR"
setsid env -i "${ENVIRON[@]}" "${ARGV[@]}" >>"$LOG_DIR/$NAME.log" 2>&1 < /dev/null &
echo $! > "$RUN_DIR/pids/$NAME.pid"

export PATH="$K8S_BIN:$PATH"
case "$NAME" in
  kube-apiserver)
    wait_until "API server ready" 120 curl -sf --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" "$API_SERVER/readyz" ;;
  containerd)
    wait_until "containerd answers" 60 ctr --address "$CONTAINERD_SOCK" version ;;
  *)
    wait_until "$NAME running" 10 daemon_alive "$NAME" ;;
esac
log "$NAME is back"
