"""The `Gefyra` class: gefyra's operations for asyncio programs, over one orchestrator whose
cluster and engine connections stay open from the first call that needs them until the end of
``async with``. The CLI and :mod:`gefyra.api` are thin layers over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from types import ModuleType, TracebackType
from typing import Any, Self

from gefyra import errors
from gefyra.client import bridge, check, cluster_side, down, manifests, run, session_apply, status, unbridge, up
from gefyra.client.bridge_objects import bridge_path, list_bridges
from gefyra.client.lock import client_lock
from gefyra.client.results import BridgeInfo, CheckResult, LocalContainer, Status
from gefyra.core.engine.bus import EventBus
from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.engine.plugins import PluginInfo
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model import validation
from gefyra.core.model.crd import parse_bridge
from gefyra.core.model.names import LABEL_CLIENT, LABEL_ROLE
from gefyra.core.model.requests import BridgeRequest, RunRequest
from gefyra.core.model.settings import Settings
from gefyra.core.spi.runtime import ContainerInfo, ContainerRuntime
from gefyra.plugins import BUILTIN_PLUGINS


class Gefyra:
    """One session of gefyra's operations: ``async with Gefyra(settings) as g: await g.up();
    await g.run(RunRequest(...))``.

    It holds one orchestrator (the plugin manager, the event bus, the cluster and engine
    connections, opened on first use). ``plugins`` are registered beside the built-in and
    entry-point plugins (for embedders and tests); ``bus`` lets the caller subscribe to the events
    of every operation. The settings, and each operation's arguments, are checked before anything
    connects (UsageError)."""

    def __init__(self, settings: Settings | None = None, *, plugins: Iterable[object | ModuleType] = (),
                 bus: EventBus | None = None, entry_points: bool = True) -> None:
        self.orchestrator = Orchestrator(settings, builtins=BUILTIN_PLUGINS, plugins=plugins, bus=bus,
                                         entry_points=entry_points)
        self.settings.validate()  # again: a caller may have changed them since they were made

    @property
    def settings(self) -> Settings:
        return self.orchestrator.settings

    @property
    def bus(self) -> EventBus:
        return self.orchestrator.bus

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the cluster and engine connections (``async with`` does it)."""
        await self.orchestrator.close()

    def plugins(self) -> list[PluginInfo]:
        """The plugins in use: where each came from and the hooks it implements."""
        return self.orchestrator.plugins()

    async def up(self) -> Status:
        """Connects this machine to the cluster; idempotent. Returns the status afterwards. The
        cluster side's shared settings (port, client timeout) are taken as installed; one given
        that differs is refused (ConflictError): it changes only with :meth:`install`."""
        cluster, runtime = await self.orchestrator.both()
        await self._resolve_shared(cluster, may_change=False)
        async with client_lock(self.settings.client_id, self.settings.timeout):
            await self.orchestrator.run_plan("up", up.up_plan(), up.ConnectContext(self.orchestrator, cluster, runtime))
        return await status.measure(self.orchestrator)

    def manifests(self) -> list[dict[str, Any]]:
        """The cluster side's objects as an admin installs them (`gefyra install -o yaml`).
        `install` adds the server end's key pair and the cluster-info ConfigMap, which need the
        cluster."""
        return manifests.cluster_side(self.settings, self.orchestrator.tunnel(), manifests.INSTALLED)

    async def _resolve_shared(self, cluster: Cluster, *, may_change: bool) -> None:
        self.orchestrator.settings = await cluster_side.resolve_shared(cluster, self.settings, self.orchestrator.tunnel(),
                                                                       may_change=may_change)

    async def install(self) -> list[str]:
        """Installs or updates the cluster side as an admin's: developers' `down` leaves it in place.
        Shared settings not given keep their installed values. Returns the objects applied."""
        cluster = await self.orchestrator.cluster()
        await self._resolve_shared(cluster, may_change=True)
        await cluster_side.install(up.ConnectContext(self.orchestrator, cluster, self.orchestrator.runtime()),
                                   manifests.INSTALLED)
        return [f"{d['kind']} {d['metadata'].get('namespace', '') + '/' if d['metadata'].get('namespace') else ''}"
                f"{d['metadata']['name']}" for d in self.manifests()]

    async def uninstall(self) -> list[str]:
        """Removes the cluster side for every client: all bridges first (their workloads are given
        back), then every object. Returns what it removed."""
        cluster = await self.orchestrator.cluster()
        if await cluster_side.installed_lifecycle(cluster) is None:
            return []
        try:  # only to stop steering this machine's own bridges: an admin may have no engine
            runtime, steering = await self.orchestrator.engine(), True
        except errors.EngineUnavailableError:
            runtime, steering = self.orchestrator.runtime(), False
        ctx = up.ConnectContext(self.orchestrator, cluster, runtime)
        removed = [f"bridge {name}" for name in await unbridge.remove_bridges(ctx, await list_bridges(cluster),
                                                                              steering=steering)]
        await cluster_side.remove(cluster, self.settings, self.orchestrator.tunnel(), self.settings.timeout)
        return [*removed, "cluster side"]

    async def down(self) -> list[str]:
        """Removes what gefyra made for this client, locally and in the cluster (the whole cluster
        side when no other client is left). Harmless when nothing is there. Returns what it removed.

        Where the cluster does not answer, what is on this machine is removed all the same, and
        ClusterUnreachableError says so and what is left in the cluster."""
        try:
            cluster: Cluster | None = await self.orchestrator.cluster()
        except errors.ClusterUnreachableError as exc:
            cluster, unreachable = None, exc
        runtime = await self.orchestrator.engine()
        ctx = up.ConnectContext(self.orchestrator, cluster or Cluster(self.settings), runtime)
        async with client_lock(self.settings.client_id, self.settings.timeout):
            if cluster is not None:
                await self.orchestrator.run_plan("down", down.down_plan(), ctx)
            else:
                await self.orchestrator.run_plan("down-local", down.local_plan(), ctx)
        if cluster is None:
            raise errors.ClusterUnreachableError(
                f"{unreachable.what}; removed here: {', '.join(ctx.removed) or 'nothing'}; left in the cluster: "
                f"client {self.settings.client_id} and its bridges",
                "the operator gives the workloads of a client it has not heard from for the client timeout (60 s "
                "unless set at install) back, and removes the client after 12 h; or run `gefyra down` again once "
                "the cluster answers") from unreachable
        return ctx.removed

    async def run(self, request: RunRequest) -> LocalContainer:
        """Starts a local container that behaves like a pod of ``request.namespace``."""
        request.validate()
        cluster, runtime = await self.orchestrator.both()
        await self.orchestrator.run_plan("run", run.run_plan(), run.RunContext(self.orchestrator, cluster, runtime, request))
        info = await runtime.get_container(request.name)
        if info is None:  # --rm and a command that ended at once
            return LocalContainer(request.name, request.image, "removed", request.namespace, "")
        return await status.local_container(self.orchestrator, runtime, info)

    async def bridge(self, request: BridgeRequest) -> BridgeInfo:
        """Sends the traffic of ``request.target``'s ports to the local container ``request.local``."""
        request.validate()
        cluster, runtime = await self.orchestrator.both()
        ctx = bridge.BridgeContext(self.orchestrator, cluster, runtime, request,
                                   self.orchestrator.interceptor(request.interceptor))
        await self.orchestrator.run_plan("bridge", bridge.bridge_plan(request), ctx)
        return BridgeInfo.of(ctx.found or parse_bridge(await cluster.request("GET", bridge_path(ctx.name))))

    async def unbridge(self, names: list[str] | None = None, *, namespace: str | None = None) -> list[str]:
        """Removes bridges (by bridge or local container name; all of this client's if ``names`` is
        None; only those of workloads in ``namespace`` if given) and waits until the workloads have
        their traffic back."""
        if names is not None:
            validation.dns_labels(names, "names", "name")
        if namespace is not None:
            validation.dns_label(namespace, "namespace", "namespace")
        cluster, runtime = await self.orchestrator.both()
        mine = [b for b in await list_bridges(cluster, self.settings.client_id)
                if namespace is None or (b.spec.target is not None and b.spec.target.namespace == namespace)]
        chosen = [b for b in mine if names is None or b.name in names or b.spec.local_container in names]
        if names and not chosen:
            where = f" in namespace {namespace}" if namespace else ""
            raise errors.NotFoundError(f"no bridge named {', '.join(names)}{where}", "`gefyra list` shows the bridges")
        ctx = unbridge.UnbridgeContext(self.orchestrator, cluster, runtime)
        await self.orchestrator.run_plan("unbridge", [unbridge.RemoveBridge(b) for b in chosen], ctx)
        return ctx.removed

    async def apply(self, path: str) -> list[str]:
        """Makes this machine's session what the session file ``path`` says (see
        :mod:`gefyra.client.session_apply`): only what changed changes. Needs a connected client."""
        return await session_apply.apply(self, session_apply.read(path))

    async def remove_session(self, path: str) -> list[str]:
        """Removes what the session file ``path`` made (its containers, their bridges first)."""
        return await session_apply.remove(self, path)

    async def logs(self, name: str, *, follow: bool = False, since: float | None = None,
                   tail: int | None = None) -> AsyncIterator[str]:
        """The output lines of the local container ``name`` (one started with ``run``): written
        since the Unix time ``since``, the last ``tail`` of them; with ``follow``, then each new
        one until it stops."""
        validation.dns_label(name, "name", "container name")
        runtime = await self.orchestrator.engine()
        await self._run_container(runtime, name)
        async for line in runtime.logs(name, follow=follow, since=since, tail=tail):
            yield line

    async def rm(self, names: list[str] | None = None) -> list[str]:
        """Removes local containers started with ``run`` (all of this client's if ``names`` is
        None), each after its bridges: the workloads have their traffic back first. Returns what
        was removed."""
        if names is not None:
            validation.dns_labels(names, "names", "name")
        runtime = await self.orchestrator.engine()
        if names is None:
            chosen = [c.name for c in await status.containers(self.orchestrator, runtime)]
        else:
            chosen = [(await self._run_container(runtime, name)).name for name in dict.fromkeys(names)]
        if not chosen:
            return []
        cluster = await self.orchestrator.cluster()
        bridged = [b.name for b in await list_bridges(cluster, self.settings.client_id) if b.spec.local_container in chosen]
        removed = await self.unbridge(bridged) if bridged else []
        for name in chosen:
            await run.remove_run_container(runtime, name)
        return [f"bridge {b}" for b in removed] + [f"container {c}" for c in chosen]

    async def _run_container(self, runtime: ContainerRuntime, name: str) -> ContainerInfo:
        """The local container ``name`` if this client started it with ``run``; NotFoundError if not."""
        found = await runtime.get_container(name)
        if found is None or found.labels.get(LABEL_CLIENT) != self.settings.client_id \
                or found.labels.get(LABEL_ROLE) != "run":
            raise errors.NotFoundError(f"no local container {name} started with `gefyra run` by this client",
                                       "`gefyra list` shows them")
        return found

    async def bridges(self) -> list[BridgeInfo]:
        """This client's bridges with their state, and what is wrong on this machine's side."""
        cluster, runtime = await self.orchestrator.both()
        return await status.bridges(self.orchestrator, cluster, runtime)

    async def containers(self) -> list[LocalContainer]:
        """The local containers started with ``run`` for this client."""
        return await status.containers(self.orchestrator, await self.orchestrator.engine())

    async def cluster_version(self) -> str | None:
        """The version of the cluster side installed in the cluster (None: not installed)."""
        cluster = await self.orchestrator.cluster()
        found = await cluster.get(cluster_side.deployment_path(self.settings, self.orchestrator.tunnel()))
        if found is None:
            return None
        version = (found["metadata"].get("labels") or {}).get("app.kubernetes.io/version")
        return str(version) if version else "older than 0.1.0.dev0"

    async def status(self) -> Status:
        """What is installed and running, measured now: cluster side, client, tunnel, containers,
        bridges, and every problem found (no secrets). Works without the cluster too (its part is
        then unknown)."""
        return await status.measure(self.orchestrator)

    async def check(self) -> list[CheckResult]:
        """Checks what `up` needs, before `up` (gefyra.client.check); each result says what is
        fine or what to do."""
        return await check.check(self.orchestrator)


__all__ = ["BridgeRequest", "Gefyra", "RunRequest"]
