"""The orchestrator: one per embedding program (or CLI command). It owns the settings, the plugin
manager and the event bus, chooses the backends through the hooks, keeps the cluster and engine
connections open across operations, and runs plans (the built-in steps plus the plugins').

It knows no backend: the program that makes it names the built-in plugins (``builtins``: the
client and the operator pass :data:`gefyra.plugins.BUILTIN_PLUGINS`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pluggy
import structlog

from gefyra import errors
from gefyra.core.engine.bus import Event, EventBus, EventKind
from gefyra.core.engine.plugins import PluginInfo, describe, make_plugin_manager
from gefyra.core.engine.steps import PlanResult, Step, run_plan
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.settings import Settings
from gefyra.core.spi.dns import Dns
from gefyra.core.spi.interceptor import Interceptor
from gefyra.core.spi.runtime import ContainerRuntime
from gefyra.core.spi.tunnel import Tunnel

log = structlog.get_logger(__name__)
C = TypeVar("C")


@dataclasses.dataclass
class OperationContext:
    """What every step of an operation works with; each operation's context adds its own fields."""

    orchestrator: Orchestrator
    cluster: Cluster
    runtime: ContainerRuntime

    @property
    def settings(self) -> Settings:
        return self.orchestrator.settings

    async def progress(self, step: str, message: str) -> None:
        """News of a long step (a PROGRESS event): what it waits for, how far it is."""
        await self.orchestrator.bus.publish(Event(EventKind.PROGRESS, step, message))


class Orchestrator:
    def __init__(self, settings: Settings | None = None, *, builtins: Sequence[str] = (),
                 plugins: Iterable[object | ModuleType] = (), bus: EventBus | None = None,
                 entry_points: bool = True) -> None:
        self.settings = settings or Settings()
        self.builtins = tuple(builtins)
        self.pm: pluggy.PluginManager = make_plugin_manager(self.builtins, plugins, entry_points=entry_points)
        self.bus = bus or EventBus()
        self.bus.subscribe(self._to_plugins)
        self._cluster: Cluster | None = None
        self._engine: ContainerRuntime | None = None
        self._tunnel: Tunnel | None = None

    def _to_plugins(self, event: Event) -> None:
        self.pm.hook.gefyra_event(event=event)

    # Backends, chosen by the plugins.

    def runtime(self) -> ContainerRuntime:
        """A new container runtime object as the plugins choose it (not yet connected)."""
        runtime: ContainerRuntime | None = self.pm.hook.gefyra_container_runtime(settings=self.settings)
        if runtime is None:
            raise errors.UsageError(f"no plugin provides the container runtime {self.settings.runtime!r}",
                                    "choose another with --runtime, or install the plugin that provides it")
        return runtime

    def tunnel(self) -> Tunnel:
        if self._tunnel is None:
            found: Tunnel | None = self.pm.hook.gefyra_tunnel(settings=self.settings)
            if found is None:
                raise errors.UsageError(f"no plugin provides the tunnel {self.settings.tunnel or '(default)'!r}",
                                        "install the plugin that provides it, or leave --tunnel out")
            self._tunnel = found
        return self._tunnel

    def dns(self) -> Dns:
        found: Dns | None = self.pm.hook.gefyra_dns(settings=self.settings)
        if found is None:
            raise errors.UsageError("no plugin provides the DNS server of the tunnel's local end")
        return found

    def interceptor(self, name: str | None = None) -> Interceptor:
        """The interceptor called ``name`` (None: the default one)."""
        found: Interceptor | None = self.pm.hook.gefyra_interceptor(settings=self.settings, name=name)
        if found is None:
            raise errors.UsageError(f"no plugin provides the interceptor {name!r}",
                                    "leave --interceptor out for the default, or install the plugin that provides it")
        return found

    # Connections, opened on first use and kept until close().

    async def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = await Cluster(self.settings).__aenter__()
        return self._cluster

    async def engine(self) -> ContainerRuntime:
        if self._engine is None:
            runtime = self.runtime()
            try:
                self._engine = await runtime.__aenter__()
            except anyio.get_cancelled_exc_class():  # (its own failures it cleans up itself)
                with anyio.CancelScope(shield=True):
                    await runtime.close()
                raise
        return self._engine

    async def both(self) -> tuple[Cluster, ContainerRuntime]:
        """The cluster and the engine, connected at the same time: each connection mostly waits for
        its other end (the API server, the engine's daemon: 0.01-0.02 s each). With both broken,
        the kubeconfig's error is the one reported; a cluster that fails does not wait for the
        engine."""
        engine: list[ContainerRuntime | Exception] = []
        failure: Exception | None = None

        async def connect_engine() -> None:
            try:
                engine.append(await self.engine())
            except Exception as exc:  # noqa: BLE001 - raised below, unless the cluster failed too
                engine.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(connect_engine)
            await anyio.lowlevel.checkpoint()  # its request goes out first: the kubeconfig's reading is work here
            try:
                cluster = await self.cluster()
            except Exception as exc:  # noqa: BLE001 - raised below, once the engine's task has ended
                failure = exc
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        if isinstance(engine[0], Exception):
            raise engine[0]
        return cluster, engine[0]

    async def close(self) -> None:
        cluster, engine, self._cluster, self._engine = self._cluster, self._engine, None, None
        if cluster is not None:
            await cluster.close()
        if engine is not None:
            await engine.close()

    # Plans.

    def plan(self, operation: str, steps: Sequence[Step[Any]]) -> list[Step[Any]]:
        """The built-in ``steps`` of ``operation`` plus the steps plugins add to it."""
        extra = [s for found in self.pm.hook.gefyra_plan_steps(operation=operation, settings=self.settings)
                 if found for s in found]
        return [*steps, *extra]

    def plugins(self) -> list[PluginInfo]:
        """The plugins in use, where each came from and the hooks it implements."""
        return describe(self.pm, self.builtins)

    async def run_plan(self, operation: str, steps: Sequence[Step[C]], ctx: C) -> PlanResult:
        """Runs the plan of ``operation`` (``steps`` and the plugins' own) on the bus."""
        log.debug("plan", operation=operation, steps=[s.name for s in steps])
        return await run_plan(self.plan(operation, steps), ctx, self.bus)
