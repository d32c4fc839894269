# shellcheck shell=bash
# k8s: a real Kubernetes control plane on 127.0.0.1 for the operator's integration tests.
#
#   etcd                     127.0.0.1:12379 (client), :12380 (peer)      data in $CILVEST_RUN/k8s/etcd
#   kube-apiserver           https://127.0.0.1:16443 (and <node IP>)      RBAC + Node authz, default admission
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
  local kubectl
  kubectl=$(k8s_bin)/kubectl
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
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy v$K8S_VERSION (slow once)"

  # The tag's go.mod, date and commit, as the module proxy records them (a minimal go.mod first, so a
  # stale one from an interrupted build can't get in the way).
  printf 'module cilvest.local/k8s-build\n' >"$src/go.mod"
  rm -f "$src/go.sum"
  read -r kmod build_date commit < <(cd "$src" && k8s_go list -m \
    -f '{{.GoMod}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}} {{with .Origin}}{{.Hash}}{{end}}' \
    "k8s.io/kubernetes@v$K8S_VERSION") || true
  [[ -f ${kmod:-} ]] || die "could not fetch k8s.io/kubernetes@v$K8S_VERSION from the module proxy"

  # Kubernetes' own go.mod lists every staging module it replaces; map each to the published version.
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

  # kubelet and kube-proxy too: the real node (testenv.d/node.sh) runs them, from the same source and build.
  local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  # go get resolves the graph and records go.sum for exactly these packages (no tidy needed). Each
  # package needs the explicit @version: a bare path means @upgrade, i.e. the newest Kubernetes.
  (cd "$src" && k8s_go get "${pkgs[@]/%/@v$K8S_VERSION}") || die "go get for kubernetes v$K8S_VERSION failed"

  # Version stamps, as upstream's hack/lib/version.sh sets them; without them every component (and
  # `kubectl version`) reports v0.0.0-master. Date and commit are the tag's, so rebuilds are identical.
  ldflags="-s -w"   # no symbol tables: smaller binaries and a much faster link
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
    [[ -z $build_date ]] || ldflags+=" -X $pkg.buildDate=$build_date"
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

  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
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

# ---------------------------------------------------------------------------------------------------
# certificates and kubeconfigs (per run: `down` wipes them, `up` makes new ones)

# k8s_sign NAME SUBJECT EXTENSIONS [CA]: a P-256 key and a certificate signed by CA (default: the run's
# main CA). P-256 rather than RSA: key generation is instant; Go, kubectl, curl and rustls all take it.
k8s_sign() {
  local name=$1 subject=$2 extensions=$3 ca=${4:-ca} pki
  pki=$(k8s_pki)
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
    -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -out "$pki/$name.crt" \
    -extfile <(printf '%b' "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n$extensions") \
    2>/dev/null
  rm -f "$pki/$name.csr"
}

# k8s_write_kubeconfig FILE CERT_NAME: a kubeconfig for the client certificate CERT_NAME, data inline so
# the file stands alone (kube-rs, kubectl and the Go components all read it).
k8s_write_kubeconfig() {
  local file=$1 cert=$2 pki
  pki=$(k8s_pki)
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cilvest
  cluster:
    server: https://127.0.0.1:$K8S_API_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$pki/$cert.crt")
    client-key-data: $(base64 -w0 "$pki/$cert.key")
contexts:
- name: cilvest
  context: {cluster: cilvest, user: $cert, namespace: default}
current-context: cilvest
EOF
  chmod 600 "$file"
}

k8s_make_pki() {
  local pki dir
  pki=$(k8s_pki); dir=$(k8s_dir)
  [[ -f $pki/done ]] && return 0   # keep a running apiserver's certificates when start is re-run
  rm -rf "$pki"; mkdir -p "$pki"
  log "k8s: making certificates in $pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=cilvest-testenv-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    2>/dev/null
  # Every name a client may use for the apiserver: loopback, and the in-cluster Service names and IP
  # (10.96.0.1, the first address of the service range) that pods' service-account kubeconfigs point to.
  k8s_sign apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$(node_ip),DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # system:masters bypasses RBAC entirely: the tests' own identity. They check RBAC with --as=... instead.
  k8s_sign admin "/O=system:masters/CN=cilvest-admin" "extendedKeyUsage=clientAuth"
  # The components' own identities, bound by the default RBAC bootstrap policy.
  k8s_sign controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  k8s_sign scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  # The apiserver's identity towards kubelets (logs, exec, port-forward), as kubeadm names it.
  k8s_sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
  # The aggregation layer's front proxy: its own CA (a client cert from the main CA must not be able to
  # assert X-Remote-User), and the apiserver's client cert for it. With these in the apiserver, the
  # extension-apiserver-authentication ConfigMap is complete, and the controller manager and scheduler
  # stop complaining about a missing requestheader CA.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=cilvest-testenv-front-proxy-ca" -keyout "$pki/front-proxy-ca.key" -out "$pki/front-proxy-ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    2>/dev/null
  k8s_sign front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage=clientAuth" front-proxy-ca
  # Service-account tokens: the apiserver signs them (TokenRequest) with the private key and checks them
  # with the public one; the controller manager's token controller needs the same private key for the
  # token Secrets of type kubernetes.io/service-account-token that it still fills in on request.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

  k8s_write_kubeconfig "$dir/kubeconfig" admin
  k8s_write_kubeconfig "$dir/controller-manager.kubeconfig" controller-manager
  k8s_write_kubeconfig "$dir/scheduler.kubeconfig" scheduler
  touch "$pki/done"
}

