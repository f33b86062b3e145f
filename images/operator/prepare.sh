#!/usr/bin/env bash
# Builds wheels of gefyra (this checkout) and of all its dependencies into CONTEXT/wheels: the image
# installs them offline (Debian bookworm's python3 is 3.11, like the host's). Plugin packages named
# in GEFYRA_OPERATOR_PLUGINS (source directories, space separated) are built and installed too, and
# found by the operator through the `gefyra` entry-point group, as on a user's machine.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
"$repo/.venv/bin/pip" wheel -q -w "$1/wheels" "$repo"
: > "$1/wheels/plugins.txt"
for plugin in ${GEFYRA_OPERATOR_PLUGINS:-}; do
  "$repo/.venv/bin/pip" wheel -q --no-deps -w "$1/wheels" "$plugin"
  "$repo/.venv/bin/python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["name"])' \
    "$plugin/pyproject.toml" >> "$1/wheels/plugins.txt"
done
