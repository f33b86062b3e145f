#!/usr/bin/env bash
# `make cluster-down`: stops every process of the development cluster and removes its state,
# network namespace, interfaces, mounts, cgroups and host firewall rules. Harmless when nothing
# runs. The Docker daemon, the images in Docker and Podman, and the binary cache stay.
source "$(dirname "$0")/common.sh"
source "$HACK_DIR/node-functions.sh"

for index in $(node_indexes | sort -rn); do
  select_node "$index"
  if (( index == 1 )); then
    stop_daemons kube-scheduler kube-controller-manager kube-apiserver etcd
  fi
  stop_node
  if (( index == 1 )); then
    stop_daemons podman registry
  fi
  remove_node_network
done
select_node 1
# Also without a node: `make podman` runs the service alone.
stop_daemons podman registry
rm -f "$PODMAN_SOCKET"
# Pods' network namespaces of a cluster from before containerd kept them under its state.
for ns in /run/netns/cni-*; do
  [[ -e $ns ]] || continue
  umount -l "$ns" 2>/dev/null || true
  rm -f "$ns"
done
ip link del "$NODE_BRIDGE" 2>/dev/null || true
# `ip netns add` bind-mounts /run/netns onto itself; undo that when nothing else uses it.
if [[ -d /run/netns && -z "$(ls -A /run/netns)" ]]; then
  umount /run/netns 2>/dev/null || true
  rmdir /run/netns 2>/dev/null || true
fi

iptables -D FORWARD -j "$FW_CHAIN" 2>/dev/null || true
iptables -F "$FW_CHAIN" 2>/dev/null || true
iptables -X "$FW_CHAIN" 2>/dev/null || true
for out in "$NODE_BRIDGE" gfydev-host; do  # gfydev-host: a cluster from before the node network's bridge
  iptables -t nat -D POSTROUTING -s "$NODE_NET" ! -o "$out" -m comment --comment "$FW_CHAIN" -j MASQUERADE 2>/dev/null || true
done

rm -rf "$STATE_DIR" "$RUN_DIR" "$(dirname "$KUBECONFIG_OUT")"
log "cluster removed"