# ---------------------------------------------------------------------------------------------------
# kwok: the fake node and what its "kubelet" does. kwok ships no default behaviour of its own when run
# directly (only kwokctl adds some), so these Stages say what happens to the node and its pods.

K8S_NODE_CPU=8
K8S_NODE_MEMORY=32Gi
K8S_NODE_PODS=110

k8s_write_kwok_config() {
  cat >"$(k8s_dir)/kwok.yaml" <<EOF
# Node: once kwok sees our fake node without Ready=True, it reports a healthy kubelet of v$K8S_VERSION.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: cilvest-node-ready
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select(.type == "Ready") | .status'
      operator: NotIn
      values: ['True']
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      - {type: Ready, status: "True", reason: KubeletReady, message: "kwok plays the kubelet", lastHeartbeatTime: {{ \$now | Quote }}, lastTransitionTime: {{ \$now | Quote }}}
      - {type: MemoryPressure, status: "False", reason: KubeletHasSufficientMemory, message: "", lastHeartbeatTime: {{ \$now | Quote }}, lastTransitionTime: {{ \$now | Quote }}}
      - {type: DiskPressure, status: "False", reason: KubeletHasNoDiskPressure, message: "", lastHeartbeatTime: {{ \$now | Quote }}, lastTransitionTime: {{ \$now | Quote }}}
      - {type: PIDPressure, status: "False", reason: KubeletHasSufficientPID, message: "", lastHeartbeatTime: {{ \$now | Quote }}, lastTransitionTime: {{ \$now | Quote }}}
      addresses:
      - {type: InternalIP, address: {{ NodeIP | Quote }}}
      - {type: Hostname, address: {{ .metadata.name | Quote }}}
      capacity: {cpu: "$K8S_NODE_CPU", memory: "$K8S_NODE_MEMORY", pods: "$K8S_NODE_PODS"}
      allocatable: {cpu: "$K8S_NODE_CPU", memory: "$K8S_NODE_MEMORY", pods: "$K8S_NODE_PODS"}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: v$K8S_VERSION
        kubeProxyVersion: v$K8S_VERSION
        containerRuntimeVersion: kwok://v$K8S_KWOK_VERSION
        kernelVersion: kwok
        osImage: kwok
        bootID: ""
        machineID: ""
        systemUUID: ""
      phase: Running
---
# Node heartbeat: refresh the conditions now and then. kwok also renews the node's Lease, which alone
# keeps the node lifecycle controller from marking it NotReady; this keeps \`kubectl describe\` honest.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: cilvest-node-heartbeat
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select(.type == "Ready") | .status'
      operator: In
      values: ['True']
  delay: {durationMilliseconds: 30000, jitterDurationMilliseconds: 35000}
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      {{ range .status.conditions }}
      - {type: {{ .type | Quote }}, status: {{ .status | Quote }}, reason: {{ .reason | Quote }}, message: {{ .message | Quote }}, lastHeartbeatTime: {{ \$now | Quote }}, lastTransitionTime: {{ .lastTransitionTime | Quote }}}
      {{ end }}
---
# Pod: a pending pod bound to the fake node "starts" at once: every container running and ready, init
# containers done (or running, for sidecars), a fake pod IP from kwok's --cidr.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: cilvest-pod-running
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.phase'
      operator: In
      values: [Pending]
  next:
    statusTemplate: |
      {{ \$now := Now }}
      phase: Running
      startTime: {{ \$now | Quote }}
      conditions:
      - {type: PodReadyToStartContainers, status: "True", lastTransitionTime: {{ \$now | Quote }}}
      - {type: Initialized, status: "True", lastTransitionTime: {{ \$now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ \$now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ \$now | Quote }}}
      {{ range .spec.readinessGates }}
      - {type: {{ .conditionType | Quote }}, status: "True", lastTransitionTime: {{ \$now | Quote }}}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: true
        started: true
        restartCount: 0
        state: {running: {startedAt: {{ \$now | Quote }}}}
      {{ end }}
      {{ with .spec.initContainers }}
      initContainerStatuses:
      {{ range . }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: true
        restartCount: 0
        {{ if eq (or .restartPolicy "") "Always" }}
        started: true
        state: {running: {startedAt: {{ \$now | Quote }}}}
        {{ else }}
        state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ \$now | Quote }}, finishedAt: {{ \$now | Quote }}}}
        {{ end }}
      {{ end }}
      {{ end }}
      {{ with NodeIPWith .spec.nodeName }}
      hostIP: {{ . | Quote }}
      hostIPs: [{ip: {{ . | Quote }}}]
      {{ end }}
      {{ with PodIPWith .spec.nodeName (or .spec.hostNetwork false) (or .metadata.uid "") (or .metadata.name "") (or .metadata.namespace "") }}
      podIP: {{ . | Quote }}
      podIPs: [{ip: {{ . | Quote }}}]
      {{ end }}
