# shellcheck shell=bash
# k8s: a real Kubernetes control plane on 127.0.0.1 for the operator's integration tests.
#
#   etcd                     127.0.0.1:12379 (client), :12380 (peer)      data in $CILVEST_RUN/k8s/etcd
#   kube-apiserver           https://127.0.0.1:16443                      RBAC + Node authz, default admission
#   kube-controller-manager  https://127.0.0.1:10257 (health only)        all default controllers
#   kube-scheduler           https://127.0.0.1:10259 (health only)
#   kwok                     http://127.0.0.1:10247 (health only)         plays the kubelet of one fake Node
#
# There are no kubelets and no container runtime: kwok marks the fake node Ready and moves the pods bound
# to it through Running (and Succeeded for Job pods), so Deployments, Jobs and CronJobs behave end to end.
#
# Everything is built from source through the Go module proxy (the only way in here: no release tarballs),
# once, into $CILVEST_CACHE keyed by version. GOCACHE/GOMODCACHE live in the cache too, so a version bump
# rebuilds only what changed. Certificates, kubeconfigs and etcd data are per run, under $CILVEST_RUN/k8s,
# and `down` wipes them.
#
# Exported for the tests (k8s_env): KUBECONFIG (admin, system:masters) and CILVEST_K8S_BIN (a directory with
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and kwok).

K8S_VERSION=1.33.13        # newest 1.33 patch on the module proxy; staging modules are v0.33.13
K8S_ETCD_VERSION=3.6.16    # etcd server; 3.6 supports the 3.5 client API kube-apiserver 1.33 speaks
K8S_KWOK_VERSION=0.8.0

K8S_API_PORT=16443
K8S_ETCD_PORT=12379
K8S_ETCD_PEER_PORT=12380
K8S_KCM_PORT=10257
K8S_SCHED_PORT=10259
K8S_KWOK_PORT=10247
K8S_SERVICE_CIDR=10.96.0.0/16   # the `kubernetes` Service gets the first address, 10.96.0.1
K8S_FAKE_NODE=kwok-node-0

k8s_dir() { echo "$CILVEST_RUN/k8s"; }
k8s_pki() { echo "$CILVEST_RUN/k8s/pki"; }
k8s_kubeconfig() { echo "$CILVEST_RUN/k8s/kubeconfig"; }
k8s_build_root() { echo "$CILVEST_CACHE/k8s-v$K8S_VERSION"; }
k8s_bin() { echo "$CILVEST_CACHE/k8s-v$K8S_VERSION/bin"; }

# The kubectl to drive the cluster with: the matching v1.33 one we built, else the machine's.
k8s_kubectl() {
  local kubectl=$(k8s_bin)/kubectl
  [[ -x $kubectl ]] || kubectl=$(command -v kubectl) || die "no kubectl"
  "$kubectl" --kubeconfig "$(k8s_kubeconfig)" "$@"
}

# ---------------------------------------------------------------------------------------------------
# install

# k8s_go ARGS...: the go command with the shared build and module caches under $CILVEST_CACHE.
# CGO_ENABLED=0 gives static binaries (as upstream builds these components) and needs no C toolchain;
# GOTOOLCHAIN=local keeps go from trying to fetch another toolchain when a module asks for a newer one.
k8s_go() {
  env GOCACHE="$CILVEST_CACHE/go/build" GOMODCACHE="$CILVEST_CACHE/go/mod" GOPATH="$CILVEST_CACHE/go/path" \
    GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false go "$@"
}

