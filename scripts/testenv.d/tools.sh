# shellcheck shell=bash
# tools: command-line tools the chart and Argo CD tests drive; nothing to start or stop.
#
#   helm   v$TOOLS_HELM_VERSION, built from helm.sh/helm/v3 through the Go module proxy (no release tarballs here),
#          into $CILVEST_CACHE/helm-v<version>/bin; GOCACHE/GOMODCACHE shared with the k8s build
#   lua5.1 Debian's Lua 5.1 interpreter: Argo CD runs health checks in gopher-lua, which has Lua 5.1 semantics
#   chromium Debian's Chromium, run headless by the demo test to render the HTML report and screenshot its chart
#   cargo-deny v$TOOLS_CARGO_DENY_VERSION from crates.io, into $CILVEST_CACHE/tools/cargo-deny-<version>/bin: the
#          dependency policy check of scripts/deny
#   cargo-cyclonedx v$TOOLS_CYCLONEDX_VERSION from crates.io: the images' SBOMs (scripts/image)
#   cosign v$TOOLS_COSIGN_VERSION, built from github.com/sigstore/cosign through the Go module proxy: signs and verifies
#          the images (scripts/image push --sign, scripts/e2e)
#   the Prometheus Operator's CRDs (PodMonitor, ServiceMonitor, PrometheusRule) of v$TOOLS_PROMETHEUS_OPERATOR_VERSION,
#          from its module on the Go module proxy (example/prometheus-operator-crd/): the chart's monitoring objects
#          are dry-run against them
#
# Exported for the tests (tools_env): CILVEST_HELM, CILVEST_LUA, CILVEST_CHROMIUM, CILVEST_CARGO_DENY,
# CILVEST_CARGO_CYCLONEDX, CILVEST_COSIGN, CILVEST_PROMETHEUS_CRDS (a directory of the three CRDs).

TOOLS_HELM_VERSION=3.22.0   # newest helm v3 on the module proxy (v4 changed the CLI; the chart is apiVersion v2)

TOOLS_CARGO_DENY_VERSION=0.20.2
TOOLS_CYCLONEDX_VERSION=0.5.9
TOOLS_COSIGN_VERSION=2.6.5   # newest v2 on the module proxy; v3 changed the bundle format defaults
TOOLS_PROMETHEUS_OPERATOR_VERSION=0.85.0   # newest on the module proxy (a 4 MB module zip)

tools_helm_bin() { echo "$CILVEST_CACHE/helm-v$TOOLS_HELM_VERSION/bin/helm"; }
tools_lua_bin() { command -v lua5.1 || echo /usr/bin/lua5.1; }
tools_chromium_bin() { echo /usr/bin/chromium; }
tools_cargo_deny_bin() { echo "$CILVEST_CACHE/tools/cargo-deny-$TOOLS_CARGO_DENY_VERSION/bin/cargo-deny"; }
tools_cyclonedx_bin() { echo "$CILVEST_CACHE/tools/cargo-cyclonedx-$TOOLS_CYCLONEDX_VERSION/bin/cargo-cyclonedx"; }
tools_cosign_bin() { echo "$CILVEST_CACHE/cosign-v$TOOLS_COSIGN_VERSION/bin/cosign"; }
tools_prometheus_crds_dir() { echo "$CILVEST_CACHE/prometheus-operator-crds-v$TOOLS_PROMETHEUS_OPERATOR_VERSION"; }
TOOLS_PROMETHEUS_CRDS=(podmonitors servicemonitors prometheusrules)

