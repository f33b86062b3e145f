"""gefyra: run a local container as if it were a pod of a Kubernetes cluster.

Embedding programs write ``async with Gefyra(Settings(...)) as g: await g.up()``; plugins write
``from gefyra import hookimpl``. The classes that need the cluster and engine clients are imported
on first use, so that ``import gefyra`` (and ``gefyra version``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

from gefyra._version import __version__
from gefyra.core.model.settings import Settings
from gefyra.errors import (
    ClusterUnreachableError,
    ConfigError,
    ConflictError,
    EngineUnavailableError,
    ForbiddenError,
    GefyraError,
    NotConnectedError,
    NotFoundError,
    ReadinessTimeoutError,
    UsageError,
)

if TYPE_CHECKING:
    from gefyra.client.results import BridgeInfo, CargoInfo, CheckResult, ClientInfo, ClusterInfo, LocalContainer, Status
    from gefyra.client.session import Gefyra
    from gefyra.core.engine.plugins import PluginInfo
    from gefyra.core.model.conditions import Condition
    from gefyra.core.model.requests import BridgeRequest, RunRequest

hookimpl = pluggy.HookimplMarker("gefyra")

_LAZY = {
    "Gefyra": "gefyra.client.session",
    "BridgeRequest": "gefyra.core.model.requests",
    "RunRequest": "gefyra.core.model.requests",
    **{name: "gefyra.client.results" for name in (
        "BridgeInfo", "CargoInfo", "CheckResult", "ClientInfo", "ClusterInfo", "LocalContainer", "Status")},
    "Condition": "gefyra.core.model.conditions",
    "PluginInfo": "gefyra.core.engine.plugins",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gefyra' has no attribute {name!r}")


__all__ = [
    "BridgeInfo",
    "BridgeRequest",
    "CargoInfo",
    "CheckResult",
    "ClientInfo",
    "ClusterInfo",
    "ClusterUnreachableError",
    "Condition",
    "ConfigError",
    "ConflictError",
    "EngineUnavailableError",
    "ForbiddenError",
    "Gefyra",
    "GefyraError",
    "LocalContainer",
    "NotConnectedError",
    "NotFoundError",
    "PluginInfo",
    "ReadinessTimeoutError",
    "RunRequest",
    "Settings",
    "Status",
    "UsageError",
    "__version__",
    "hookimpl",
]
