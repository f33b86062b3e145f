#!/usr/bin/env bash
# `make cluster-down`: stops every process of the development cluster and removes its state,
# network namespace, interfaces, mounts, cgroups and host firewall rules. Harmless when nothing
# runs. The Docker daemon, the images in Docker and Podman, and the binary cache stay.
source "$(dirname "$0")/common.sh"

# stop_daemons NAME...: TERM to all the processes recorded in $RUN_DIR/NAME.pid at once, then KILL
# to those still running after 5 s (the state is about to be deleted anyway).
stop_daemons() {
  local pids=() name pid
  for name in "$@"; do
    [[ -f $RUN_DIR/$name.pid ]] || continue
    pid=$(<"$RUN_DIR/$name.pid")
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$RUN_DIR/$name.pid"
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

# Every process of every pod sits below the kubepods cgroup (cgroupfs driver).
kill_pod_processes() {
  local procs
  for _ in 1 2 3; do
    procs=$(find /sys/fs/cgroup/pids/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null || true)
    [[ -z $procs ]] && return 0
    # shellcheck disable=SC2086
    kill -KILL $procs 2>/dev/null || true
    sleep 0.3
  done
}

stop_daemons kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd
kill_pod_processes
pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
stop_daemons containerd podman registry
rm -f "$PODMAN_SOCKET"

# Mounts: container root filesystems, volumes, shm; then the pods' network namespaces.
findmnt -rn -o TARGET | grep -E "^($STATE_DIR|$RUN_DIR)/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
for ns in /run/netns/cni-*; do
  [[ -e $ns ]] || continue
  umount -l "$ns" 2>/dev/null || true
  rm -f "$ns"
done
if [[ -e /run/netns/$NETNS ]]; then
  ip netns del "$NETNS"
fi
ip link del "$VETH_HOST" 2>/dev/null || true
# `ip netns add` bind-mounts /run/netns onto itself; undo that when nothing else uses it.
if [[ -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
  umount /run/netns 2>/dev/null || true
  rmdir /run/netns 2>/dev/null || true
fi

iptables -D FORWARD -j "$FW_CHAIN" 2>/dev/null || true
iptables -F "$FW_CHAIN" 2>/dev/null || true
iptables -X "$FW_CHAIN" 2>/dev/null || true
iptables -t nat -D POSTROUTING -s "$NODE_NET" ! -o "$VETH_HOST" -m comment --comment "$FW_CHAIN" -j MASQUERADE 2>/dev/null || true

for hierarchy in /sys/fs/cgroup/*/; do
  [[ -d $hierarchy/kubepods ]] && find "$hierarchy/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
done
true

rm -rf "$STATE_DIR" "$RUN_DIR" "$(dirname "$KUBECONFIG_OUT")"
log "cluster removed"
