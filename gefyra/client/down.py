"""`down`: the plan that removes what gefyra made for this client, locally and in the cluster (the
whole cluster side when no other client is left). Facts: "bridges-removed", then
"containers-removed" and "client-removed", then "network-removed" and "cluster-side-removed"."""

from __future__ import annotations

from gefyra.client import api_relay, bridge_objects, cluster_side, manifests, session_apply, unbridge, volumes
from gefyra.client.up import ConnectContext, client_path, get_client
from gefyra.core.engine.steps import Step
from gefyra.core.model.names import LABEL_CLIENT, LABEL_NETNS


class RemoveBridges(Step[ConnectContext]):
    name = "bridges"
    title = "remove this client's bridges (workloads get their traffic back)"
    provides = frozenset({"bridges-removed"})

    async def verify(self, ctx: ConnectContext) -> bool:
        return not await bridge_objects.list_bridges(ctx.cluster, ctx.settings.client_id)

    async def apply(self, ctx: ConnectContext) -> None:
        removed = await unbridge.remove_bridges(ctx, await bridge_objects.list_bridges(ctx.cluster, ctx.settings.client_id))
        ctx.removed += [f"bridge {name}" for name in removed]


class RemoveContainers(Step[ConnectContext]):
    name = "containers"
    title = "remove the local containers (the tunnel's local end and those of `run`)"
    needs = frozenset({"bridges-removed"})
    provides = frozenset({"containers-removed"})

    async def verify(self, ctx: ConnectContext) -> bool:
        return (not await ctx.runtime.list_containers({LABEL_CLIENT: ctx.settings.client_id})
                and api_relay.running(ctx.settings.client_id) is None)

    async def apply(self, ctx: ConnectContext) -> None:
        found = await ctx.runtime.list_containers({LABEL_CLIENT: ctx.settings.client_id})
        # A container in another's network namespace goes before that one (some engines insist).
        for container in sorted(found, key=lambda c: LABEL_NETNS not in c.labels):
            await ctx.runtime.remove_container(container.name)
            ctx.removed.append(f"container {container.name}")
            if await volumes.remove(container.name):
                ctx.removed.append(f"the copies of {container.name}'s volumes")
        if session_apply.forget_all():
            ctx.removed.append("the records of session files")
        if await api_relay.stop(ctx.settings.client_id):
            ctx.removed.append("the tunnel's relay through the Kubernetes API")


class RemoveNetwork(Step[ConnectContext]):
    name = "network"
    title = "remove the local container network"
    needs = frozenset({"containers-removed"})
    provides = frozenset({"network-removed"})

    async def verify(self, ctx: ConnectContext) -> bool:
        return await ctx.runtime.get_network(ctx.settings.network_name) is None

    async def apply(self, ctx: ConnectContext) -> None:
        await ctx.runtime.remove_network(ctx.settings.network_name)
        ctx.removed.append(f"network {ctx.settings.network_name}")


class Deregister(Step[ConnectContext]):
    name = "client"
    title = "deregister this machine"
    needs = frozenset({"bridges-removed"})
    provides = frozenset({"client-removed"})

    async def verify(self, ctx: ConnectContext) -> bool:
        return await get_client(ctx.cluster, ctx.settings.client_id) is None

    async def apply(self, ctx: ConnectContext) -> None:
        if await ctx.cluster.delete(client_path(ctx.settings.client_id), foreground=False):
            ctx.removed.append(f"client {ctx.settings.client_id}")


class RemoveClusterSide(Step[ConnectContext]):
    name = "cluster-side"
    title = "remove gefyra's cluster side (no other client is left)"
    needs = frozenset({"client-removed"})
    provides = frozenset({"cluster-side-removed"})

    async def verify(self, ctx: ConnectContext) -> bool:
        """Nothing to remove: not installed, installed by an admin (it stays), or still in use."""
        return (await cluster_side.installed_lifecycle(ctx.cluster) != manifests.WITH_CLIENTS
                or bool(await cluster_side.other_clients(ctx.cluster, ctx.settings.client_id)))

    async def apply(self, ctx: ConnectContext) -> None:
        await cluster_side.remove(ctx.cluster, ctx.settings, ctx.tunnel, ctx.settings.timeout)
        ctx.removed.append("cluster side")


def down_plan(*, keep_cluster_side: bool = False) -> list[Step[ConnectContext]]:
    steps: list[Step[ConnectContext]] = [RemoveBridges(), RemoveContainers(), RemoveNetwork(), Deregister()]
    return steps if keep_cluster_side else [*steps, RemoveClusterSide()]


def local_plan() -> list[Step[ConnectContext]]:
    """`down` on this machine only, for when the cluster does not answer: the local containers
    and the network (the cluster's part is left to the operator, or to the next `down`)."""
    containers = RemoveContainers()
    containers.needs = frozenset()  # the bridges cannot be removed: the cluster does not answer
    return [containers, RemoveNetwork()]
