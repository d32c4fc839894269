# shellcheck shell=bash
# Shared helpers for scripts/testenv: cache and run directories, background processes, health polling.
# Sourced, never run. Every service file beside this one defines <svc>_install, <svc>_start,
# <svc>_stop, <svc>_healthy and <svc>_env.

: "${CILVEST_CACHE:=$HOME/.cache/cilvest}"   # built binaries, jars, venvs; keyed by version; survives runs
: "${CILVEST_RUN:=/tmp/cilvest-testenv}"     # pids, logs, data of the running services; wiped by `down`
export CILVEST_CACHE CILVEST_RUN
mkdir -p "$CILVEST_CACHE" "$CILVEST_RUN/logs" "$CILVEST_RUN/pids"

log() { printf '[testenv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: poll COMMAND every half second until it succeeds.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "$what not healthy after ${timeout}s; last log lines:"
      tail -n 30 "$CILVEST_RUN/logs/${what}.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}

# start_bg NAME COMMAND...: run COMMAND detached in its own session, logging to logs/NAME.log.
start_bg() {
  local name=$1; shift
  if is_running "$name"; then log "$name already running"; return 0; fi
  setsid "$@" >>"$CILVEST_RUN/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$CILVEST_RUN/pids/$name"
}

is_running() {
  local pidfile="$CILVEST_RUN/pids/$1"
  [[ -f $pidfile ]] && pid_alive "$(cat "$pidfile")"
}

# pid_alive PID: the process exists and is not a zombie (a dead child nobody has reaped yet).
pid_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# stop_bg NAME: TERM the process group, then KILL what is left after 10 s.
stop_bg() {
  local name=$1 pidfile="$CILVEST_RUN/pids/$1" pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do pid_alive "$pid" || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# port_open PORT: true when something listens on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The shared Python virtualenv for the Python-based services (bqemulator, pyspark),
# keyed by a hash of testenv.d/requirements.txt: editing the pins builds a fresh venv beside the old.
PY_REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/requirements.txt"
py_venv() { echo "$CILVEST_CACHE/venv-$(sha256sum <"$PY_REQUIREMENTS" | cut -c1-16)"; }

# py_venv_install: create the venv with the machine's python3 and pip-install requirements.txt,
# once. The marker .complete is written last; a venv without it is wiped and rebuilt. Older
# venv-* directories are removed after a successful build. Serialised with flock.
py_venv_install() {
  local venv py=${CILVEST_PYTHON3:-python3} start=$SECONDS
  venv=$(py_venv)
  [[ -f $venv/.complete ]] && return 0
  (
    flock 9
    [[ -f $venv/.complete ]] && exit 0
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || die "$py is older than 3.11 (bqemulator needs >= 3.11)"
    log "building Python venv $venv (pip install -r $PY_REQUIREMENTS; a few minutes the first time)"
    rm -rf "$venv"
    "$py" -m venv "$venv" || die "python3 -m venv failed"
    "$venv/bin/python" -m pip install --quiet --require-virtualenv -r "$PY_REQUIREMENTS" \
      >"$CILVEST_RUN/logs/pip.log" 2>&1 || { tail -n 30 "$CILVEST_RUN/logs/pip.log" >&2; die "pip install failed"; }
    cp "$PY_REQUIREMENTS" "$venv/requirements.txt"
    touch "$venv/.complete"
    local old pidfile
    for old in "$CILVEST_CACHE"/venv-*; do
      [[ $old != "$venv" && -d $old ]] || continue
      for pidfile in "$CILVEST_RUN"/pids/*; do   # keep a venv that a running service still uses
        [[ -f $pidfile ]] && tr '\0' ' ' <"/proc/$(cat "$pidfile")/cmdline" 2>/dev/null | grep -qF "$old/" \
          && { log "keeping $old: in use by $(basename "$pidfile")"; continue 2; }
      done
      rm -rf "$old"
    done
    log "venv ready in $((SECONDS - start))s"
  ) 9>"$CILVEST_CACHE/venv.lock"
}

# bq_gcs_root: where the BigQuery emulator's load jobs find gs://BUCKET/PATH, and where the GCS emulator mirrors its
# objects (gcs.sh, bigquery.sh). Here, not in either service's file, because each may run without the other (e.g.
# `bash scripts/testenv.d/gcs.sh restart`), and outside both run dirs so that restarting one leaves the other's view.
bq_gcs_root() { echo "$CILVEST_RUN/gcs-mirror"; }

# node_ip: the machine's primary IPv4 address (the source address of its default route). Pods on the real node
# reach the host's services there, and the kubelet registers it as the node's InternalIP.
node_ip() {
  local ip
  ip=$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}')
  [[ -n $ip ]] || ip=$(hostname -I 2>/dev/null | awk '{print $1}')
  [[ -n $ip ]] || die "no IPv4 address with a default route: pods could not reach this machine's services"
  echo "$ip"
}
