#!/usr/bin/env bash
# `make images [REGISTRY=HOST:PORT[/PATH]]`: builds every image of images/ into Docker.
# - gefyra's own images (cargo, carrier, operator, stowaway; stowaway-kernel for `make bench`) are
#   tagged with gefyra's version and pushed to REGISTRY (default: the development registry), from
#   where the cluster and the local engines pull them like a user's would: gefyra runs them as
#   REGISTRY/gefyra/NAME:VERSION
#   (GEFYRA_REGISTRY=REGISTRY). A stale copy in the cluster's containerd is dropped, so that the
#   next pod pulls the fresh image.
# - the test workloads' image (testserver) is pushed to the development registry as
#   REGISTRY/gefyra/NAME:dev (the tests' pods pull it), and loaded into Podman as gefyra/NAME:dev.
# A directory with a go.mod gets its static Go binary built into the build context first.
source "$(dirname "$0")/common.sh"

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO_ROOT/gefyra/_version.py")
TAG="${GEFYRA_IMAGE_TAG:-$VERSION}"
PUSH_TO="${REGISTRY:-$DEV_REGISTRY}"
GEFYRA_IMAGES=(cargo carrier operator stowaway stowaway-kernel)
# The development cluster's operator carries the tests' third-party plugin (an interceptor that is
# used only by bridges that name it), as a user's own operator image would carry theirs.
export GEFYRA_OPERATOR_PLUGINS="${GEFYRA_OPERATOR_PLUGINS-$REPO_ROOT/tests/plugins/recording_interceptor}"
# Pushing to another registry needs no development cluster; the test images then are not built.
cluster_running=0
[[ -S $CONTAINERD_SOCK ]] && cluster_running=1
(( cluster_running )) || [[ $PUSH_TO != "$DEV_REGISTRY" ]] \
  || die "the development cluster is not running: run 'make cluster' first (or pass REGISTRY=HOST:PORT)"
"$HACK_DIR/build.sh" images
"$HACK_DIR/base-images.sh"

for dir in "$REPO_ROOT"/images/*/; do
  name=$(basename "$dir")
  [[ -f $dir/Dockerfile ]] || continue
  if [[ " ${GEFYRA_IMAGES[*]} " != *" $name "* ]] && (( ! cluster_running )); then continue; fi
  context=$(mktemp -d)
  cp -r "$dir"/. "$context"/
  if [[ -f $dir/go.mod ]]; then
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$context/$name" .)
  fi
  if [[ -x $dir/prepare.sh ]]; then
    "$dir/prepare.sh" "$context"
  fi
  if [[ " ${GEFYRA_IMAGES[*]} " == *" $name "* ]]; then
    image="$PUSH_TO/gefyra/$name:$TAG"
    log "image $image"
    docker build -q --pull=false -t "gefyra/$name:$TAG" -t "$image" "$context" >/dev/null
    docker push -q "$image" >/dev/null
    if [[ $PUSH_TO == "$DEV_REGISTRY" ]] && (( cluster_running )); then
      ctr_k8s images rm "$image" >/dev/null 2>&1 || true
      podman rmi -f "$image" >/dev/null 2>&1 || true
    fi
  else
    # The test workloads pull it from the development registry (as a user's pull theirs); local
    # containers of the tests run it as gefyra/NAME:dev.
    image="$DEV_REGISTRY/gefyra/$name:dev"
    log "image $image"
    docker build -q --pull=false -t "gefyra/$name:dev" -t "$image" "$context" >/dev/null
    docker push -q "$image" >/dev/null
    ctr_k8s images rm "$image" >/dev/null 2>&1 || true
    load_into_podman "gefyra/$name:dev"
  fi
  rm -rf "$context"
done
