#!/usr/bin/env bash
# Builds the Kubernetes components and the cluster's CoreDNS from their official Go modules into
# $BIN_DIR, and the binaries of gefyra's images (wireguard-go, cargo's CoreDNS) into $IMAGE_BIN_DIR.
# A second run finds the binaries cached and returns at once. `build.sh images`: only the images'.
source "$(dirname "$0")/common.sh"
only_images=0
[[ ${1:-} == images ]] && only_images=1

KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

if [[ ( $only_images == 1 || -f "$BIN_DIR/.complete" ) && -f "$IMAGE_BIN_DIR/.complete" ]]; then
  log "binaries cached in $CACHE_DIR"
  exit 0
fi
command -v go >/dev/null || die "go is not installed: the Kubernetes components are built from source (install Go >= 1.22)"
mkdir -p "$BIN_DIR"
work="$CACHE_DIR/build"
mkdir -p "$work/kube" "$work/coredns" "$work/wireguard-go" "$IMAGE_BIN_DIR"
export GOFLAGS=-mod=mod CGO_ENABLED=0

build_kube() {
  # Upstream's go.mod points every k8s.io/* staging module at ./staging: a wrapper module must pin
  # each of them to the matching v0.x release instead. The list is read from upstream's go.mod.
  cd "$work/kube"
  local staging_version="v0.${KUBE_VERSION#v1.}"
  go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >/dev/null
  local upstream_mod
  upstream_mod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBE_VERSION.mod"
  {
    echo "module gefyra.dev/devcluster/kube"
    echo "go 1.22"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream_mod" |
      awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  printf 'package tools\n\nimport (\n' > tools.go
  for c in "${KUBE_CMDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c" >> tools.go; done
  printf ')\n' >> tools.go
  sed -i '1i //go:build tools\n' tools.go
  go mod tidy -e >/dev/null 2>&1 || true
  local pkgs=()
  for c in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  local ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building Kubernetes $KUBE_VERSION (${KUBE_CMDS[*]}); the first time takes a while"
  go build -trimpath -tags tools -ldflags "$ldflags" -o "$BIN_DIR/" "${pkgs[@]}"
}

build_coredns() {  # OUTPUT PLUGIN...
  # Only the plugins named: much smaller than upstream's main. Directive order stays upstream's
  # (core/dnsserver); unlisted plugins are simply not compiled in.
  local output=$1; shift
  cd "$work/coredns"
  {
    printf 'package main\n\nimport (\n\t_ "github.com/coredns/coredns/core/dnsserver"\n'
    printf '\t"github.com/coredns/coredns/coremain"\n'
    for plugin in "$@"; do printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$plugin"; done
    printf ')\n\nfunc main() { coremain.Run() }\n'
  } > main.go
  printf 'module gefyra.dev/devcluster/coredns\ngo 1.22\nrequire github.com/coredns/coredns %s\n' \
    "$COREDNS_VERSION" > go.mod
  go mod tidy >/dev/null
  log "building CoreDNS $COREDNS_VERSION ($*)"
  go build -trimpath -ldflags "-s -w" -o "$output" .
}

build_wireguard_go() {
  cd "$work/wireguard-go"
  printf 'module gefyra.dev/devcluster/wireguard-go\ngo 1.22\nrequire golang.zx2c4.com/wireguard %s\n' \
    "$WIREGUARD_GO_VERSION" > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "golang.zx2c4.com/wireguard"\n' > tools.go
  go mod tidy -e >/dev/null 2>&1 || true
  log "building wireguard-go $WIREGUARD_GO_VERSION"
  go build -trimpath -tags tools -ldflags "-s -w" -o "$IMAGE_BIN_DIR/wireguard-go" golang.zx2c4.com/wireguard
}

start=$(date +%s)
# The cluster DNS add-on; cargo's DNS server needs no kubernetes plugin (client-go would triple its
# size and its resident memory).
COMMON_PLUGINS=(cache errors forward hosts loadbalance log reload rewrite template)
if [[ $only_images == 0 && ! -f "$BIN_DIR/.complete" ]]; then
  (build_kube)
  (build_coredns "$BIN_DIR/coredns" "${COMMON_PLUGINS[@]}" health kubernetes loop ready)
  touch "$BIN_DIR/.complete"
fi
if [[ ! -f "$IMAGE_BIN_DIR/.complete" ]]; then
  (build_wireguard_go)
  (build_coredns "$IMAGE_BIN_DIR/coredns" "${COMMON_PLUGINS[@]}")
  touch "$IMAGE_BIN_DIR/.complete"
fi
log "built in $(( $(date +%s) - start ))s"
