"""The `Gefyra` class: gefyra's operations for asyncio programs, over one orchestrator whose
cluster and engine connections stay open from the first call that needs them until the end of
``async with``. The CLI and :mod:`gefyra.api` are thin layers over it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from types import ModuleType, TracebackType
from typing import Any, Self

import anyio

from gefyra import errors
from gefyra.client import bridging, connect, manifests
from gefyra.client import check as preflight
from gefyra.client import run as localrun
from gefyra.client.lock import client_lock
from gefyra.core.engine.bus import EventBus
from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model import validation
from gefyra.core.model.names import BRIDGES_PATH, GEFYRA_NAMESPACE, LABEL_CLIENT, LABEL_NAMESPACE, LABEL_ROLE, STOWAWAY
from gefyra.core.model.requests import BridgeRequest, RunRequest
from gefyra.core.model.results import (
    BridgeInfo,
    CargoInfo,
    CheckResult,
    ClientInfo,
    ClusterInfo,
    LocalContainer,
    Status,
)
from gefyra.core.model.settings import Settings
from gefyra.core.spi.runtime import ContainerInfo, ContainerRuntime
from gefyra.plugins import BUILTIN_PLUGINS


class Gefyra:
    """``async with Gefyra(settings) as g: await g.up(); await g.run(RunRequest(...))``.

    ``plugins`` are registered beside the built-in and entry-point plugins (for embedders and
    tests); ``bus`` lets the caller subscribe to the events of every operation. The settings, and
    each operation's arguments, are checked before anything connects (UsageError)."""

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

    async def up(self) -> Status:
        """Connects this machine to the cluster; idempotent. Returns the status afterwards."""
        cluster, runtime = await self.orchestrator.both()
        async with client_lock(self.settings.client_id, self.settings.timeout):
            await self.orchestrator.run_plan("up", connect.up_plan(), connect.Context(self.orchestrator, cluster, runtime))
        return await self._status(cluster, runtime)

    def manifests(self) -> list[dict[str, Any]]:
        """The cluster side's objects as an admin installs them (`gefyra install -o yaml`).
        `install` adds stowaway's key pair and the cluster-info ConfigMap, which need the cluster."""
        return manifests.cluster_side(self.settings, manifests.INSTALLED)

    async def install(self) -> list[str]:
        """Installs or updates the cluster side as an admin's: developers' `down` leaves it in place.
        Returns the objects applied."""
        cluster = await self.orchestrator.cluster()
        ctx = connect.Context(self.orchestrator, cluster, self.orchestrator.runtime())
        await connect.install(ctx, manifests.INSTALLED)
        return [f"{d['kind']} {d['metadata'].get('namespace', '') + '/' if d['metadata'].get('namespace') else ''}"
                f"{d['metadata']['name']}" for d in self.manifests()]

    async def uninstall(self) -> list[str]:
        """Removes the cluster side for every client: all bridges first (their workloads get their
        containers back), then every object. Returns what it removed."""
        cluster = await self.orchestrator.cluster()
        ctx = connect.Context(self.orchestrator, cluster, self.orchestrator.runtime())
        if await connect.installed_lifecycle(cluster) is None:
            return []
        names = [b["metadata"]["name"] for b in await bridging.list_bridges(cluster)]
        removed = [f"bridge {name}" for name in await bridging.remove_bridges(ctx, names)]
        await connect.remove_cluster_side(cluster, self.settings, self.settings.timeout)
        return [*removed, "cluster side"]

    async def down(self) -> list[str]:
        """Removes what gefyra made for this client, locally and in the cluster (the whole cluster
        side when no other client is left). Harmless when nothing is there. Returns what it removed."""
        cluster, runtime = await self.orchestrator.both()
        ctx = connect.Context(self.orchestrator, cluster, runtime)
        async with client_lock(self.settings.client_id, self.settings.timeout):
            await self.orchestrator.run_plan("down", connect.down_plan(), ctx)
        return ctx.removed

    async def run(self, request: RunRequest) -> LocalContainer:
        """Starts a local container that behaves like a pod of ``request.namespace``."""
        request.validate()
        cluster, runtime = await self.orchestrator.both()
        await self.orchestrator.run_plan("run", localrun.run_plan(),
                                         localrun.Context(self.orchestrator, cluster, runtime, request))
        info = await runtime.get_container(request.name)
        if info is None:  # --rm and a command that ended at once
            return LocalContainer(request.name, request.image, "removed", request.namespace, "")
        return await self._local(runtime, info)

    async def bridge(self, request: BridgeRequest) -> BridgeInfo:
        """Sends the traffic of ``request.target``'s ports to the local container ``request.local``."""
        request.validate()
        cluster, runtime = await self.orchestrator.both()
        ctx = bridging.Context(self.orchestrator, cluster, runtime, request,
                               self.orchestrator.interceptor(request.interceptor))
        await self.orchestrator.run_plan("bridge", bridging.bridge_plan(request), ctx)
        return BridgeInfo.of(ctx.found or await cluster.request("GET", f"{BRIDGES_PATH}/{ctx.name}"))

    async def unbridge(self, names: list[str] | None = None) -> list[str]:
        """Removes bridges (by bridge or local container name; all of this client's if ``names`` is
        None) and waits until the workloads have their original containers back."""
        if names is not None:
            validation.dns_labels(names, "names", "name")
        cluster, runtime = await self.orchestrator.both()
        mine = await bridging.list_bridges(cluster, self.settings.client_id)
        chosen = [b["metadata"]["name"] for b in mine
                  if names is None or b["metadata"]["name"] in names or b["spec"].get("localContainer") in names]
        if names and not chosen:
            raise errors.NotFoundError(f"no bridge named {', '.join(names)}", "`gefyra list` shows the bridges")
        ctx = bridging.UnbridgeContext(self.orchestrator, cluster, runtime)
        await self.orchestrator.run_plan("unbridge", [bridging.RemoveBridge(name) for name in chosen], ctx)
        return ctx.removed

    async def bridges(self) -> list[BridgeInfo]:
        """This client's bridges with their state."""
        cluster = await self.orchestrator.cluster()
        return [BridgeInfo.of(b) for b in await bridging.list_bridges(cluster, self.settings.client_id)]

    async def containers(self) -> list[LocalContainer]:
        """The local containers started with ``run`` for this client."""
        runtime = await self.orchestrator.engine()
        found = await runtime.list_containers({LABEL_CLIENT: self.settings.client_id, LABEL_ROLE: "run"})
        return [await self._local(runtime, c) for c in found]

    async def _local(self, runtime: ContainerRuntime, info: ContainerInfo) -> LocalContainer:
        return LocalContainer(name=info.name, image=info.image, state=info.state,
                              namespace=info.labels.get(LABEL_NAMESPACE, ""),
                              address=await localrun.local_address(self.settings, runtime, info))

    async def cluster_version(self) -> str | None:
        """The version of the cluster side installed in the cluster (None: not installed)."""
        cluster = await self.orchestrator.cluster()
        try:
            found = await cluster.request("GET", f"/apis/apps/v1/namespaces/{GEFYRA_NAMESPACE}/deployments/{STOWAWAY}")
        except errors.NotFoundError:
            return None
        version = (found["metadata"].get("labels") or {}).get("app.kubernetes.io/version")
        return str(version) if version else "older than 0.1.0.dev0"

    async def status(self) -> Status:
        """What is installed and running: cluster side, client, tunnel, containers. No secrets."""
        return await self._status(*await self.orchestrator.both())

    async def _status(self, cluster: Cluster, runtime: ContainerRuntime) -> Status:
        s = self.settings
        installed = await cluster.namespace_exists(GEFYRA_NAMESPACE)
        registered = await connect.get_client(cluster, s.client_id) if installed else None
        registered_status = (registered or {}).get("status") or {}
        cargo_info = None
        cargo = await runtime.get_container(s.cargo_name)
        if cargo is not None:
            handshake = await self.orchestrator.tunnel().latest_handshake(runtime, s.cargo_name) if cargo.running else None
            cargo_info = CargoInfo(cargo.name, cargo.state, handshake)
        return Status(
            client=s.client_id, runtime=runtime.name,
            connected=bool(registered and cargo and cargo.running and registered_status.get("phase") == "Active"),
            cluster=ClusterInfo(api=str(cluster.api.configuration.host), installed=installed,
                                client=ClientInfo(registered_status.get("address"), registered_status.get("phase"))
                                if registered else None),
            cargo=cargo_info, containers=await self.containers(),
            bridges=await self.bridges() if installed else [])

    async def check(self) -> list[CheckResult]:
        """Checks what `up` needs, before `up` (gefyra.client.check); each result says what is
        fine or what to do."""
        results: list[CheckResult] = []
        runtime, cluster = None, None
        try:
            runtime = await self.orchestrator.engine()
            results.append(CheckResult("engine", True, f"{runtime.name} {await runtime.version()}"))
        except errors.GefyraError as exc:
            results.append(preflight.failed("engine", exc))
        try:
            cluster = await self.orchestrator.cluster()
            results.append(CheckResult("cluster", True, f"{cluster.api.configuration.host} (context {cluster.context_name})"))
        except errors.GefyraError as exc:
            results.append(preflight.failed("cluster", exc))
        if cluster is not None:
            results.append(await self._check_rights(cluster))
        if runtime is not None:
            results.append(await self._check_images(runtime))
        if runtime is not None and cluster is not None:
            results += await self._check_network_and_tunnel(cluster, runtime)
        return results

    async def _check_rights(self, cluster: Cluster) -> CheckResult:
        async def may(verb: str, group: str, resource: str, namespace: str = "") -> bool:
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "spec": {"resourceAttributes": {"group": group, "verb": verb, "resource": resource,
                                                      **({"namespace": namespace} if namespace else {})}}}
            answer = await cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
            return bool(answer.get("status", {}).get("allowed"))

        try:
            installed = await connect.installed_lifecycle(cluster) is not None
            if await may("create", "gefyra.dev", "gefyraclients", GEFYRA_NAMESPACE) and installed:
                return CheckResult("rights", True, "may use the installed cluster side")
            if await may("create", "apiextensions.k8s.io", "customresourcedefinitions"):
                return CheckResult("rights", True, "may install gefyra's cluster side" if not installed
                                   else "may use (and install) the cluster side")
            return CheckResult("rights", False, "may neither install gefyra's cluster side nor use it: ask an admin "
                                                "to run `gefyra install --apply` and to bind you the role gefyra-user")
        except errors.GefyraError as exc:
            return preflight.failed("rights", exc)

    async def _check_images(self, runtime: ContainerRuntime) -> CheckResult:
        image = self.orchestrator.tunnel().local_image(self.settings)
        try:
            if await runtime.image_exists(image):
                return CheckResult("images", True, f"{image} is here")
            available = await runtime.image_available(image)
            if available is None:
                return CheckResult("images", True, f"{image} is not here; `up` pulls it ({runtime.name} cannot tell "
                                                   "beforehand whether its registry has it)")
            if available:
                return CheckResult("images", True, f"{image} is in its registry")
            return CheckResult("images", False, f"{image} is neither here nor in its registry: push gefyra's images "
                                                "(`make images REGISTRY=...`) or pass --registry")
        except errors.GefyraError as exc:
            return preflight.failed("images", exc)

    async def _check_network_and_tunnel(self, cluster: Cluster, runtime: ContainerRuntime) -> list[CheckResult]:
        s, results = self.settings, []
        try:
            ranges = {f"the cluster's Service range {s.service_cidr or await cluster.service_cidr()}":
                      s.service_cidr or await cluster.service_cidr()}
            facts = await connect.cluster_facts(cluster) if await connect.installed_lifecycle(cluster) else None
            pods = list(s.pod_cidrs) or (facts.pod_cidrs if facts else await cluster.pod_cidrs())
            ranges |= {f"the cluster's pod range {p}": p for p in pods}
        except errors.GefyraError as exc:
            return [preflight.failed("network", exc)]
        network = await runtime.get_network(s.network_name)
        results.append(preflight.network_check(network.subnet if network else None, ranges, preflight.host_routes()))
        if facts is None:
            results.append(CheckResult("tunnel", True, "not tried: the cluster side is not installed (`up` installs it)"))
            return results
        probe = dataclasses.replace(s, client_id=(s.client_id[:63 - len(preflight.CHECK_SUFFIX)].rstrip("-")
                                                  + preflight.CHECK_SUFFIX), timeout=min(s.timeout, 20.0))
        async with Gefyra(probe) as throwaway:
            try:
                await throwaway.up()
                tunnel = throwaway.orchestrator.tunnel()
                largest = await tunnel.largest_packet(await throwaway.orchestrator.engine(), probe.cargo_name,
                                                      [s.tunnel_mtu, 1280, 1200, 1000, 576])
                results.append(CheckResult("tunnel", True, "UDP to stowaway's NodePort passes: a throwaway client "
                                                           "connected"))
                results.append(preflight.PathMtu(largest, s.tunnel_mtu).result())
            except errors.GefyraError as exc:
                results.append(preflight.failed("tunnel", exc))
            finally:
                with anyio.CancelScope(shield=True):
                    await throwaway.orchestrator.run_plan("down", connect.down_plan(keep_cluster_side=True),
                                                          connect.Context(throwaway.orchestrator,
                                                                          *await throwaway.orchestrator.both()))
        return results


__all__ = ["BridgeRequest", "Gefyra", "RunRequest"]
