"""The orchestrator: one per operation or embedding program. It owns the plugin manager, the
event bus and the settings, opens the cluster and the container runtime, and runs plans."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TypeVar

import pluggy
import structlog

from gefyra import errors
from gefyra.core.bus import Event, EventBus
from gefyra.core.config import Settings
from gefyra.core.kube import Cluster
from gefyra.core.plugins import make_plugin_manager
from gefyra.core.runtime import ContainerRuntime
from gefyra.core.steps import Step, run_plan

log = structlog.get_logger(__name__)
C = TypeVar("C")


class Orchestrator:
    def __init__(self, settings: Settings | None = None, *, plugins: Iterable[object | ModuleType] = (),
                 bus: EventBus | None = None) -> None:
        self.settings = settings or Settings()
        self.pm: pluggy.PluginManager = make_plugin_manager(plugins)
        self.bus = bus or EventBus()
        self.bus.subscribe(self._to_plugins)

    def _to_plugins(self, event: Event) -> None:
        self.pm.hook.gefyra_event(event=event)

    def runtime(self) -> ContainerRuntime:
        """The container runtime chosen by the plugins (not yet connected)."""
        runtime: ContainerRuntime | None = self.pm.hook.gefyra_container_runtime(settings=self.settings)
        if runtime is None:
            raise errors.UsageError(f"no plugin provides the container runtime {self.settings.runtime!r}",
                                    "use --runtime docker or podman, or install the plugin that provides it")
        return runtime

    def dns_config(self, cluster_dns_ip: str, cluster_domain: str) -> str:
        text: str | None = self.pm.hook.gefyra_dns_config(
            settings=self.settings, cluster_dns_ip=cluster_dns_ip, cluster_domain=cluster_domain)
        if text is None:
            raise errors.UsageError("no plugin provides cargo's DNS configuration")
        return text

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[tuple[Cluster, ContainerRuntime]]:
        """The cluster and the runtime, both open, closed again on exit."""
        async with self.runtime() as runtime, Cluster(self.settings) as cluster:
            yield cluster, runtime

    async def run_plan(self, steps: Sequence[Step[C]], ctx: C) -> None:
        await run_plan(steps, ctx, self.bus)
