#!/usr/bin/env bash
# Images that nothing can pull here: the Debian base (debootstrap), the pod sandbox and CoreDNS.
# Each is built once into Docker; the debootstrap tarball is cached across cluster rebuilds.
source "$(dirname "$0")/common.sh"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# bookworm for most images; trixie for carrier (its nginx 1.26 serves HTTP/1.x and cleartext HTTP/2
# on one port, which bookworm's 1.22 cannot).
for release in bookworm trixie; do
  have_image "debian:$release-slim" && continue
  tarball="$CACHE_DIR/debian-$release-minbase.tar"
  if [[ ! -f $tarball ]]; then
    log "debootstrap: Debian $release minbase (about a minute)"
    root=$(mktemp -d)
    debootstrap --variant=minbase "$release" "$root" http://deb.debian.org/debian >"$LOG_DIR/debootstrap.log" 2>&1 ||
      die "debootstrap failed, see $LOG_DIR/debootstrap.log"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  docker import -c 'CMD ["bash"]' "$tarball" "debian:$release-slim" >/dev/null
done

if ! have_image "$PAUSE_IMAGE"; then
  dir=$(mktemp -d)
  gcc -static -Os -o "$dir/pause" "$HACK_DIR/pause.c"
  strip "$dir/pause"
  tar -C "$dir" -c pause | docker import -c 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
  rm -rf "$dir"
fi

COREDNS_IMAGE="gefyra-dev/coredns:$COREDNS_VERSION"
# The cluster's DNS (built with the cluster's binaries: not there when only gefyra's images are made).
if ! have_image "$COREDNS_IMAGE" && [[ -x $BIN_DIR/coredns ]]; then
  dir=$(mktemp -d)
  cp "$BIN_DIR/coredns" "$dir/coredns"
  printf 'FROM debian:bookworm-slim\nCOPY coredns /coredns\nENTRYPOINT ["/coredns"]\n' > "$dir/Dockerfile"
  docker build -q --pull=false -t "$COREDNS_IMAGE" "$dir" >/dev/null
  rm -rf "$dir"
fi
