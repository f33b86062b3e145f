"""gefyra: run a local container as if it were a pod of a Kubernetes cluster.

Plugins write ``from gefyra import hookimpl``; embedding programs use :mod:`gefyra.api`.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0.dev0"

hookimpl = pluggy.HookimplMarker("gefyra")

__all__ = ["__version__", "hookimpl"]
