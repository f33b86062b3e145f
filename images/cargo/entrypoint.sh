#!/bin/sh
# Brings up cargo from the files gefyra copies into /etc/gefyra before the container starts:
#   wg0.conf   WireGuard peer configuration (wg setconf format; holds the private key)
#   cargo.env  TUNNEL_ADDRESS, TUNNEL_MTU, TUNNEL_STREAM_MTU, TUNNEL_SERVER, CLUSTER_ROUTES (space separated CIDRs), DNS_COMMAND
#              (the DNS server's command line); every value is quoted for the shell
#   dns/       the DNS server's files (gefyra's DNS plugin chooses the server: CoreDNS by default)
set -eu
. /etc/gefyra/cargo.env

[ -c /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200; }
# One scheduler thread: wireguard-go hands every packet through several goroutines, and waking
# another CPU for each hand-off costs more latency than it buys throughput here (measured on 2 vCPUs:
# p50 of a request through the tunnel -0.4 ms, TCP throughput +15%). Override with GOMAXPROCS.
GOMAXPROCS="${GOMAXPROCS:-1}" gefyra-wireguard wg0 &
wg_pid=$!
i=0
until [ -S /var/run/wireguard/wg0.sock ]; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "WireGuard did not start" >&2; exit 1; }
  sleep 0.1
done
wg setconf wg0 /etc/gefyra/wg0.conf
ip address add "$TUNNEL_ADDRESS" dev wg0
ip link set wg0 up
gefyra-endpoint mtu  # the MTU that the endpoints kept in /etc/gefyra call for, TCP clamped to it
for route in $CLUSTER_ROUTES; do ip route replace "$route" dev wg0; done
# Local containers' packets leave through the tunnel with cargo's one tunnel address.
iptables -t nat -A POSTROUTING -o wg0 -j MASQUERADE
# Bridged ports steered before a restart of cargo (their files survive it).
gefyra-steer

(eval "exec $DNS_COMMAND") &
dns_pid=$!
echo "cargo: tunnel $TUNNEL_ADDRESS up, routes: $CLUSTER_ROUTES"
trap 'kill $wg_pid $dns_pid 2>/dev/null' TERM INT
# Either process ending ends cargo. Meanwhile a watchdog:
# - With a fallback endpoint (/etc/gefyra/endpoints, see gefyra-endpoint) it pings the server end
#   through the tunnel every PROBE seconds while on the preferred one (the server's keepalives show
#   that packets come in, not that ours get out: a firewall may drop only one way). After MISSES
#   unanswered pings in a row (UDP dropped by a new network) cargo moves to the fallback (the relay
#   through the Kubernetes API); the session and its connections go on. On the fallback it tries
#   the preferred endpoint again after RETRY seconds, then after twice that (up to RETRY_MAX): a
#   ping through it; an answer keeps it there, none moves back at once.
# - The server end sends a keepalive every few seconds, so a tunnel that has received nothing for
#   STALL seconds lost its session (stowaway restarted: it knows the peer again, but not the old
#   session, and WireGuard would only notice at its next rekey, two minutes later). Loading the
#   peer anew starts a handshake at once.
STALL=${CARGO_TUNNEL_STALL:-12}
PROBE=${CARGO_TUNNEL_PROBE:-2}
MISSES=${CARGO_TUNNEL_MISSES:-2}
RETRY=${CARGO_TUNNEL_RETRY:-15}
RETRY_MAX=${CARGO_TUNNEL_RETRY_MAX:-240}
SERVER=${TUNNEL_SERVER:-198.18.0.1}
last_rx=""; still=0; tick=0; missed=0; pause=$RETRY; retry_in=$RETRY
while kill -0 $wg_pid 2>/dev/null && kill -0 $dns_pid 2>/dev/null; do
  sleep 1
  tick=$((tick + 1))
  rx=$(wg show wg0 transfer 2>/dev/null | cut -f2)
  if [ "$rx" = "$last_rx" ]; then still=$((still + 1)); else still=0; last_rx=$rx; fi
  preferred=""; fallback=""
  [ -f /etc/gefyra/endpoints ] && read -r preferred fallback < /etc/gefyra/endpoints || true
  current=$(wg show wg0 endpoints 2>/dev/null | cut -f2)
  if [ -n "$fallback" ] && [ "$current" = "$preferred" ]; then
    if [ $((tick % PROBE)) -eq 0 ]; then
      if ping -c1 -W1 "$SERVER" >/dev/null 2>&1; then missed=0; else missed=$((missed + 1)); fi
    fi
    if [ "$missed" -ge "$MISSES" ]; then
      echo "cargo: $preferred does not answer; over $fallback"
      gefyra-endpoint use "$fallback" || true
      missed=0; still=0; pause=$RETRY; retry_in=$pause
    fi
  elif [ -n "$fallback" ] && [ "$current" = "$fallback" ]; then
    retry_in=$((retry_in - 1))
    if [ "$retry_in" -le 0 ]; then
      gefyra-endpoint use "$preferred" || true
      if ping -c1 -W1 "$SERVER" >/dev/null 2>&1; then
        echo "cargo: $preferred answers again; over it"
        still=0; missed=0
      else
        gefyra-endpoint use "$fallback" || true
      fi
      pause=$((pause * 2 > RETRY_MAX ? RETRY_MAX : pause * 2)); retry_in=$pause
    fi
  fi
  if [ "$still" -ge "$STALL" ]; then
    echo "cargo: nothing received through the tunnel for ${STALL}s; handshaking anew"
    wg setconf wg0 /etc/gefyra/wg0.conf || true
    still=0
  fi
done
kill $wg_pid $dns_pid 2>/dev/null || true
exit 1
