"""Files that gefyra keeps on this machine (in its private config directory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """``data`` as the JSON of ``path``, written whole or not at all (a reader never sees half);
    its directory is made private (0700) if it is new."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, sort_keys=True))
    partial.replace(path)