# The Kubernetes components from the k8s.io/kubernetes module. That module cannot be built as a plain
# dependency: its go.mod requires the staging modules (k8s.io/api, client-go, ...) at v0.0.0 and points
# them at ./staging/src with `replace`, which only applies inside its own repository. So a throwaway main
# module requires k8s.io/kubernetes and replaces each staging module with its published v0.<minor>.<patch>.
k8s_build_kubernetes() {
  local root src out kmod line pkg ldflags build_date commit
  local minor patch staging_version
  IFS=. read -r _ minor patch <<<"$K8S_VERSION"
  staging_version=0.$minor.$patch
  root=$(k8s_build_root); src=$root/src; out=$(k8s_bin)
  mkdir -p "$src" "$out"
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl v$K8S_VERSION (slow once)"

  # Kubernetes' own go.mod lists every staging module it replaces; map each to the published version.
  kmod=$(cd "$src" && k8s_go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | jq -r .GoMod)
  [[ -f $kmod ]] || die "could not download k8s.io/kubernetes@v$K8S_VERSION"
  {
    echo "module cilvest.local/k8s-build"
    echo
    # Upstream builds with go1.24 semantics for GODEBUG-controlled behaviour (TLS, x509, ...); keep them.
    echo "go 1.24.0"
    echo "godebug default=go1.24"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    while read -r line; do
      [[ $line =~ ^(k8s\.io/[a-z0-9-]+)[[:space:]]+=\>[[:space:]]+\./staging/ ]] || continue
      echo "	${BASH_REMATCH[1]} => ${BASH_REMATCH[1]} v$staging_version"
    done <"$kmod"
    echo ")"
  } >"$src/go.mod"
  grep -q 'k8s.io/client-go =>' "$src/go.mod" || die "found no staging replaces in $kmod"
  rm -f "$src/go.sum"

  local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  # go get resolves the graph and records go.sum for exactly these packages (no tidy needed). Each
  # package needs the explicit @version: a bare path means @upgrade, i.e. the newest Kubernetes.
  (cd "$src" && k8s_go get "${pkgs[@]/%/@v$K8S_VERSION}") || die "go get for kubernetes v$K8S_VERSION failed"

  # Version stamps, as upstream's hack/lib/version.sh sets them; without them every component (and
  # `kubectl version`) reports v0.0.0-master. The commit and date come from the proxy's record of the tag.
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  commit=$(cd "$src" && k8s_go list -m -json "k8s.io/kubernetes@v$K8S_VERSION" | jq -r '.Origin.Hash // empty') || commit=""
  ldflags="-s -w"   # no symbol tables: smaller binaries and a much faster link
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
    [[ -z $commit ]] || ldflags+=" -X $pkg.gitCommit=$commit"
  done

  # One go build for all four: they share most packages, so each is compiled once.
  (cd "$src" && k8s_go build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}") \
    || die "building kubernetes v$K8S_VERSION failed"
}

# etcd's server module is a main package; its go.mod has `replace` lines (for its own monorepo), so
# `go install pkg@version` refuses it and a throwaway module is needed here too. Its requirements already
# name the matching api/client/pkg versions, so no replaces of our own.
k8s_build_etcd() {
  local root=$CILVEST_CACHE/etcd-v$K8S_ETCD_VERSION
  mkdir -p "$root/src" "$root/bin"
  log "building etcd v$K8S_ETCD_VERSION"
  printf 'module cilvest.local/etcd-build\n\ngo 1.24.0\n' >"$root/src/go.mod"
  rm -f "$root/src/go.sum"
  (cd "$root/src" && k8s_go get "go.etcd.io/etcd/server/v3@v$K8S_ETCD_VERSION" &&
    k8s_go build -trimpath -ldflags "-s -w" -o "$root/bin/etcd" go.etcd.io/etcd/server/v3)
}

# Fallback when the Go route to etcd fails: Debian's etcd-server package.
k8s_install_etcd_apt() {
  log "falling back to Debian's etcd-server"
  command -v etcd >/dev/null 2>&1 && return 0
  DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  # The package's own systemd unit would listen on the default ports; we only want the binary.
  systemctl disable --now etcd >/dev/null 2>&1 || true
  command -v etcd >/dev/null 2>&1
}

# kwok has no replace lines, so `go install pkg@version` works directly.
k8s_build_kwok() {
  local root=$CILVEST_CACHE/kwok-v$K8S_KWOK_VERSION
  mkdir -p "$root/bin"
  log "building kwok v$K8S_KWOK_VERSION"
  GOBIN=$root/bin k8s_go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@v$K8S_KWOK_VERSION"
}

k8s_install() {
  local bin etcd_bin kwok_bin b
  bin=$(k8s_bin)
  etcd_bin=$CILVEST_CACHE/etcd-v$K8S_ETCD_VERSION/bin/etcd
  kwok_bin=$CILVEST_CACHE/kwok-v$K8S_KWOK_VERSION/bin/kwok
  mkdir -p "$bin"
  # Serialise concurrent installs (two `up`s at once would otherwise build twice into the same place).
  exec {k8s_lock_fd}>"$CILVEST_CACHE/k8s-install.lock"
  flock "$k8s_lock_fd"

  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x $bin/$b ]] || { k8s_build_kubernetes; break; }
  done
  if [[ ! -x $etcd_bin ]]; then
    if [[ $(readlink "$bin/etcd" 2>/dev/null) == /usr/* && -x $bin/etcd ]]; then
      etcd_bin=$(readlink "$bin/etcd")   # the apt fallback of an earlier install: don't retry the build
    elif ! k8s_build_etcd; then
      log "building etcd from the module proxy failed"
      k8s_install_etcd_apt || die "no etcd: neither the Go build nor apt-get worked"
      etcd_bin=$(command -v etcd)
    fi
  fi
  [[ -x $kwok_bin ]] || k8s_build_kwok || die "building kwok v$K8S_KWOK_VERSION failed"

  # One directory with every binary for CILVEST_K8S_BIN.
  ln -sfn "$etcd_bin" "$bin/etcd"
  ln -sfn "$kwok_bin" "$bin/kwok"
  flock -u "$k8s_lock_fd"
  exec {k8s_lock_fd}>&-
}