# The CRDs as the Prometheus Operator's release ships them, out of its Go module.
tools_fetch_prometheus_crds() {
  local module=github.com/prometheus-operator/prometheus-operator dir out kind
  out=$(tools_prometheus_crds_dir)
  log "fetching the Prometheus Operator v$TOOLS_PROMETHEUS_OPERATOR_VERSION CRDs from the module proxy"
  dir=$(cd /tmp && tools_go mod download -json "$module@v$TOOLS_PROMETHEUS_OPERATOR_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') ||
    die "could not fetch $module@v$TOOLS_PROMETHEUS_OPERATOR_VERSION from the module proxy"
  mkdir -p "$out.tmp"
  for kind in "${TOOLS_PROMETHEUS_CRDS[@]}"; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$out.tmp/" ||
      die "$module@v$TOOLS_PROMETHEUS_OPERATOR_VERSION has no $kind CRD where expected"
  done
  chmod -R u+w "$out.tmp" && mv "$out.tmp" "$out"
}

# tools_cargo_install CRATE VERSION: `cargo install` into $CILVEST_CACHE/tools/CRATE-VERSION, once.
# Measured on this 2-core machine, idle: cargo-deny 283 s, cargo-cyclonedx 85 s.
tools_cargo_install() {
  local crate=$1 version=$2 root=$CILVEST_CACHE/tools/$1-$2 build start=$SECONDS
  log "building $crate $version from crates.io (a few minutes once)"
  # Its own throwaway target directory: CARGO_TARGET_DIR (set by .ci/run) must not collect a tool's build.
  build=$(mktemp -d)
  cargo install "$crate" --version "$version" --locked --quiet --root "$root" --target-dir "$build" \
    || { rm -rf "$build"; die "cargo install $crate $version failed"; }
  rm -rf "$build"
  log "$crate $version built in $((SECONDS - start))s"
}

# cosign's go.mod has no replace lines either. Measured: 169 s with the Go caches the k8s build left.
tools_build_cosign() {
  local start=$SECONDS
  log "building cosign v$TOOLS_COSIGN_VERSION from the module proxy (a few minutes once)"
  GOBIN=$(dirname "$(tools_cosign_bin)") tools_go install -trimpath -ldflags "-s -w" \
    "github.com/sigstore/cosign/v2/cmd/cosign@v$TOOLS_COSIGN_VERSION" || die "building cosign v$TOOLS_COSIGN_VERSION failed"
  log "cosign v$TOOLS_COSIGN_VERSION built in $((SECONDS - start))s"
}

# tools_go ARGS...: the go command with the build and module caches the k8s build uses (see k8s_go).
tools_go() {
  env GOCACHE="$CILVEST_CACHE/go/build" GOMODCACHE="$CILVEST_CACHE/go/mod" GOPATH="$CILVEST_CACHE/go/path" \
    GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false go "$@"
}

# helm's go.mod has no replace lines, so `go install pkg@version` works directly. The ldflags are the ones its
# Makefile sets: the version stamps, and the Kubernetes version of its client-go (1.<minor of v0.<minor>>), which
# `helm template` reports as .Capabilities.KubeVersion and `helm lint` checks deprecated APIs against; without them
# helm says v3.22+unreleased and Kubernetes v1.20.
tools_build_helm() {
  local root=$CILVEST_CACHE/helm-v$TOOLS_HELM_VERSION work start=$SECONDS mod commit client_go k8s_minor ldflags
  work=$root/src
  mkdir -p "$root/bin" "$work"
  log "building helm v$TOOLS_HELM_VERSION from the module proxy (a few minutes once)"
  printf 'module cilvest.local/helm-build\n' >"$work/go.mod"
  read -r mod commit < <(cd "$work" && tools_go list -m -f '{{.GoMod}} {{with .Origin}}{{.Hash}}{{end}}' \
    "helm.sh/helm/v3@v$TOOLS_HELM_VERSION") || true
  [[ -f ${mod:-} ]] || die "could not fetch helm.sh/helm/v3@v$TOOLS_HELM_VERSION from the module proxy"
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$mod")
  k8s_minor=$(cut -d. -f2 <<<"${client_go#v}")
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$TOOLS_HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  [[ -z $commit ]] || ldflags+=" -X helm.sh/helm/v3/internal/version.gitCommit=$commit"
  if [[ -n $k8s_minor ]]; then
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
    done
  fi
  GOBIN=$root/bin tools_go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@v$TOOLS_HELM_VERSION" \
    || die "building helm v$TOOLS_HELM_VERSION failed"
  log "helm v$TOOLS_HELM_VERSION built in $((SECONDS - start))s"
}

tools_install() {
  exec {tools_lock_fd}>"$CILVEST_CACHE/tools-install.lock"
  flock "$tools_lock_fd"
  [[ -x $(tools_helm_bin) ]] || tools_build_helm
  [[ -x $(tools_cargo_deny_bin) ]] || tools_cargo_install cargo-deny "$TOOLS_CARGO_DENY_VERSION"
  [[ -x $(tools_cyclonedx_bin) ]] || tools_cargo_install cargo-cyclonedx "$TOOLS_CYCLONEDX_VERSION"
  [[ -x $(tools_cosign_bin) ]] || tools_build_cosign
  [[ -d $(tools_prometheus_crds_dir) ]] || tools_fetch_prometheus_crds
  if ! command -v lua5.1 >/dev/null 2>&1; then
    log "installing Debian's lua5.1"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.1 >/dev/null; }; then
      die "apt-get install lua5.1 failed"
    fi
  fi
  if [[ ! -x $(tools_chromium_bin) ]]; then
    log "installing Debian's chromium (headless, for the demo's HTML report test)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      die "apt-get install chromium failed"
    fi
  fi
  exec {tools_lock_fd}>&-
}

tools_start() { :; }
tools_stop() { :; }
tools_healthy() {
  [[ -x $(tools_helm_bin) && -x $(tools_chromium_bin) && -x $(tools_cargo_deny_bin) && -x $(tools_cyclonedx_bin) &&
    -x $(tools_cosign_bin) && -d $(tools_prometheus_crds_dir) ]] && command -v lua5.1 >/dev/null 2>&1
}

tools_env() {
  printf 'export CILVEST_HELM=%q\n' "$(tools_helm_bin)"
  printf 'export CILVEST_LUA=%q\n' "$(tools_lua_bin)"
  printf 'export CILVEST_CHROMIUM=%q\n' "$(tools_chromium_bin)"
  printf 'export CILVEST_CARGO_DENY=%q\n' "$(tools_cargo_deny_bin)"
  printf 'export CILVEST_CARGO_CYCLONEDX=%q\n' "$(tools_cyclonedx_bin)"
  printf 'export CILVEST_COSIGN=%q\n' "$(tools_cosign_bin)"
  printf 'export CILVEST_PROMETHEUS_CRDS=%q\n' "$(tools_prometheus_crds_dir)"
}
