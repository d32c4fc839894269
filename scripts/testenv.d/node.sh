# shellcheck shell=bash
# node: one real Kubernetes node on this machine, for the end-to-end test (scripts/e2e). Not started by a plain
# `scripts/testenv up`: the rest of the suite runs its pods on kwok's fake node and must not get a real one.
#
#   containerd  Debian's containerd/runc, own socket, root and state under $CILVEST_RUN/node/containerd
#   CNI         Debian's bridge + host-local + portmap + firewall plugins, pod network 10.88.0.0/16 on cilvest0
#   kubelet     v$K8S_VERSION from the k8s build, root dir $CILVEST_RUN/node/kubelet, node IP = node_ip
#   kube-proxy  v$K8S_VERSION, iptables mode (ClusterIP Services, `kubernetes.default` = 10.96.0.1)
#   pause       a 0.7 MB static C program built here, imported as containerd's sandbox image
#
# While the node is up, kwok's fake node carries the taint cilvest.io/fake-node=true:NoSchedule, so that every
# pod without a toleration lands on the real node; `down node` lifts it. `down node` leaves nothing behind: pods
# are deleted first (so CNI DEL runs), then the processes stop, mounts under our dirs are unmounted, the iptables
# chains kubelet, kube-proxy and CNI made are removed, and so are the directories they write outside ours.
# Pitfalls and their fixes: ../shared/notes/real-node.md (restrict_oom_score_adj, node IP, FORWARD policy, ...).
#
# Exported (node_env): CILVEST_NODE_NAME, CILVEST_NODE_IP, CILVEST_CONTAINERD_SOCK, CILVEST_NODE_PROBE (a static
# program for smoke images: node/probe, used by scripts/node-smoke).

NODE_NAME=cilvest-node-0
NODE_POD_CIDR=10.88.0.0/16
NODE_BRIDGE=cilvest0
NODE_TAINT=cilvest.io/fake-node=true:NoSchedule
NODE_PAUSE_IMAGE=cilvest.local/pause:1
NODE_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node"

node_dir() { echo "$CILVEST_RUN/node"; }
node_sock() { echo "$CILVEST_RUN/node/containerd/containerd.sock"; }
node_ctr() { ctr -a "$(node_sock)" -n k8s.io "$@"; }
node_pause_dir() { echo "$CILVEST_CACHE/pause-$(sha256sum "$NODE_SRC/pause.c" | cut -c1-12)"; }
node_probe() { echo "$CILVEST_CACHE/probe-$(cat "$NODE_SRC"/probe/* | sha256sum | cut -c1-12)/probe"; }

node_install() {
  local tool
  for tool in containerd runc ctr iptables conntrack; do
    command -v "$tool" >/dev/null || die "node: $tool not found (scripts/bootstrap installs it)"
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/firewall ]] \
    || die "node: CNI plugins missing in /usr/lib/cni (scripts/bootstrap installs containernetworking-plugins)"
  k8s_install
  [[ -x $(k8s_bin)/kubelet && -x $(k8s_bin)/kube-proxy ]] || die "node: kubelet/kube-proxy missing in $(k8s_bin)"
  node_build_pause
  if [[ ! -x $(node_probe) ]]; then
    mkdir -p "$(dirname "$(node_probe)")"
    k8s_go -C "$NODE_SRC/probe" build -trimpath -ldflags "-s -w" -o "$(node_probe)" . || die "node: building the probe failed"
  fi
}

# The sandbox image: pause(2) until TERM/INT, reaping children meanwhile. Static, so the image holds one file.
node_build_pause() {
  local dir
  dir=$(node_pause_dir)
  [[ -f $dir/pause.tar ]] && return 0
  mkdir -p "$dir/root"
  gcc -Os -static -o "$dir/root/pause" "$NODE_SRC/pause.c" || die "node: building the pause program failed"
  strip "$dir/root/pause"
  "$NODE_SRC/../../image" archive --root "$dir/root" --name "$NODE_PAUSE_IMAGE" --entrypoint /pause \
    --user 65535:65535 --out "$dir/pause.tar.tmp" >/dev/null || die "node: writing the pause image failed"
  mv "$dir/pause.tar.tmp" "$dir/pause.tar"
}

