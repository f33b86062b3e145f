#!/usr/bin/env bash
# Puts the CoreDNS binary of the development cluster's build (same pinned version) into CONTEXT.
source "$(dirname "$0")/../../hack/devcluster/common.sh"
cp "$BIN_DIR/coredns" "$1/coredns"
