#!/usr/bin/env bash
# `make podman` (also part of `make cluster`): Podman's Docker-compatible API service on its
# rootful default socket, for gefyra's Podman runtime. Idempotent; `make cluster-down` stops it.
source "$(dirname "$0")/common.sh"

command -v podman >/dev/null || die "podman is not installed (make cluster installs it)"
mkdir -p "$RUN_DIR" "$LOG_DIR" "$(dirname "$PODMAN_SOCKET")"
pidfile="$RUN_DIR/podman.pid"
if [[ -f $pidfile ]] && kill -0 "$(<"$pidfile")" 2>/dev/null && [[ -S $PODMAN_SOCKET ]]; then
  exit 0
fi
setsid podman system service --time=0 "unix://$PODMAN_SOCKET" >"$LOG_DIR/podman.log" 2>&1 < /dev/null &
echo $! > "$pidfile"
wait_for 30 "podman API service" curl -fsS --unix-socket "$PODMAN_SOCKET" http://d/_ping
