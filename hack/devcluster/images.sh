#!/usr/bin/env bash
# `make images`: builds every image of images/ (gefyra's own and the test workloads) into Docker as
# gefyra/NAME:dev, and loads it into the development cluster (so that no pod ever pulls) and into
# Podman (for gefyra's Podman runtime).
# A directory with a go.mod gets its static Go binary built into the build context first.
source "$(dirname "$0")/common.sh"

TAG="${GEFYRA_IMAGE_TAG:-dev}"
# The development cluster's operator carries the tests' third-party plugin (an interceptor that is
# used only by bridges that name it), as a user's own operator image would carry theirs.
export GEFYRA_OPERATOR_PLUGINS="${GEFYRA_OPERATOR_PLUGINS-$REPO_ROOT/tests/plugins/recording_interceptor}"
LOCAL_IMAGES=(cargo testserver)
[[ -S $CONTAINERD_SOCK ]] || die "the development cluster is not running: run 'make cluster' first"
"$HACK_DIR/base-images.sh"

for dir in "$REPO_ROOT"/images/*/; do
  name=$(basename "$dir")
  [[ -f $dir/Dockerfile ]] || continue
  context=$(mktemp -d)
  cp -r "$dir"/. "$context"/
  if [[ -f $dir/go.mod ]]; then
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$context/$name" .)
  fi
  if [[ -x $dir/prepare.sh ]]; then
    "$dir/prepare.sh" "$context"
  fi
  log "image gefyra/$name:$TAG"
  docker build -q --pull=false -t "gefyra/$name:$TAG" "$context" >/dev/null
  rm -rf "$context"
  load_image "gefyra/$name:$TAG"
  # Podman runs only what runs on the developer's machine.
  if [[ " ${LOCAL_IMAGES[*]} " == *" $name "* ]]; then load_into_podman "gefyra/$name:$TAG"; fi
done
