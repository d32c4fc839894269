# shellcheck shell=bash
# Elasticsearch API: osmem-server (PyPI osmem-server; an in-memory OpenSearch-compatible server,
# a static binary bundled in the wheel) on http://127.0.0.1:9200. It keeps everything in memory:
# `down` (or any restart) starts from an empty cluster.
# Sourced by scripts/testenv; uses the shared venv from common.sh.

SEARCH_PORT=9200

search_bin() {
  local bin
  for bin in "$(py_venv)"/lib/python3*/site-packages/osmem_server/bin/osmem-server; do
    echo "$bin"; return 0
  done
}

search_install() {
  py_venv_install || return 1
  [[ -x $(search_bin) ]] || die "osmem-server binary missing from $(py_venv)"
}

search_start() {
  if ! is_running search && port_open "$SEARCH_PORT"; then
    die "search: port $SEARCH_PORT is taken by another process"
  fi
  # -no-stdin-watch: by default the server exits when its stdin closes (it is meant to be a child of
  # a test process); start_bg gives it /dev/null.
  start_bg search "$(search_bin)" -addr "0.0.0.0:$SEARCH_PORT" -no-stdin-watch
  wait_for search 30 search_healthy
}

search_stop() {
  stop_bg search
  rm -rf "$CILVEST_RUN/search"
}

search_healthy() {
  curl -sf --max-time 3 "http://127.0.0.1:$SEARCH_PORT/_cluster/health" >/dev/null 2>&1
}

search_env() {
  echo "export CILVEST_ES_URL=http://127.0.0.1:$SEARCH_PORT"
  echo "export CILVEST_ES_POD_URL=http://$(node_ip):$SEARCH_PORT"
}