node_write_config() {
  local dir pki ip
  dir=$(node_dir); pki=$(k8s_pki); ip=$(node_ip)
  mkdir -p "$dir"/{containerd/root,containerd/state,containerd/certs.d,runc,cni/net.d,cni/ipam,kubelet,pod-logs}
  cat >"$dir/containerd/config.toml" <<EOF
# Written by scripts/testenv.d/node.sh: our own containerd, never the system's.
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$(node_sock)"
[ttrpc]
  address = "$(node_sock).ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # Root here may not lower oom_score_adj (no CAP_SYS_RESOURCE); without this every pod fails to start.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$dir/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/containerd/certs.d"
EOF
  # The local registry (registry.sh) speaks plain HTTP, as a registry inside a VPC might; say so per host.
  local host
  for host in "127.0.0.1:$REGISTRY_PORT" "$ip:$REGISTRY_PORT"; do
    mkdir -p "$dir/containerd/certs.d/$host"
    cat >"$dir/containerd/certs.d/$host/hosts.toml" <<EOF
server = "http://$host"
[host."http://$host"]
  capabilities = ["pull", "resolve"]
EOF
  done
  # firewall: the host's FORWARD policy may be DROP; the plugin admits the pod's traffic in its own chain.
  cat >"$dir/cni/net.d/10-cilvest.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cilvest",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam", "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall"}
  ]
}
EOF
  k8s_sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth"
  k8s_sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
  k8s_write_kubeconfig "$dir/kubelet.kubeconfig" kubelet
  k8s_write_kubeconfig "$dir/kube-proxy.kubeconfig" kube-proxy
  # Webhook authentication and authorization: the apiserver's kubelet client certificate (system:masters) may
  # read logs and exec; anonymous requests may not.
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$(node_sock)
podLogsDir: $dir/pod-logs
failSwapOn: false
resolvConf: /etc/resolv.conf
# A shared CI disk: don't evict test pods for disk the other services use.
evictionHard: {memory.available: 100Mi, nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_CIDR
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# Setting nf_conntrack_max needs privileges this sandbox doesn't have; the kernel's value is fine.
conntrack: {maxPerCore: 0}
EOF
}