---
# Job pods "run" for a second, then exit 0, so Jobs (and CronJobs) complete.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: cilvest-job-pod-succeeded
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.phase'
      operator: In
      values: [Running]
    - key: '.metadata.ownerReferences.[].kind'
      operator: In
      values: [Job]
  delay: {durationMilliseconds: 1000}
  next:
    statusTemplate: |
      {{ \$now := Now }}
      phase: Succeeded
      conditions:
      - {type: ContainersReady, status: "False", reason: PodCompleted, lastTransitionTime: {{ \$now | Quote }}}
      - {type: Ready, status: "False", reason: PodCompleted, lastTransitionTime: {{ \$now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          running: null
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ \$now | Quote }}, finishedAt: {{ \$now | Quote }}}
      {{ end }}
---
# Deletion: with no real kubelet, nothing would ever confirm a graceful delete; kwok finishes it.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: cilvest-pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: Exists
  next:
    delete: true
EOF
}

# The one fake node. No taints, so every workload lands there; label type=kwok to select it explicitly.
k8s_apply_fake_node() {
  k8s_kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $K8S_FAKE_NODE
  labels:
    type: kwok
    kubernetes.io/hostname: $K8S_FAKE_NODE
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
status:
  capacity: {cpu: "$K8S_NODE_CPU", memory: "$K8S_NODE_MEMORY", pods: "$K8S_NODE_PODS"}
  allocatable: {cpu: "$K8S_NODE_CPU", memory: "$K8S_NODE_MEMORY", pods: "$K8S_NODE_PODS"}
EOF
}

# ---------------------------------------------------------------------------------------------------
# start, health, stop, env

