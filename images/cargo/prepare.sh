#!/usr/bin/env bash
# Puts the CoreDNS binary built for gefyra's images (pinned version) into CONTEXT.
source "$(dirname "$0")/../../hack/devcluster/common.sh"
cp "$IMAGE_BIN_DIR/coredns" "$1/"