node_kubectl() { k8s_kubectl "$@"; }
node_ready() {
  [[ $(node_kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
node_containerd_up() { ctr -a "$(node_sock)" version >/dev/null 2>&1; }
node_kubelet_healthy() { curl -sf --max-time 2 http://127.0.0.1:10248/healthz >/dev/null; }
node_proxy_healthy() { curl -sf --max-time 2 http://127.0.0.1:10256/healthz >/dev/null; }

NODE_PROCS=(node-containerd node-kubelet node-kube-proxy)

node_start() {
  local dir ip
  dir=$(node_dir); ip=$(node_ip)
  k8s_healthy || die "node: the control plane is not up (scripts/testenv up k8s)"
  node_write_config
  # Pods route through the host: forwarding on, and bridged traffic through iptables (kube-proxy's DNAT).
  [[ -f $dir/ip_forward.orig ]] || cat /proc/sys/net/ipv4/ip_forward >"$dir/ip_forward.orig"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  if [[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables; fi

  start_bg node-containerd containerd --config "$dir/containerd/config.toml"
  wait_for node-containerd 30 node_containerd_up || die "node: containerd did not start"
  if ! node_ctr images check "name==$NODE_PAUSE_IMAGE" 2>/dev/null | grep -q "$NODE_PAUSE_IMAGE"; then
    node_ctr images import --no-unpack=false "$(node_pause_dir)/pause.tar" >/dev/null || die "node: importing pause failed"
  fi

  # The kubelet writes /var/lib/kubelet/device-plugins and /var/log/containers whatever its root dir; down removes them.
  start_bg node-kubelet "$(k8s_bin)/kubelet" --config="$dir/kubelet.yaml" --kubeconfig="$dir/kubelet.kubeconfig" \
    --root-dir="$dir/kubelet" --cert-dir="$dir/kubelet/pki" --hostname-override="$NODE_NAME" --node-ip="$ip" \
    --node-labels="cilvest.io/node=real" --v=1
  start_bg node-kube-proxy "$(k8s_bin)/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1
  wait_for node-kubelet 60 node_kubelet_healthy || die "node: the kubelet did not become healthy"
  wait_for node-kube-proxy 60 node_proxy_healthy || die "node: kube-proxy did not become healthy"
  wait_for node-kubelet 90 node_ready || die "node: $NODE_NAME did not become Ready"
  node_kubectl taint node "$K8S_FAKE_NODE" "$NODE_TAINT" --overwrite >/dev/null
}

node_healthy() {
  local p
  for p in "${NODE_PROCS[@]}"; do is_running "$p" || return 1; done
  node_ready
}

# Delete every pod bound to the node and wait, so that the kubelet tears down sandboxes (CNI DEL) while it runs.
node_drain() {
  k8s_readyz || return 0
  node_kubectl delete pods -A --field-selector "spec.nodeName=$NODE_NAME" --grace-period=1 --wait=false >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    [[ -z $(node_kubectl get pods -A --field-selector "spec.nodeName=$NODE_NAME" -o name 2>/dev/null) ]] \
      && [[ -z $(crictl_sandboxes) ]] && return 0
    sleep 1
  done
  log "node: pods still present after 60 s; removing their sandboxes by force"
}

crictl_sandboxes() { node_ctr containers ls -q 2>/dev/null; }

node_stop() {
  local dir
  dir=$(node_dir)
  if is_running node-kubelet; then node_drain; fi
  if k8s_readyz; then
    node_kubectl taint node "$K8S_FAKE_NODE" "${NODE_TAINT%%=*}-" >/dev/null 2>&1 || true
    node_kubectl delete node "$NODE_NAME" --wait=false >/dev/null 2>&1 || true
  fi
  stop_bg node-kube-proxy
  stop_bg node-kubelet
  # Whatever sandboxes are left: kill their shims through containerd before it goes.
  if is_running node-containerd; then
    local task
    for task in $(node_ctr tasks ls -q 2>/dev/null); do node_ctr tasks kill -s KILL "$task" >/dev/null 2>&1 || true; done
  fi
  stop_bg node-containerd
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $(node_sock)" 2>/dev/null || true
  node_unmount "$dir"
  node_clean_iptables
  ip link delete "$NODE_BRIDGE" >/dev/null 2>&1 || true
  node_clean_cgroups
  [[ -f $dir/ip_forward.orig ]] && cat "$dir/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward
  rm -rf /var/lib/kubelet/device-plugins /var/lib/kubelet/pod-resources /var/log/containers /var/lib/cni/results
  rmdir /var/lib/kubelet /var/lib/cni /run/netns 2>/dev/null || true
  rm -rf "$dir"
}

# Every mount below DIR (container rootfs overlays, pod volumes, netns), deepest first.
node_unmount() {
  local mnt
  awk -v d="$1" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done
  # The CNI network namespaces containerd made.
  awk '$2 ~ "^/run/netns/cni-" || $2 ~ "^/var/run/netns/cni-" {print $2}' /proc/mounts | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
    rm -f "$mnt"
  done
}

# The chains kube-proxy (KUBE-*), the kubelet (KUBE-*) and the CNI plugins (CNI-*) made, in every table.
node_clean_iptables() {
  local table chain
  for table in filter nat mangle; do
    iptables -t "$table" -S 2>/dev/null | grep -E '^-A .* -j (KUBE|CNI)-' | sed 's/^-A/-D/' | while read -r rule; do
      eval "iptables -t $table $rule" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

# The kubelet's QoS cgroups (kubepods) and the containers' own, in every v1 hierarchy.
node_clean_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods; do
    [[ -d $d ]] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

node_env() {
  printf 'export CILVEST_NODE_NAME=%q\n' "$NODE_NAME"
  printf 'export CILVEST_NODE_IP=%q\n' "$(node_ip)"
  printf 'export CILVEST_CONTAINERD_SOCK=%q\n' "$(node_sock)"
  printf 'export CILVEST_NODE_PROBE=%q\n' "$(node_probe)"
}
