"""The plugin manager: the built-in plugins first, then third-party ones from the ``gefyra``
entry-point group (which, registered later and not ``trylast``, take precedence), then those an
embedder hands in. The built-ins are named by the program that builds the manager (the client and
the operator pass :data:`gefyra.plugins.BUILTIN_PLUGINS`): the engine knows no backend.

With ``GEFYRA_TRACE_PLUGINS=1`` every hook call is logged with its arguments and its result."""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import pluggy
import structlog

from gefyra.core.engine import hookspecs

log = structlog.get_logger("gefyra.plugins")

#: Where a plugin came from (:attr:`PluginInfo.source`).
BUILTIN, ENTRY_POINT, EMBEDDER = "built-in", "entry point", "embedder"
TRACE_VARIABLE = "GEFYRA_TRACE_PLUGINS"


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """One registered plugin, as `gefyra plugins` lists it."""

    name: str
    #: BUILTIN, ENTRY_POINT or EMBEDDER.
    source: str
    #: The distribution an entry-point plugin came from, with its version ("" otherwise).
    distribution: str
    #: The hooks it implements, sorted.
    hooks: tuple[str, ...]


def make_plugin_manager(builtins: Sequence[str] = (), extra: Iterable[object | ModuleType] = (), *,
                        entry_points: bool = True) -> pluggy.PluginManager:
    """A new plugin manager (one per orchestrator, so that embedders and tests stay isolated):
    the modules named in ``builtins``, in that order, then the entry points, then ``extra``."""
    pm = pluggy.PluginManager("gefyra")
    pm.add_hookspecs(hookspecs)
    for name in builtins:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        pm.load_setuptools_entrypoints("gefyra")
    for plugin in extra:
        pm.register(plugin)
    if os.environ.get(TRACE_VARIABLE, "") not in ("", "0"):
        _trace(pm)
    return pm


def _trace(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, implementations: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
        log.info("hook called", hook=hook_name, plugins=[i.plugin_name for i in implementations],
                 arguments={k: repr(v)[:200] for k, v in kwargs.items()})

    def after(outcome: pluggy.Result[Any], hook_name: str, implementations: Sequence[pluggy.HookImpl],
              kwargs: Mapping[str, Any]) -> None:
        failure = outcome.exception
        log.info("hook returned", hook=hook_name,
                 result=repr(outcome.get_result())[:200] if failure is None else None,
                 error=f"{type(failure).__name__}: {failure}" if failure is not None else None)

    pm.add_hookcall_monitoring(before, after)


def describe(pm: pluggy.PluginManager, builtins: Sequence[str]) -> list[PluginInfo]:
    """Every plugin registered with ``pm``, where it came from and the hooks it implements."""
    distributions = {id(plugin): f"{dist.project_name} {dist.version}" for plugin, dist in pm.list_plugin_distinfo()}
    found = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        source = BUILTIN if name in builtins else ENTRY_POINT if id(plugin) in distributions else EMBEDDER
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or []))
        found.append(PluginInfo(name, source, distributions.get(id(plugin), ""), hooks))
    return found
