#!/bin/sh
# gefyra-endpoint: where cargo sends the tunnel's datagrams.
#   gefyra-endpoint set PREFERRED [FALLBACK [CURRENT [STREAM]]]
#       PREFERRED is the endpoint to use (UDP to the NodePort, or the relay through the Kubernetes
#       API); FALLBACK, if given, is where the watchdog moves when PREFERRED carries nothing; CURRENT
#       (default PREFERRED) is used from now on; STREAM, if given, is the one of them that cargo's
#       WireGuard reaches on a TCP stream of framed datagrams (the relay), not by UDP. Kept in
#       /etc/gefyra (a restart of cargo keeps them).
#       It sets the tunnel's MTU (see mtu).
#   gefyra-endpoint use HOST:PORT    send to HOST:PORT now (the session goes on: WireGuard knows a
#                                    peer by its key, and the server end answers where the last
#                                    datagram came from)
#   gefyra-endpoint mtu    sets wg0's MTU: TUNNEL_STREAM_MTU when every endpoint kept is the stream
#       (nothing goes over UDP, and a stream carries large datagrams whole), else TUNNEL_MTU; and
#       clamps the MSS of TCP connections through the tunnel, both ways, to it: the MSS of a SYN
#       tells the server end the segment size this client takes (it offers larger ones only to a
#       client on the stream alone), and on UDP the clamp keeps each datagram under the path's MTU.
# gefyra checks every value (IPv4:PORT) before it calls this; none is special to sed or the shell.
set -eu
. /etc/gefyra/cargo.env
use() {
  sed -i "s/^Endpoint = .*/Endpoint = $1/" /etc/gefyra/wg0.conf
  peer=$(wg show wg0 peers 2>/dev/null | head -n1)
  # Right after cargo's start its entrypoint has not loaded the file yet: it will, with this endpoint.
  [ -z "$peer" ] || wg set wg0 peer "$peer" endpoint "$1"
}
mtu() {
  # Before the entrypoint made wg0: it calls this itself then. One at a time, each reading the
  # files as they are by then (the entrypoint's call and a `set` may overlap).
  [ -d /sys/class/net/wg0 ] || return 0
  exec 9>/run/gefyra-endpoint.lock
  flock 9
  preferred=""; fallback=""; stream=""
  [ -f /etc/gefyra/endpoints ] && read -r preferred fallback < /etc/gefyra/endpoints || true
  [ -f /etc/gefyra/streams ] && read -r stream < /etc/gefyra/streams || true
  size=$TUNNEL_MTU
  if [ -n "$stream" ] && [ "$preferred" = "$stream" ] && { [ -z "$fallback" ] || [ "$fallback" = "$stream" ]; }; then
    size=${TUNNEL_STREAM_MTU:-$TUNNEL_MTU}
  fi
  ip link set wg0 mtu "$size"
  # cargo's own network namespace: its mangle table holds only these two rules. Without them a
  # local container's SYN would offer its own interface's segment size (1460 on a network of
  # 1500), larger than UDP's datagrams carry whole: no tunnel then.
  iptables -t mangle -F FORWARD 2>/dev/null || true
  for way in -i -o; do
    iptables -t mangle -A FORWARD "$way" wg0 -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss $((size - 40)) || {
      echo "cargo: cannot clamp TCP through the tunnel to MTU $size (the kernel's TCPMSS target, xt_TCPMSS)" >&2
      exit 1
    }
  done
}
case "${1:-}" in
  set)
    printf '%s %s\n' "$2" "${3:-}" > /etc/gefyra/endpoints
    printf '%s\n' "${5:-}" > /etc/gefyra/streams  # read by cargo's WireGuard when an endpoint is set
    use "${4:-$2}"
    mtu ;;
  use) use "$2" ;;
  mtu) mtu ;;
  *) echo "usage: gefyra-endpoint set PREFERRED [FALLBACK [CURRENT [STREAM]]] | use HOST:PORT | mtu" >&2; exit 2 ;;
esac
