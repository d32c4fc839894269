# shellcheck shell=bash
# registry: a local OCI registry (`crane registry serve` from github.com/google/go-containerregistry, built once
# through the Go module proxy) on :5000, blobs on disk under $CILVEST_RUN/registry. The real node's containerd pulls
# from it over plain HTTP (hosts.toml written by node.sh), the way a GKE node pulls from Artifact Registry, so the
# end-to-end test runs images by digest instead of importing them behind the kubelet's back.
#
# Exported: CILVEST_REGISTRY (host:port as images are named), CILVEST_CRANE (the crane binary, for `crane push`).

REGISTRY_PORT=5000
REGISTRY_CRANE_VERSION=0.22.1

registry_crane() { echo "$CILVEST_CACHE/crane-v$REGISTRY_CRANE_VERSION/bin/crane"; }

registry_install() {
  [[ -x $(registry_crane) ]] && return 0
  log "registry: building crane v$REGISTRY_CRANE_VERSION from the module proxy"
  (
    exec 9>"$CILVEST_CACHE/registry-install.lock"
    flock 9
    [[ -x $(registry_crane) ]] && exit 0
    GOBIN=$(dirname "$(registry_crane)") k8s_go install -trimpath -ldflags "-s -w" \
      "github.com/google/go-containerregistry/cmd/crane@v$REGISTRY_CRANE_VERSION" \
      >"$CILVEST_RUN/logs/registry-install.log" 2>&1 \
      || { tail -n 20 "$CILVEST_RUN/logs/registry-install.log" >&2; die "registry: building crane failed"; }
  ) || exit 1
}

registry_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null; }

registry_start() {
  if ! is_running registry && port_open "$REGISTRY_PORT"; then
    die "registry: port $REGISTRY_PORT is taken by another process"
  fi
  mkdir -p "$CILVEST_RUN/registry"
  # All addresses: the node's containerd may name it by the node IP as well as by loopback.
  start_bg registry "$(registry_crane)" registry serve --address ":$REGISTRY_PORT" --disk "$CILVEST_RUN/registry"
  wait_for registry 30 registry_healthy || die "registry did not start"
}

registry_stop() {
  stop_bg registry
  rm -rf "$CILVEST_RUN/registry"
}

registry_env() {
  echo "export CILVEST_REGISTRY=127.0.0.1:$REGISTRY_PORT"
  printf 'export CILVEST_CRANE=%q\n' "$(registry_crane)"
}
