# What makes a node of the development cluster: its network namespace on the node network, its
# containerd, kubelet and kube-proxy, its pod range's routes; and what takes one away again.
# Sourced (after common.sh) by up.sh, node.sh and down.sh; every function works on the node that
# select_node chose, and looks before it acts.

# render TEMPLATE OUT: replaces @VAR@ with the value of the shell variable VAR. OUT is only
# rewritten when its content changes (kube-proxy exits when its configuration file is touched).
render() {
  local text
  text=$(<"$1")
  local var
  for var in $(grep -o '@[A-Z_]*@' "$1" | sort -u | tr -d @); do
    text=${text//@$var@/${!var}}
  done
  [[ -f $2 && "$(<"$2")" == "$text" ]] && return 0
  mkdir -p "$(dirname "$2")"
  printf '%s\n' "$text" > "$2"
}

# setup_node_network: the host's bridge (the node network), then this node's namespace on it.
setup_node_network() {
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr replace "$HOST_SIDE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  if [[ ! -e /run/netns/$NETNS ]]; then
    log "creating node $NODE_NAME's network namespace ($NODE_IP)"
    ip netns add "$NETNS"
    ip link add "$VETH_HOST" type veth peer name "$VETH_NODE" netns "$NETNS"
    ip link set "$VETH_HOST" master "$NODE_BRIDGE" up
    in_node ip addr add "$NODE_IP/24" dev "$VETH_NODE"
    in_node ip link set lo up
    in_node ip link set "$VETH_NODE" up
    in_node ip route add default via "$HOST_SIDE_IP"
  fi
  # A fresh namespace forwards nothing, and kube-proxy needs bridged traffic to see iptables.
  in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # The host forwards the nodes' traffic (Docker sets the FORWARD policy to DROP) and masquerades
  # what leaves the machine. Cluster addresses that no node routes (a Service address kube-proxy
  # did not translate, a pod range of no node here) are refused, never sent out of the machine.
  # These are the only host rules; make cluster-down removes them.
  iptables -N "$FW_CHAIN" 2>/dev/null || true
  local rule cidr
  for cidr in "$SERVICE_CIDR" "$POD_CIDR"; do
    rule=(-i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -d "$cidr" -j REJECT)
    iptables -C "$FW_CHAIN" "${rule[@]}" 2>/dev/null || iptables -A "$FW_CHAIN" "${rule[@]}"
  done
  iptables -C "$FW_CHAIN" -i "$NODE_BRIDGE" -j ACCEPT 2>/dev/null || iptables -A "$FW_CHAIN" -i "$NODE_BRIDGE" -j ACCEPT
  iptables -C "$FW_CHAIN" -o "$NODE_BRIDGE" -j ACCEPT 2>/dev/null || iptables -A "$FW_CHAIN" -o "$NODE_BRIDGE" -j ACCEPT
  iptables -C FORWARD -j "$FW_CHAIN" 2>/dev/null || iptables -I FORWARD 1 -j "$FW_CHAIN"
  local masq=(POSTROUTING -t nat -s "$NODE_NET" ! -o "$NODE_BRIDGE" -m comment --comment "$FW_CHAIN" -j MASQUERADE)
  iptables -C "${masq[@]}" 2>/dev/null || iptables -A "${masq[@]}"
}

start_containerd() {
  render "$HACK_DIR/containerd.toml.in" "$NODE_STATE/containerd.toml"
  mkdir -p "$NODE_STATE/cni/net.d"
  start_daemon containerd containerd --config "$NODE_STATE/containerd.toml"
  wait_for 30 "node $NODE_NAME's containerd" ctr_k8s version
}

# start_node: kubelet, then (once the controller-manager gave the node its pod range) the pod
# network and kube-proxy; waits until the node is Ready.
start_node() {
  if [[ $CGROUP_ROOT != / ]]; then
    # The kubelet wants its cgroup root to exist in every hierarchy (cgroup v1 here).
    local hierarchy
    for hierarchy in /sys/fs/cgroup/*/; do
      mkdir -p "$hierarchy${CGROUP_ROOT#/}"
    done
  fi
  KUBELET_SERVING=$(node_pki kubelet-serving)
  render "$HACK_DIR/kubelet.yaml.in" "$NODE_STATE/kubelet.yaml"
  render "$HACK_DIR/kube-proxy.yaml.in" "$NODE_STATE/kube-proxy.yaml"
  start_daemon kubelet kubelet --config="$NODE_STATE/kubelet.yaml" \
    --kubeconfig="$(node_pki kubelet).kubeconfig" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" --root-dir="$NODE_STATE/kubelet" --cert-dir="$NODE_STATE/kubelet/pki"
  wait_for 60 "node $NODE_NAME's pod range" node_pod_cidr
  NODE_POD_CIDR=$(node_pod_cidr)
  render "$HACK_DIR/cni.conflist.in" "$NODE_STATE/cni/net.d/10-gefyra-devcluster.conflist"
  # Pods reach each other's addresses unchanged on every node (the operator knows its callers by
  # them); only what leaves the pod network is masqueraded.
  local masq=(POSTROUTING -t nat -s "$NODE_POD_CIDR" ! -d "$POD_CIDR" -j MASQUERADE)
  in_node iptables -C "${masq[@]}" 2>/dev/null || in_node iptables -A "${masq[@]}"
  link_pod_ranges
  start_daemon kube-proxy kube-proxy --config="$NODE_STATE/kube-proxy.yaml"
  wait_for 120 "node $NODE_NAME" node_ready
}

# node_pki NAME: the path (without extension) of node-specific PKI file NAME of the chosen node.
node_pki() {
  if (( NODE_INDEX == 1 )); then echo "$PKI_DIR/$1"; else echo "$PKI_DIR/$1-$NODE_INDEX"; fi
}

node_pod_cidr() {
  local cidr
  cidr=$("${KUBECTL[@]}" get node "$NODE_NAME" -o jsonpath='{.spec.podCIDR}' 2>/dev/null)
  [[ -n $cidr ]] && echo "$cidr"
}

node_ready() {
  [[ "$("${KUBECTL[@]}" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

# link_pod_ranges: a route on every node of this machine to every other node's pod range (what a
# CNI's routing does on a real node network).
link_pod_ranges() {
  local chosen=$NODE_INDEX from to cidr via
  for from in $(node_indexes); do
    for to in $(node_indexes); do
      (( from == to )) && continue
      select_node "$to"
      cidr=$(node_pod_cidr) || continue
      via=$NODE_IP
      select_node "$from"
      in_node ip route replace "$cidr" via "$via"
    done
  done
  select_node "$chosen"
}

# stop_daemons NAME...: TERM to the chosen node's processes NAME at once, then KILL to those still
# running after 5 s (their state is about to be deleted anyway).
stop_daemons() {
  local pids=() name pid
  for name in "$@"; do
    [[ -f $NODE_RUN/$name.pid ]] || continue
    pid=$(<"$NODE_RUN/$name.pid")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$NODE_RUN/$name.pid"
  done
  local running
  for _ in $(seq 50); do
    running=()
    for pid in "${pids[@]}"; do alive "$pid" && running+=("$pid"); done
    (( ${#running[@]} )) || return 0
    sleep 0.1
  done
  kill -KILL "${running[@]}" 2>/dev/null || true
}

# kill_pod_processes: every process of the chosen node's pods (they sit below its kubepods cgroup).
kill_pod_processes() {
  local procs root
  root="/sys/fs/cgroup/pids${CGROUP_ROOT%/}/kubepods"
  for _ in 1 2 3; do
    procs=$(find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
    [[ -z $procs ]] && return 0
    # shellcheck disable=SC2086
    kill -KILL $procs 2>/dev/null || true
    sleep 0.3
  done
}

# stop_node: the chosen node's kubelet, kube-proxy, pods and containerd, and their mounts. Its
# network namespace stays (node 1's holds the control plane too): remove_node_network takes it.
stop_node() {
  stop_daemons kube-proxy kubelet
  kill_pod_processes
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
  stop_daemons containerd
  # Container root filesystems, volumes, shm; then the pods' network namespaces (containerd keeps
  # each node's under its own state directory).
  findmnt -rn -o TARGET | grep -E "^($NODE_STATE|$NODE_RUN)/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    [[ -d $hierarchy${CGROUP_ROOT#/}/kubepods ]] && find "$hierarchy${CGROUP_ROOT#/}/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
    [[ $CGROUP_ROOT != / ]] && rmdir "$hierarchy${CGROUP_ROOT#/}" 2>/dev/null
  done
  true
}

# unlink_pod_range: the other nodes' routes to the chosen node's pod range.
unlink_pod_range() {
  local cidr chosen=$NODE_INDEX other
  cidr=$(node_pod_cidr) || return 0
  for other in $(node_indexes); do
    (( other == chosen )) && continue
    select_node "$other"
    in_node ip route del "$cidr" 2>/dev/null || true
  done
  select_node "$chosen"
}

# remove_node_network: the chosen node's network namespace (its veth pair goes with it).
remove_node_network() {
  [[ -e /run/netns/$NETNS ]] && ip netns del "$NETNS"
  ip link del "$VETH_HOST" 2>/dev/null || true
}
