#!/bin/sh
# gefyra-endpoint: where cargo sends the tunnel's datagrams.
#   gefyra-endpoint set PREFERRED [FALLBACK [CURRENT [STREAM]]]
#       PREFERRED is the endpoint to use (UDP to the NodePort, or the relay through the Kubernetes
#       API); FALLBACK, if given, is where the watchdog moves when PREFERRED carries nothing; CURRENT
#       (default PREFERRED) is used from now on; STREAM, if given, is the one of them that cargo's
#       WireGuard reaches on a TCP stream of framed datagrams (the relay), not by UDP. Kept in
#       /etc/gefyra (a restart of cargo keeps them).
#   gefyra-endpoint use HOST:PORT    send to HOST:PORT now (the session goes on: WireGuard knows a
#                                    peer by its key, and the server end answers where the last
#                                    datagram came from)
# gefyra checks every value (IPv4:PORT) before it calls this; none is special to sed or the shell.
set -eu
use() {
  sed -i "s/^Endpoint = .*/Endpoint = $1/" /etc/gefyra/wg0.conf
  peer=$(wg show wg0 peers 2>/dev/null | head -n1)
  # Right after cargo's start its entrypoint has not loaded the file yet: it will, with this endpoint.
  [ -z "$peer" ] || wg set wg0 peer "$peer" endpoint "$1"
}
case "${1:-}" in
  set)
    printf '%s %s\n' "$2" "${3:-}" > /etc/gefyra/endpoints
    printf '%s\n' "${5:-}" > /etc/gefyra/streams  # read by cargo's WireGuard when an endpoint is set
    use "${4:-$2}" ;;
  use) use "$2" ;;
  *) echo "usage: gefyra-endpoint set PREFERRED [FALLBACK [CURRENT [STREAM]]] | use HOST:PORT" >&2; exit 2 ;;
esac
