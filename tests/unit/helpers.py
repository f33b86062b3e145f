"""Helpers of the unit tests."""

from __future__ import annotations

from typing import Any

from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.model.settings import Settings
from gefyra.plugins import BUILTIN_PLUGINS


def orchestrator_of(settings: Settings | None = None, **kwargs: Any) -> Orchestrator:
    """An orchestrator with gefyra's built-in plugins, as the client and the operator make it."""
    return Orchestrator(settings, builtins=BUILTIN_PLUGINS, **kwargs)
