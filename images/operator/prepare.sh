#!/usr/bin/env bash
# Builds wheels of gefyra (this checkout) and of all its dependencies into CONTEXT/wheels: the image
# installs them offline (Debian bookworm's python3 is 3.11, like the host's).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
"$repo/.venv/bin/pip" wheel -q -w "$1/wheels" "$repo"
