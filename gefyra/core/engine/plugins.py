"""The plugin manager: built-in plugins first, then third-party ones from the ``gefyra``
entry-point group (which, registered later and not ``trylast``, take precedence)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

import pluggy

from gefyra.core.engine import hookspecs
from gefyra.plugins import BUILTIN_PLUGINS


def make_plugin_manager(extra: Iterable[object | ModuleType] = (), *, entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager (one per orchestrator, so that embedders and tests stay isolated)."""
    pm = pluggy.PluginManager("gefyra")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        pm.load_setuptools_entrypoints("gefyra")
    for plugin in extra:
        pm.register(plugin)
    return pm
