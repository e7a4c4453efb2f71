# Starting, finding and stopping the cluster's processes by PID file. Sourced after common.sh.

start_daemon() { # name command args...
  local name="$1"; shift
  if daemon_alive "$name"; then log "$name already running"; return; fi
  log "starting $name"
  # setsid: the daemons must outlive this script and not get the terminal's signals.
  setsid "$@" >"$LOG_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN_DIR/pids/$name.pid"
}

daemon_alive() { local f="$RUN_DIR/pids/$1.pid"; [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

DAEMONS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

cluster_running() {
  local d
  for d in "${DAEMONS[@]}"; do daemon_alive "$d" || return 1; done
}

# Retries a check until it passes: waiting on the thing itself, bounded by a timeout.
wait_until() { # description timeout-seconds command...
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      die "$what: not after ${timeout}s (logs in $LOG_DIR)"
    fi
    sleep 0.2
  done
}

# TERM to all at once, then wait for each (KILL after 5 s): stopping them one by one is slower.
stop_daemons() { # names...
  local name
  for name in "$@"; do
    [[ -f "$RUN_DIR/pids/$name.pid" ]] || continue
    kill -TERM "$(cat "$RUN_DIR/pids/$name.pid")" 2>/dev/null || true
  done
  for name in "$@"; do stop_daemon "$name"; done
}

stop_daemon() { # name
  local f="$RUN_DIR/pids/$1.pid" pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}