k8s_readyz() { k8s_kubectl get --raw /readyz >/dev/null 2>&1; }
k8s_https_healthz() { curl -skf --max-time 2 "https://127.0.0.1:$1/healthz" >/dev/null; }
k8s_etcd_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$K8S_ETCD_PORT/health" | grep -q '"health":"true"'; }
k8s_kwok_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$K8S_KWOK_PORT/healthz" >/dev/null; }
k8s_default_sa() { k8s_kubectl -n default get serviceaccount default >/dev/null 2>&1; }
# Ready, and the node lifecycle controller has lifted the not-ready taint, so pods can be scheduled.
k8s_node_schedulable() {
  [[ $(k8s_kubectl get node "$K8S_FAKE_NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}/{.spec.taints}' 2>/dev/null) == True/ ]]
}

K8S_PROCS=(k8s-etcd k8s-apiserver k8s-controller-manager k8s-scheduler k8s-kwok)

# k8s_claim_port NAME PORT: fail early when a port we need is taken by something that is not ours.
k8s_claim_port() {
  if ! is_running "$1" && port_open "$2"; then
    die "k8s: port $2 (for $1) is in use by another process"
  fi
}

k8s_start() {
  local bin dir pki
  bin=$(k8s_bin); dir=$(k8s_dir); pki=$(k8s_pki)
  mkdir -p "$dir"
  k8s_make_pki
  k8s_claim_port k8s-etcd "$K8S_ETCD_PORT"
  k8s_claim_port k8s-etcd "$K8S_ETCD_PEER_PORT"
  k8s_claim_port k8s-apiserver "$K8S_API_PORT"
  k8s_claim_port k8s-controller-manager "$K8S_KCM_PORT"
  k8s_claim_port k8s-scheduler "$K8S_SCHED_PORT"
  k8s_claim_port k8s-kwok "$K8S_KWOK_PORT"

  # --unsafe-no-fsync: throwaway data, and fsync is what makes etcd slow on a busy CI disk.
  start_bg k8s-etcd "$bin/etcd" --name=cilvest --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$K8S_ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$K8S_ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
    --initial-cluster="cilvest=http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level=warn
  wait_for k8s-etcd 60 k8s_etcd_healthy || die "etcd did not start"

  # Default admission plugins (incl. PodSecurity, ServiceAccount, ResourceQuota) and all GA APIs.
  # Listening on every address and advertising the node IP: pods on the real node (node.sh) reach the apiserver
  # through the `kubernetes` Service (10.96.0.1:443), whose endpoint the lease reconciler keeps at <node IP>:16443
  # (a loopback advertise address would be refused as an endpoint). Clients on this machine keep using 127.0.0.1.
  # --kubelet-preferred-address-types=InternalIP: for logs/exec the apiserver dials the node's kubelet;
  # kwok's node reports 127.0.0.1, whereas the default (Hostname first) would send its name to DNS. It presents
  # the apiserver-kubelet-client certificate, which the real kubelet's webhook authorizer admits.
  start_bg k8s-apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$K8S_ETCD_PORT" \
    --bind-address=0.0.0.0 --advertise-address="$(node_ip)" --secure-port="$K8S_API_PORT" \
    --cert-dir="$dir/apiserver" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range="$K8S_SERVICE_CIDR" \
    --allow-privileged=true \
    --endpoint-reconciler-type=lease --kubelet-preferred-address-types=InternalIP \
    --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
    --requestheader-client-ca-file="$pki/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$pki/front-proxy-client.crt" --proxy-client-key-file="$pki/front-proxy-client.key"
  wait_for k8s-apiserver 120 k8s_readyz || die "kube-apiserver did not become ready"

  # Each controller gets its own service account (as in a real cluster), so RBAC applies to them too.
  # --flex-volume-plugin-dir: its default is under /usr/libexec, which it would otherwise create.
  start_bg k8s-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$K8S_KCM_PORT" --cert-dir="$dir/controller-manager" \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --use-service-account-credentials=true --leader-elect=false --controllers='*' \
    --flex-volume-plugin-dir="$dir/controller-manager/flexvolume"
  start_bg k8s-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$K8S_SCHED_PORT" --cert-dir="$dir/scheduler" \
    --leader-elect=false
  # kwok manages only nodes annotated kwok.x-k8s.io/node=fake. --node-ip=127.0.0.1: anything that dials
  # the "kubelet" (e.g. `kubectl logs`) gets a quick refusal on loopback rather than a packet to a
  # private network. Pod IPs come from --cidr and are never routed anywhere.
  # --node-lease-duration-seconds: the standalone kwok binary defaults to 0, i.e. no node Lease at all,
  # and then only the heartbeat Stage keeps the node lifecycle controller from marking the node NotReady
  # (50 s grace). With it, kwok renews the node's Lease like a kubelet does.
  k8s_write_kwok_config
  start_bg k8s-kwok "$bin/kwok" --config="$dir/kwok.yaml" --kubeconfig="$dir/kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --cidr=10.244.0.0/16 --server-address="127.0.0.1:$K8S_KWOK_PORT" \
    --node-lease-duration-seconds=40

  wait_for k8s-controller-manager 60 k8s_https_healthz "$K8S_KCM_PORT" || die "kube-controller-manager did not start"
  wait_for k8s-scheduler 60 k8s_https_healthz "$K8S_SCHED_PORT" || die "kube-scheduler did not start"
  wait_for k8s-kwok 60 k8s_kwok_healthy || die "kwok did not start"
  k8s_apply_fake_node
  wait_for k8s-kwok 60 k8s_node_schedulable || die "the fake node $K8S_FAKE_NODE did not become Ready"
  # The serviceaccount controller creates `default` in each namespace; pods can't be created before it.
  wait_for k8s-controller-manager 60 k8s_default_sa || die "no default ServiceAccount"
}

# Healthy: the apiserver answers /readyz and every process of ours is alive (a dead controller manager
# behind a healthy apiserver would otherwise go unnoticed, and `up` would not restart it).
k8s_healthy() {
  local p
  for p in "${K8S_PROCS[@]}"; do is_running "$p" || return 1; done
  k8s_readyz
}

# The apiserver's clients first, in parallel (each takes a second or two to shut down cleanly), then the
# apiserver, then etcd under it.
k8s_stop() {
  local p pids=()
  for p in k8s-kwok k8s-scheduler k8s-controller-manager; do stop_bg "$p" & pids+=($!); done
  wait "${pids[@]}"
  stop_bg k8s-apiserver
  stop_bg k8s-etcd
  rm -rf "$(k8s_dir)"
}

k8s_env() {
  printf 'export KUBECONFIG=%q\n' "$(k8s_kubeconfig)"
  printf 'export CILVEST_K8S_BIN=%q\n' "$(k8s_bin)"
}
