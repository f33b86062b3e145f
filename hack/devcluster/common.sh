# Shared settings of the development cluster scripts (sourced, not run).
set -euo pipefail

KUBE_VERSION="v1.30.14"        # last release line that runs on Debian bookworm's etcd 3.4
COREDNS_VERSION="v1.12.1"
# wireguard-go 0.0.20250522 for cargo and stowaway (Debian bookworm ships 0.0.20220316: a third of the
# throughput)
WIREGUARD_GO_VERSION="v0.0.0-20260522210424-ecfc5a8d5446"
CLUSTER_DOMAIN="cluster.local"
POD_CIDR="10.244.0.0/16"
SERVICE_CIDR="10.96.0.0/12"
KUBE_API_SERVICE_IP="10.96.0.1"
DNS_SERVICE_IP="10.96.0.10"
API_PORT=6443
PAUSE_IMAGE="registry.k8s.io/pause:3.9"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HACK_DIR="$REPO_ROOT/hack/devcluster"
# Binaries survive `make cluster-down` and fresh clones: building Kubernetes takes many minutes.
CACHE_DIR="${GEFYRA_DEVCLUSTER_CACHE:-$HOME/.cache/gefyra-devcluster}"
BIN_DIR="$CACHE_DIR/bin-$KUBE_VERSION-coredns-$COREDNS_VERSION"
# The binaries gefyra's own images carry (wireguard-go, cargo's CoreDNS).
IMAGE_BIN_DIR="$CACHE_DIR/images-coredns-$COREDNS_VERSION-wireguard-go-$WIREGUARD_GO_VERSION"
# Everything the running cluster owns; removed by `make cluster-down`.
STATE_DIR="${GEFYRA_DEVCLUSTER_STATE:-/var/lib/gefyra-devcluster}"
RUN_DIR="/run/gefyra-devcluster"
LOG_DIR="$STATE_DIR/log"
PKI_DIR="$STATE_DIR/pki"
KUBECONFIG_OUT="$REPO_ROOT/.devcluster/kubeconfig"
CNI_BIN_DIR="/usr/lib/cni"
FW_CHAIN="GEFYRA-DEVCLUSTER"

export GOTOOLCHAIN=local
export PATH="$BIN_DIR:$PATH"

log() { printf '[devcluster] %s\n' "$*" >&2; }
die() { printf '[devcluster] error: %s\n' "$*" >&2; exit 1; }

# Each node lives in its own network namespace: its iptables rules, bridge and routes vanish with
# it. The nodes' ends of their veth pairs meet on one bridge of the host, like machines on a node
# network; the host's (and Docker's) firewall is touched by a few rules only.
NODE_NET="10.250.0.0/24"
NODE_BRIDGE="gfydev-br"
HOST_SIDE_IP="10.250.0.1"      # the host on the node network: the nodes' default gateway
CONTROL_PLANE_IP="10.250.0.2"  # node 1, which also runs etcd, the control plane and the registry
# The development registry (Debian's docker-registry: the reference distribution registry), on
# node 1's address over plain HTTP: the cluster's containerds pull gefyra's images from it, and
# Docker and Podman on this machine too, as they would from a user's registry.
REGISTRY_PORT=5000
DEV_REGISTRY="$CONTROL_PLANE_IP:$REGISTRY_PORT"

# select_node N: points the node variables at node N. Node 1 (`make cluster`) keeps its state at
# the top of $STATE_DIR; node N > 1 (`make cluster NODES=N`, hack/devcluster/node.sh) has its own
# directories, kubelet cgroup root and pod log directory, so that two kubelets never clean up each
# other's pods.
select_node() {
  NODE_INDEX=$1
  if (( NODE_INDEX == 1 )); then
    NODE_NAME="gefyra-dev" NODE_STATE="$STATE_DIR" NODE_RUN="$RUN_DIR" DAEMON_PREFIX=""
    VETH_HOST="gfydev-host" VETH_NODE="gfydev-node" CGROUP_ROOT="/" POD_LOGS_DIR="/var/log/pods"
  else
    NODE_NAME="gefyra-dev-$NODE_INDEX" NODE_STATE="$STATE_DIR/node-$NODE_INDEX"
    NODE_RUN="$RUN_DIR/node-$NODE_INDEX" DAEMON_PREFIX="node-$NODE_INDEX-"
    VETH_HOST="gfydev$NODE_INDEX-host" VETH_NODE="gfydev$NODE_INDEX-node"
    CGROUP_ROOT="/gefyra-dev-$NODE_INDEX" POD_LOGS_DIR="$NODE_STATE/pod-logs"
  fi
  NETNS="$NODE_NAME"
  NODE_IP="10.250.0.$(( NODE_INDEX + 1 ))"
  CONTAINERD_SOCK="$NODE_RUN/containerd.sock"
}
select_node 1

# node_indexes: the nodes that run on this machine (their network namespaces exist), 1 first.
node_indexes() {
  local ns
  [[ -e /run/netns/gefyra-dev ]] && echo 1
  for ns in /run/netns/gefyra-dev-*; do
    [[ -e $ns ]] && echo "${ns##*-}"
  done | sort -n
}

in_node() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$STATE_DIR/admin.kubeconfig")

# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds, or fails naming WHAT.
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || die "$what did not become ready within ${timeout}s (logs: $LOG_DIR)"
    sleep 0.3
  done
}

# alive PID: the process runs (a zombie, not yet reaped by PID 1, does not).
alive() {
  [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"
}

# start_daemon NAME CMD...: starts CMD detached (in the node's network namespace), pid in $NODE_RUN.
start_daemon() {
  local name=$1; shift
  local pidfile="$NODE_RUN/$name.pid"
  if [[ -f $pidfile ]] && alive "$(cat "$pidfile")"; then
    return 0
  fi
  mkdir -p "$NODE_RUN" "$LOG_DIR"
  setsid nsenter --net="/run/netns/$NETNS" -- "$@" >"$LOG_DIR/$DAEMON_PREFIX$name.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
}

# Debian's docker client matches the daemon; a newer client elsewhere on PATH may lack buildx.
docker() { if [[ -x /usr/bin/docker ]]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# load_image IMAGE: copies an image from Docker into the node's containerd, unless that very
# image (by Docker image id) was loaded before.
load_image() {
  local id marker="$NODE_STATE/images/${1//[\/:]/_}.id"
  id=$(docker image inspect -f '{{.Id}}' "$1")
  [[ -f $marker && "$(<"$marker")" == "$id" ]] && return 0
  docker save "$1" | ctr_k8s images import - >/dev/null
  mkdir -p "$(dirname "$marker")" && echo "$id" > "$marker"
}

# load_into_podman IMAGE: the same for Podman's storage (named localhost/IMAGE there).
load_into_podman() {
  local id marker="$STATE_DIR/images/podman-${1//[\/:]/_}.id"
  id=$(docker image inspect -f '{{.Id}}' "$1")
  [[ -f $marker && "$(<"$marker")" == "$id" ]] && return 0
  docker save "$1" | podman load -q >/dev/null
  mkdir -p "$(dirname "$marker")" && echo "$id" > "$marker"
}

PODMAN_SOCKET="/run/podman/podman.sock"
export CONTAINERS_CONF="$HACK_DIR/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$HACK_DIR/registries.conf"
