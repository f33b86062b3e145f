"""`unbridge` (and the bridges' part of `down`): delete the bridges, stop steering their ports, and
wait until the operator has given the workloads back. Without a running operator the client gives
them back itself, as far as its rights go: `unbridge` and `down` always finish."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import anyio
import structlog

from gefyra import errors
from gefyra.client import cluster_side
from gefyra.client.bridge_objects import bridge_path, list_bridges, operator_logs
from gefyra.core.engine.orchestrator import OperationContext
from gefyra.core.engine.steps import Step
from gefyra.core.engine.waiting import wait_until
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.crd import GefyraBridge, parse_bridge
from gefyra.core.model.routing import Target
from gefyra.core.spi.interceptor import Interceptor

log = structlog.get_logger(__name__)


@dataclasses.dataclass
class UnbridgeContext(OperationContext):
    removed: list[str] = dataclasses.field(default_factory=list)


class RemoveBridge(Step[UnbridgeContext]):
    """One bridge: delete it, stop steering its ports, wait until the operator gave its workload
    back (it removes the object's finalizer only then). Given as just listed, it is deleted
    without being read again (see :func:`remove_bridges`)."""

    def __init__(self, bridge: str | GefyraBridge) -> None:
        self.given = bridge
        self.bridge = bridge if isinstance(bridge, str) else bridge.name
        self.name = f"unbridge {self.bridge}"
        self.title = f"remove bridge {self.bridge} (its workload gets its traffic back)"

    async def apply(self, ctx: UnbridgeContext) -> None:
        ctx.removed += await remove_bridges(ctx, [self.given])


async def remove_bridges(ctx: OperationContext, bridges: Sequence[str | GefyraBridge], *,
                         steering: bool = True) -> list[str]:
    """Deletes the bridges and returns once the operator let them go (restored), within the
    settings' timeout. Each is given by name (read first; one that does not exist is left out) or
    as the caller has just listed it: its DELETE then goes out at once (reading it again cost 0.03 s
    here, the API server's read of one object going to etcd, for what the list showed a moment
    before). A pod whose container was swapped often waits out kubelet's restart back-off (10 s,
    20 s, 40 s, ...) before its own container runs again. Without a running operator the client
    gives the workloads back itself, as far as its rights go, and lets the objects go. This
    client's bridges stop being steered in its local end (unless ``steering`` is False: no engine
    to reach) once the workloads have their traffic back: until then a connection may still come
    through the bridge, and must reach the local container, not a closed port. Other clients'
    bridges are steered on their machines."""
    cluster, timeout, tunnel = ctx.cluster, ctx.settings.timeout, ctx.orchestrator.tunnel()
    removed: list[GefyraBridge] = []
    for bridge in bridges:
        found = bridge if isinstance(bridge, GefyraBridge) else await _read(cluster, bridge)
        if found is None:
            continue
        await cluster.delete(bridge_path(found.name), foreground=False)
        removed.append(found)
    gone = [b.name for b in removed]

    async def all_gone() -> bool:
        return not [b for b in await list_bridges(cluster) if b.name in gone]

    try:
        if removed and await cluster_side.operator_running(cluster, ctx.settings, tunnel):
            try:
                await wait_until(all_gone, timeout, errors.ReadinessTimeoutError(
                    f"the bridged workloads were not given back within {timeout:.0f}s", operator_logs(ctx)),
                    interval=0.05)
                return gone
            except errors.ReadinessTimeoutError:
                if await cluster_side.operator_running(cluster, ctx.settings, tunnel):
                    raise
        if removed:
            await _give_back_without_operator(ctx, removed)
        return gone
    finally:
        ports = [p for b in removed if b.spec.client == ctx.settings.client_id for p in b.status.proxy_ports.values()]
        if steering and ports:
            with anyio.CancelScope(shield=True):
                await tunnel.unsteer(ctx.runtime, tunnel.local_name(ctx.settings), ports)


async def _read(cluster: Cluster, name: str) -> GefyraBridge | None:
    found = await cluster.get(bridge_path(name))
    return None if found is None else parse_bridge(found)


async def _give_back_without_operator(ctx: OperationContext, removed: list[GefyraBridge]) -> None:
    """The operator's part of removing these bridges, from here: each target that no other bridge
    names is given back by its interceptor (what this user may not do is left for the operator
    to do when it runs again), and the bridges lose their finalizers."""
    log.warning("the operator does not run; giving the workloads back from here")
    others = {b.spec.target.workload for b in await list_bridges(ctx.cluster)
              if not b.deleting and b.spec.target is not None}
    targets: dict[Target, str | None] = {}
    for bridge in removed:
        if bridge.spec.target is not None and bridge.spec.target.workload not in others:
            targets[bridge.spec.target.workload] = bridge.spec.interceptor
    for target, name in targets.items():
        interceptor = ctx.orchestrator.interceptor(name)

        async def given_back(interceptor: Interceptor = interceptor, target: Target = target) -> bool:
            return (await interceptor.intercept(ctx.cluster, target, [])).settled

        await wait_until(given_back, ctx.settings.timeout, errors.ReadinessTimeoutError(
            f"{target} was not given back within {ctx.settings.timeout:.0f}s", operator_logs(ctx)), interval=0.5)
    for bridge in removed:
        try:
            await ctx.cluster.patch(bridge_path(bridge.name), {"metadata": {"finalizers": None}})
        except errors.NotFoundError:
            pass
