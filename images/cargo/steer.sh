#!/bin/sh
# gefyra-steer: makes cargo's chain of DNAT rules for bridged ports what the files in
# /etc/gefyra/steer say: a file named PORT (a stowaway port) holds ADDRESS:PORT of the local
# container that takes it. gefyra writes the files (checking every value first) and runs this after
# each change; cargo's entrypoint runs it at start, so that bridges survive a restart of cargo.
# Only rules that differ are touched (the rules' counters tell gefyra that traffic arrives).
set -eu
CHAIN=GEFYRA-BRIDGES
DIR=/etc/gefyra/steer
mkdir -p "$DIR"
# One at a time (cargo's start and gefyra may both run it at once).
exec 9>"$DIR/.lock"
flock 9
iptables -t nat -N "$CHAIN" 2>/dev/null || true
iptables -t nat -C PREROUTING -i wg0 -j "$CHAIN" 2>/dev/null || iptables -t nat -A PREROUTING -i wg0 -j "$CHAIN"
iptables -t nat -C POSTROUTING -o eth0 -m conntrack --ctstate DNAT -j MASQUERADE 2>/dev/null \
  || iptables -t nat -A POSTROUTING -o eth0 -m conntrack --ctstate DNAT -j MASQUERADE

rule() { # ACTION PORT TO
  iptables -t nat "$1" "$CHAIN" -p tcp --dport "$2" -j DNAT --to-destination "$3" -m comment --comment "gefyra-bridge-$2"
}
wanted() { # PORT: the destination its file names, if it is a well-formed one
  [ -f "$DIR/$1" ] || return 0
  to=$(cat "$DIR/$1")
  case "$to" in *[!0-9.:]*|"") ;; *) echo "$to" ;; esac
}

# Rules that no file asks for, or for another destination, go.
iptables -t nat -S "$CHAIN" | sed -n 's/.*--dport \([0-9]*\) .*--to-destination \([0-9.:]*\).*/\1 \2/p' |
  while read -r port to; do
    [ "$(wanted "$port")" = "$to" ] || rule -D "$port" "$to" 2>/dev/null || true
  done
# Rules that files ask for and are missing come.
for file in "$DIR"/*; do
  port=${file##*/}
  case "$port" in *[!0-9]*|"") continue ;; esac
  to=$(wanted "$port")
  [ -n "$to" ] || continue
  rule -C "$port" "$to" 2>/dev/null || rule -A "$port" "$to"
done
