#!/usr/bin/env bash
# `make test`: the whole suite on the development cluster. A cluster this script brought up is
# torn down again at the end (pass or fail); one that was already running stays.
set -euo pipefail
cd "$(dirname "$0")/.."

owned=0
if [[ ! -f .devcluster/kubeconfig ]]; then owned=1; fi
teardown() { if (( owned )); then hack/devcluster/down.sh; fi; }
trap teardown EXIT

hack/devcluster/up.sh
hack/devcluster/images.sh
# The Go parts' own tests: the tunnel's two ends and the framing they share.
for module in images/wgstream images/cargo images/stowaway; do
  (cd "$module" && go vet ./... && go test -count=1 ./...)
done
# The slowest tests are listed at the end: the suite must stay well inside CI's time.
.venv/bin/python -m pytest --durations=20 "$@"
