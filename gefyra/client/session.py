"""The `Gefyra` class: gefyra's operations for asyncio programs, over one orchestrator whose
cluster and engine connections stay open from the first call that needs them until the end of
``async with``. The CLI and :mod:`gefyra.api` are thin layers over it."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType, TracebackType
from typing import Any, Self

from gefyra import errors
from gefyra.client import bridge, check, cluster_side, down, manifests, run, unbridge, up
from gefyra.client.bridge_objects import bridge_path, list_bridges
from gefyra.client.lock import client_lock
from gefyra.client.results import BridgeInfo, CargoInfo, CheckResult, ClientInfo, ClusterInfo, LocalContainer, Status
from gefyra.core.engine.bus import EventBus
from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.engine.plugins import PluginInfo
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model import validation
from gefyra.core.model.crd import parse_bridge
from gefyra.core.model.names import GEFYRA_NAMESPACE, LABEL_CLIENT, LABEL_NAMESPACE, LABEL_ROLE
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
        """Connects this machine to the cluster; idempotent. Returns the status afterwards."""
        cluster, runtime = await self.orchestrator.both()
        async with client_lock(self.settings.client_id, self.settings.timeout):
            await self.orchestrator.run_plan("up", up.up_plan(), up.ConnectContext(self.orchestrator, cluster, runtime))
        return await self._status(cluster, runtime)

    def manifests(self) -> list[dict[str, Any]]:
        """The cluster side's objects as an admin installs them (`gefyra install -o yaml`).
        `install` adds the server end's key pair and the cluster-info ConfigMap, which need the
        cluster."""
        return manifests.cluster_side(self.settings, self.orchestrator.tunnel(), manifests.INSTALLED)

    async def install(self) -> list[str]:
        """Installs or updates the cluster side as an admin's: developers' `down` leaves it in place.
        Returns the objects applied."""
        cluster = await self.orchestrator.cluster()
        await cluster_side.install(up.ConnectContext(self.orchestrator, cluster, self.orchestrator.runtime()),
                                   manifests.INSTALLED)
        return [f"{d['kind']} {d['metadata'].get('namespace', '') + '/' if d['metadata'].get('namespace') else ''}"
                f"{d['metadata']['name']}" for d in self.manifests()]

    async def uninstall(self) -> list[str]:
        """Removes the cluster side for every client: all bridges first (their workloads are given
        back), then every object. Returns what it removed."""
        cluster = await self.orchestrator.cluster()
        ctx = up.ConnectContext(self.orchestrator, cluster, self.orchestrator.runtime())
        if await cluster_side.installed_lifecycle(cluster) is None:
            return []
        names = [b.name for b in await list_bridges(cluster)]
        removed = [f"bridge {name}" for name in await unbridge.remove_bridges(ctx, names)]
        await cluster_side.remove(cluster, self.settings, self.orchestrator.tunnel(), self.settings.timeout)
        return [*removed, "cluster side"]

    async def down(self) -> list[str]:
        """Removes what gefyra made for this client, locally and in the cluster (the whole cluster
        side when no other client is left). Harmless when nothing is there. Returns what it removed."""
        cluster, runtime = await self.orchestrator.both()
        ctx = up.ConnectContext(self.orchestrator, cluster, runtime)
        async with client_lock(self.settings.client_id, self.settings.timeout):
            await self.orchestrator.run_plan("down", down.down_plan(), ctx)
        return ctx.removed

    async def run(self, request: RunRequest) -> LocalContainer:
        """Starts a local container that behaves like a pod of ``request.namespace``."""
        request.validate()
        cluster, runtime = await self.orchestrator.both()
        await self.orchestrator.run_plan("run", run.run_plan(), run.RunContext(self.orchestrator, cluster, runtime, request))
        info = await runtime.get_container(request.name)
        if info is None:  # --rm and a command that ended at once
            return LocalContainer(request.name, request.image, "removed", request.namespace, "")
        return await self._local(runtime, info)

    async def bridge(self, request: BridgeRequest) -> BridgeInfo:
        """Sends the traffic of ``request.target``'s ports to the local container ``request.local``."""
        request.validate()
        cluster, runtime = await self.orchestrator.both()
        ctx = bridge.BridgeContext(self.orchestrator, cluster, runtime, request,
                                   self.orchestrator.interceptor(request.interceptor))
        await self.orchestrator.run_plan("bridge", bridge.bridge_plan(request), ctx)
        return BridgeInfo.of(ctx.found or parse_bridge(await cluster.request("GET", bridge_path(ctx.name))))

    async def unbridge(self, names: list[str] | None = None) -> list[str]:
        """Removes bridges (by bridge or local container name; all of this client's if ``names`` is
        None) and waits until the workloads have their traffic back."""
        if names is not None:
            validation.dns_labels(names, "names", "name")
        cluster, runtime = await self.orchestrator.both()
        mine = await list_bridges(cluster, self.settings.client_id)
        chosen = [b.name for b in mine if names is None or b.name in names or b.spec.local_container in names]
        if names and not chosen:
            raise errors.NotFoundError(f"no bridge named {', '.join(names)}", "`gefyra list` shows the bridges")
        ctx = unbridge.UnbridgeContext(self.orchestrator, cluster, runtime)
        await self.orchestrator.run_plan("unbridge", [unbridge.RemoveBridge(name) for name in chosen], ctx)
        return ctx.removed

    async def bridges(self) -> list[BridgeInfo]:
        """This client's bridges with their state."""
        cluster = await self.orchestrator.cluster()
        return [BridgeInfo.of(b) for b in await list_bridges(cluster, self.settings.client_id)]

    async def containers(self) -> list[LocalContainer]:
        """The local containers started with ``run`` for this client."""
        runtime = await self.orchestrator.engine()
        found = await runtime.list_containers({LABEL_CLIENT: self.settings.client_id, LABEL_ROLE: "run"})
        return [await self._local(runtime, c) for c in found]

    async def _local(self, runtime: ContainerRuntime, info: ContainerInfo) -> LocalContainer:
        return LocalContainer(name=info.name, image=info.image, state=info.state,
                              namespace=info.labels.get(LABEL_NAMESPACE, ""),
                              address=await run.local_address(self.settings, runtime, info))

    async def cluster_version(self) -> str | None:
        """The version of the cluster side installed in the cluster (None: not installed)."""
        cluster = await self.orchestrator.cluster()
        found = await cluster.get(cluster_side.deployment_path(self.settings, self.orchestrator.tunnel()))
        if found is None:
            return None
        version = (found["metadata"].get("labels") or {}).get("app.kubernetes.io/version")
        return str(version) if version else "older than 0.1.0.dev0"

    async def status(self) -> Status:
        """What is installed and running: cluster side, client, tunnel, containers. No secrets."""
        return await self._status(*await self.orchestrator.both())

    async def _status(self, cluster: Cluster, runtime: ContainerRuntime) -> Status:
        s, tunnel = self.settings, self.orchestrator.tunnel()
        installed = await cluster.namespace_exists(GEFYRA_NAMESPACE)
        registered = await up.get_client(cluster, s.client_id) if installed else None
        local_end_info = None
        local_end = await runtime.get_container(tunnel.local_name(s))
        if local_end is not None:
            handshake = await tunnel.latest_handshake(runtime, local_end.name) if local_end.running else None
            local_end_info = CargoInfo(local_end.name, local_end.state, handshake)
        return Status(
            client=s.client_id, runtime=runtime.name,
            connected=bool(registered and local_end and local_end.running and registered.status.phase == "Active"),
            cluster=ClusterInfo(api=cluster.server, installed=installed,
                                client=ClientInfo(registered.status.address or None, registered.status.phase or None)
                                if registered else None),
            cargo=local_end_info, containers=await self.containers(),
            bridges=await self.bridges() if installed else [])

    async def check(self) -> list[CheckResult]:
        """Checks what `up` needs, before `up` (gefyra.client.check); each result says what is
        fine or what to do."""
        return await check.check(self.orchestrator)


__all__ = ["BridgeRequest", "Gefyra", "RunRequest"]
