#!/usr/bin/env bash
# Puts the wireguard-go and CoreDNS binaries built for gefyra's images (pinned versions) into CONTEXT.
source "$(dirname "$0")/../../hack/devcluster/common.sh"
cp "$IMAGE_BIN_DIR/coredns" "$IMAGE_BIN_DIR/wireguard-go" "$1/"
