#!/usr/bin/env bash
# `node.sh add N`: node N (2 to 9) joins the running development cluster: its own network namespace
# on the node network (10.250.0.N+1), containerd, kubelet and kube-proxy, and routes between its
# pod range and the other nodes'. Idempotent; waits until the node is Ready.
# `node.sh remove N`: drains node N, stops it and removes its Node object, state and routes.
# `make cluster NODES=N` adds nodes 2..N; the multi-node e2e module adds and removes its own.
source "$(dirname "$0")/common.sh"
source "$HACK_DIR/node-functions.sh"

usage() { die "usage: node.sh add|remove N (N from 2 to 9)"; }
[[ $# == 2 && $2 =~ ^[2-9]$ ]] || usage
[[ -S $CONTAINERD_SOCK ]] || die "the development cluster is not running: run 'make cluster' first"
select_node "$2"

case $1 in
  add)
    started=$(date +%s)
    "$HACK_DIR/pki.sh" node "$NODE_INDEX"
    setup_node_network
    start_containerd
    # Images that the cluster does not pull from the development registry (they come from Docker).
    for image in "$PAUSE_IMAGE" "gefyra-dev/coredns:$COREDNS_VERSION"; do load_image "$image"; done
    start_node
    log "node $NODE_NAME ($NODE_IP, pods $(node_pod_cidr)) ready in $(( $(date +%s) - started ))s"
    ;;
  remove)
    if "${KUBECTL[@]}" get node "$NODE_NAME" >/dev/null 2>&1; then
      "${KUBECTL[@]}" drain "$NODE_NAME" --ignore-daemonsets --delete-emptydir-data --force \
        --grace-period=5 --timeout=60s >/dev/null 2>&1 || log "node $NODE_NAME did not drain within 60s: stopping it anyway"
      unlink_pod_range
    fi
    stop_node
    remove_node_network
    "${KUBECTL[@]}" delete node "$NODE_NAME" --ignore-not-found >/dev/null
    rm -rf "$NODE_STATE" "$NODE_RUN" "$LOG_DIR/$DAEMON_PREFIX"*.log
    log "node $NODE_NAME removed"
    ;;
  *) usage ;;
esac
