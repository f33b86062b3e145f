#!/usr/bin/env bash
# The throughput baseline: raw wireguard-go (the binary cargo and stowaway run) between two network
# namespaces joined by a veth pair, same MTU as gefyra's tunnel, iperf3 TCP from one end to the
# other. Prints iperf3's received bits per second. Leaves nothing behind. wireguard-go runs with
# the scheduler setting cargo and stowaway use (GOMAXPROCS=1 unless set).
#
#   bench/wireguard_netns.sh MTU SECONDS
source "$(dirname "$0")/../hack/devcluster/common.sh"

MTU="${1:?usage: $0 MTU SECONDS}"
SECONDS_TO_RUN="${2:?usage: $0 MTU SECONDS}"
A=gfy-bench-a B=gfy-bench-b
export GOMAXPROCS="${GOMAXPROCS:-1}"

cleanup() {
  for ns in $A $B; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  done
  sleep 0.2
  for ns in $A $B; do ip netns del "$ns" 2>/dev/null || true; done
  rm -f /var/run/wireguard/gfyb-a.sock /var/run/wireguard/gfyb-b.sock
}
trap cleanup EXIT
cleanup

[[ -x $IMAGE_BIN_DIR/wireguard-go ]] || die "wireguard-go is not built: run 'make cluster' first"
command -v iperf3 >/dev/null || die "iperf3 is missing: run hack/devcluster/install-deps.sh"
ip netns add $A
ip netns add $B
ip link add gfyb-veth-a netns $A type veth peer name gfyb-veth-b netns $B
ip -n $A address add 10.251.0.1/30 dev gfyb-veth-a
ip -n $B address add 10.251.0.2/30 dev gfyb-veth-b
for ns in $A $B; do ip -n "$ns" link set lo up; done
ip -n $A link set gfyb-veth-a up
ip -n $B link set gfyb-veth-b up

key_a=$(wg genkey) key_b=$(wg genkey)
start_end() {  # NS IFACE KEY PORT TUNNEL_ADDRESS PEER_KEY PEER_ENDPOINT PEER_TUNNEL_ADDRESS
  local ns=$1 iface=$2
  WG_PROCESS_FOREGROUND=1 ip netns exec "$ns" "$IMAGE_BIN_DIR/wireguard-go" "$iface" >/dev/null 2>&1 &
  wait_for 10 "wireguard-go in $ns" test -S "/var/run/wireguard/$iface.sock"
  ip netns exec "$ns" wg set "$iface" private-key <(echo "$3") listen-port "$4" \
    peer "$(echo "$6" | wg pubkey)" endpoint "$7" allowed-ips "$8/32"
  ip -n "$ns" address add "$5/24" dev "$iface"
  ip -n "$ns" link set "$iface" mtu "$MTU" up
}
start_end $A gfyb-a "$key_a" 51001 10.252.0.1 "$key_b" 10.251.0.2:51002 10.252.0.2
start_end $B gfyb-b "$key_b" 51002 10.252.0.2 "$key_a" 10.251.0.1:51001 10.252.0.1

ip netns exec $B iperf3 -s -1 -B 10.252.0.2 >/dev/null 2>&1 &
wait_for 10 "iperf3 server" ip netns exec $B sh -c 'ss -ltn | grep -q ":5201 "'
ip netns exec $A iperf3 -c 10.252.0.2 -t "$SECONDS_TO_RUN" -J |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'
