# shellcheck shell=bash
# gcs: a Google Cloud Storage emulator on http://127.0.0.1:4443, speaking both APIs our code uses:
# the JSON API (/storage/v1/..., bucket creation, listings in tests) and the XML API that object_store 0.13
# uses for every object operation (PUT/GET/HEAD/DELETE /{bucket}/{object}, copies, XML multipart uploads,
# GET /{bucket}?list-type=2 listings).
#
# Upstream fake-gcs-server (v1.56.1, the newest release) serves the JSON API and XML GET/HEAD/DELETE/list but
# answers an XML PUT with 400 "invalid uploadType" and has no XML multipart. So we build our own small
# command, scripts/testenv.d/gcs/main.go: the upstream fakestorage package (pinned in gcs/go.mod, fetched
# through the Go module proxy) behind a front that implements XML PUT (with x-goog-if-generation-match and
# x-goog-copy-source), XML multipart (initiate, parts, complete, abort) and a paged XML listing with
# start-after. It is built once into $CILVEST_CACHE/gcs-<upstream version>-<source hash>.
#
# Objects live on disk under $CILVEST_RUN/gcs/data (they survive gcs_restart; `down` wipes them), and are mirrored
# into the BigQuery emulator's gs:// root ($CILVEST_BQ_GCS_LOCAL_ROOT). Listens on every address (pods use the node IP).
# Exported: CILVEST_GCS_URL (what the tests read) and CILVEST_GCS_ENDPOINT (what workers/src/lake/mod.rs reads).

GCS_PORT=4443
GCS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/gcs"

gcs_url() { echo "http://127.0.0.1:$GCS_PORT"; }
gcs_upstream_version() {
  awk '{ for (i = 1; i < NF; i++) if ($i == "github.com/fsouza/fake-gcs-server") { print $(i + 1); exit } }' "$GCS_SRC/go.mod"
}
gcs_build_dir() {
  echo "$CILVEST_CACHE/gcs-$(gcs_upstream_version)-$(cat "$GCS_SRC/go.mod" "$GCS_SRC/go.sum" "$GCS_SRC/main.go" | sha256sum | cut -c1-12)"
}
gcs_bin() { echo "$(gcs_build_dir)/cilvest-fake-gcs"; }

# gcs_go ARGS...: go with the module and build caches shared with the other Go builds under $CILVEST_CACHE.
gcs_go() {
  env GOCACHE="$CILVEST_CACHE/go/build" GOMODCACHE="$CILVEST_CACHE/go/mod" GOPATH="$CILVEST_CACHE/go/path" \
    GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" go "$@"
}

gcs_install() {
  local dir
  dir=$(gcs_build_dir)
  [[ -x $dir/cilvest-fake-gcs ]] && return 0
  command -v go >/dev/null || die "gcs: go not found"
  (
    exec 9>"$CILVEST_CACHE/gcs-install.lock"
    flock 9
    [[ -x $dir/cilvest-fake-gcs ]] && exit 0
    log "gcs: building the emulator on fake-gcs-server $(gcs_upstream_version) into $dir (a few minutes the first time)"
    mkdir -p "$dir"
    # -C: build in the module's own directory; the binary goes straight to the cache.
    if ! gcs_go -C "$GCS_SRC" build -trimpath -ldflags "-s -w" -o "$dir/cilvest-fake-gcs.tmp" . \
      >"$CILVEST_RUN/logs/gcs-install.log" 2>&1; then
      tail -n 30 "$CILVEST_RUN/logs/gcs-install.log" >&2
      die "gcs: go build failed (log: $CILVEST_RUN/logs/gcs-install.log)"
    fi
    mv "$dir/cilvest-fake-gcs.tmp" "$dir/cilvest-fake-gcs"
    local old
    for old in "$CILVEST_CACHE"/gcs-*; do   # older builds, unless a running emulator still uses one
      [[ -d $old && $old != "$dir" ]] || continue
      [[ -f $CILVEST_RUN/pids/gcs ]] && tr '\0' ' ' <"/proc/$(cat "$CILVEST_RUN/pids/gcs")/cmdline" 2>/dev/null |
        grep -qF "$old/" && continue
      rm -rf "$old"
    done
    log "gcs: emulator built"
  ) || exit 1
}

# Health: the JSON API lists buckets.
gcs_healthy() { curl -sf --max-time 2 -o /dev/null "$(gcs_url)/storage/v1/b"; }

gcs_start() {
  if ! is_running gcs && port_open "$GCS_PORT"; then
    die "gcs: 127.0.0.1:$GCS_PORT is taken by a process testenv did not start"
  fi
  mkdir -p "$CILVEST_RUN/gcs/data" "$(bq_gcs_root)"
  # Every address: pods on the real node (node.sh) reach it on the node IP. Objects written through the XML API
  # are mirrored into the BigQuery emulator's gs:// root, so that its load jobs see the lake (see gcs/main.go).
  start_bg gcs "$(gcs_bin)" -host 0.0.0.0 -port "$GCS_PORT" \
    -backend filesystem -filesystem-root "$CILVEST_RUN/gcs/data" -mirror "$(bq_gcs_root)" \
    -public-host "127.0.0.1:$GCS_PORT" -external-url "$(gcs_url)"
  wait_for gcs 30 gcs_healthy || die "gcs did not become healthy"
}

gcs_stop() {
  stop_bg gcs
  rm -rf "$CILVEST_RUN/gcs"
}

# gcs_restart: stop the emulator and start it again on the same data.
gcs_restart() {
  stop_bg gcs
  gcs_start
}

gcs_env() {
  echo "export CILVEST_GCS_URL=$(gcs_url)"
  echo "export CILVEST_GCS_ENDPOINT=$(gcs_url)"
  echo "export CILVEST_GCS_POD_URL=http://$(node_ip):$GCS_PORT"
}

# Run as a command (fault tests): bash scripts/testenv.d/gcs.sh restart
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  # shellcheck source=common.sh
  source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  case ${1:-} in
    restart) gcs_restart ;;
    *) die "usage: $0 restart" ;;
  esac
fi
