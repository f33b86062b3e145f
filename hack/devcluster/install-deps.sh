#!/usr/bin/env bash
# Installs the Debian packages the development cluster needs, if any is missing.
source "$(dirname "$0")/common.sh"

# command -> package
declare -A NEED=(
  [dockerd]=docker.io [containerd]=containerd [runc]=runc [iptables]=iptables
  [debootstrap]=debootstrap [wg]=wireguard-tools [iperf3]=iperf3 [etcd]=etcd-server
  [openssl]=openssl [conntrack]=conntrack [ip]=iproute2 [curl]=curl [dig]=bind9-dnsutils
  [gcc]=gcc [nsenter]=util-linux [podman]=podman [docker-registry]=docker-registry
)
missing=()
for cmd in "${!NEED[@]}"; do command -v "$cmd" >/dev/null || missing+=("${NEED[$cmd]}"); done
[[ -x $CNI_BIN_DIR/bridge ]] || missing+=(containernetworking-plugins)
[[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
if (( ${#missing[@]} )); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No recommends: wireguard-tools would pull in systemd and a kernel image.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || die "Go is missing: install Go >= 1.22 (the cluster is built from its Go modules)"
