"""`run`: a local container on gefyra's network that resolves and routes like a pod, as a plan.

The container's network namespace is made first, by a small holder container on gefyra's network
(the local end's DNS, the namespace's search domains, the published ports), and routed through the
tunnel's local end; only
then does the container start, in that namespace: its first instruction already reaches the
cluster, and one that exits at once is no problem. The holder (``NAME-gefyra-net``) goes with the
container.

Facts: "local-end" (the tunnel's local end runs, with its routes), "namespace", "name-free", "env" (the
environment, from a workload if asked), "image" (pulled if missing), then "holder", "routed",
"created", "started".
"""

from __future__ import annotations

import dataclasses
import time

import structlog

from gefyra import errors
from gefyra.client import volumes
from gefyra.client.environment import limits, workload_container, workload_environment
from gefyra.core.engine.orchestrator import OperationContext
from gefyra.core.engine.steps import Step
from gefyra.core.model.names import LABEL_CLIENT, LABEL_NAMESPACE, LABEL_NETNS, LABEL_ROLE, LABEL_ROUTES
from gefyra.core.model.requests import RunRequest
from gefyra.core.model.settings import Settings
from gefyra.core.spi.runtime import ContainerInfo, ContainerRuntime, ContainerSpec

log = structlog.get_logger(__name__)


async def running_local_end(ctx: OperationContext) -> ContainerInfo:
    """This client's tunnel local end; NotConnectedError unless it runs (`run` and `bridge` need it)."""
    name = ctx.orchestrator.tunnel().local_name(ctx.settings)
    found = await ctx.runtime.get_container(name)
    if found is None or not found.running:
        raise errors.NotConnectedError(f"gefyra is not connected to a cluster (the tunnel's local end {name} is not "
                                       "running)", "run `gefyra up` first")
    return found


@dataclasses.dataclass
class RunContext(OperationContext):
    request: RunRequest
    local_end_ip: str = ""
    routes: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The bind mounts: the request's, and those of --volumes-from.
    mounts: list[str] = dataclasses.field(default_factory=list)
    #: The limits of --resources-from (CPUs, bytes).
    cpus: float | None = None
    memory: int | None = None


class CheckLocalEnd(Step[RunContext]):
    name = "local-end"
    changes = False
    title = "check the tunnel's local end"
    provides = frozenset({"local-end"})

    async def apply(self, ctx: RunContext) -> None:
        local_end = await running_local_end(ctx)
        ctx.routes = local_end.labels.get(LABEL_ROUTES, "").split()
        if not ctx.routes:
            raise errors.NotConnectedError(f"the tunnel's local end {local_end.name} does not say which ranges it "
                                           "routes", "run `gefyra down`, then `gefyra up`")
        ctx.local_end_ip = local_end.addresses.get(ctx.settings.network_name, "")


class CheckNamespace(Step[RunContext]):
    name = "namespace"
    changes = False
    title = "check the namespace"
    provides = frozenset({"namespace"})

    async def apply(self, ctx: RunContext) -> None:
        try:
            exists = await ctx.cluster.namespace_exists(ctx.request.namespace)
        except errors.ForbiddenError:
            return  # a developer may work in a namespace without the right to read its object
        if not exists:
            raise errors.NotFoundError(f"namespace {ctx.request.namespace} does not exist in the cluster",
                                       "pass an existing one with -n")


class CheckName(Step[RunContext]):
    name = "name"
    changes = False
    title = "check the container name"
    provides = frozenset({"name-free"})

    async def apply(self, ctx: RunContext) -> None:
        await remove_orphaned_holders(ctx.settings, ctx.runtime)
        if await ctx.runtime.get_container(ctx.request.name) is not None:
            raise errors.ConflictError(f"a container named {ctx.request.name} already exists",
                                       "choose another name with -N, or remove it first")


class Environment(Step[RunContext]):
    name = "env"
    changes = False
    title = "read the environment of the workload"
    provides = frozenset({"env"})

    async def verify(self, ctx: RunContext) -> bool:
        ctx.env = dict(ctx.request.env)
        return ctx.request.env_from is None

    async def apply(self, ctx: RunContext) -> None:
        assert ctx.request.env_from is not None
        found = await workload_environment(ctx.cluster, ctx.request.namespace, ctx.request.env_from)
        for note in found.notes:
            await ctx.progress(self.name, note)
        ctx.env = found.variables | ctx.request.env


HOLDER_SUFFIX, HOLDER_ROLE = "-gefyra-net", "run-network"


def holder_name(name: str) -> str:
    return f"{name}{HOLDER_SUFFIX}"


async def local_address(settings: Settings, runtime: ContainerRuntime, info: ContainerInfo) -> str:
    """The address of a `run` container on gefyra's network: its network holder's."""
    holder = info.labels.get(LABEL_NETNS)
    if holder:
        found = await runtime.get_container(holder)
        return found.addresses.get(settings.network_name, "") if found is not None and found.running else ""
    return info.addresses.get(settings.network_name, "")


async def remove_run_container(runtime: ContainerRuntime, name: str) -> None:
    """A `run` container, its network holder, and its copies of volumes."""
    await runtime.remove_container(name)
    await runtime.remove_container(holder_name(name))
    await volumes.remove(name)


#: Seconds after which a network holder without its container is an orphan (a `run --rm` whose
#: container ended): a holder is made only after the image is there, moments before its container.
ORPHAN_AGE = 60.0


async def remove_orphaned_holders(settings: Settings, runtime: ContainerRuntime) -> list[str]:
    """Removes this client's network holders whose container is gone; returns the containers' names."""
    gone = []
    for holder in await runtime.list_containers({LABEL_CLIENT: settings.client_id, LABEL_ROLE: HOLDER_ROLE}):
        name = holder.name.removesuffix(HOLDER_SUFFIX)
        if time.time() - holder.created > ORPHAN_AGE and await runtime.get_container(name) is None:
            await runtime.remove_container(holder.name)
            gone.append(name)
    for name in volumes.copied_containers():  # of a container that ended with --rm, or was removed by hand
        if await runtime.get_container(name) is None and time.time() - volumes.directory(name).stat().st_mtime > ORPHAN_AGE:
            await volumes.remove(name)
    return gone


class VolumesFrom(Step[RunContext]):
    name = "volumes"
    title = "copy the workload's ConfigMap, Secret and downward API volumes"
    needs = frozenset({"name-free"})
    provides = frozenset({"volumes"})

    async def verify(self, ctx: RunContext) -> bool:
        ctx.mounts = list(ctx.request.volumes)
        return ctx.request.volumes_from is None

    async def apply(self, ctx: RunContext) -> None:
        request = ctx.request
        assert request.volumes_from is not None
        found = await volumes.copy(ctx.cluster, request.name, request.namespace, request.volumes_from)
        for note in found.notes:
            await ctx.progress(self.name, note)
        ctx.mounts += volumes.bind_mounts(request.name, found)
        settings = ctx.settings
        volumes.start_keeper(request.name, volumes.KeeperConfig(settings.kubeconfig, settings.context,
                                                                request.namespace, request.volumes_from))
        await ctx.progress(self.name, f"{len(found.files)} volumes at {len(found.mounts)} paths, copied to "
                                      f"{volumes.directory(request.name)}")

    async def undo(self, ctx: RunContext) -> None:
        await volumes.remove(ctx.request.name)


class ResourcesFrom(Step[RunContext]):
    name = "resources"
    changes = False
    title = "read the workload's CPU and memory limits"
    provides = frozenset({"resources"})

    async def verify(self, ctx: RunContext) -> bool:
        return ctx.request.resources_from is None

    async def apply(self, ctx: RunContext) -> None:
        assert ctx.request.resources_from is not None
        found = await workload_container(ctx.cluster, ctx.request.namespace, ctx.request.resources_from)
        ctx.cpus, ctx.memory = limits(found.container)
        shown = [f"{ctx.cpus:g} CPUs" if ctx.cpus else "", f"{ctx.memory / 2**20:g} MiB" if ctx.memory else ""]
        await ctx.progress(self.name, f"limits: {' and '.join(filter(None, shown))}" if any(shown)
                           else f"{ctx.request.resources_from} sets no CPU or memory limit: none here either")


class PullImage(Step[RunContext]):
    name = "image"
    title = "pull the image if it is missing"
    provides = frozenset({"image"})

    async def verify(self, ctx: RunContext) -> bool:
        return await ctx.runtime.image_exists(ctx.request.image)

    async def apply(self, ctx: RunContext) -> None:
        await ctx.runtime.pull_image(ctx.request.image, lambda line: ctx.progress(self.name, line))


class NetworkHolder(Step[RunContext]):
    name = "holder"
    title = "make the container's network namespace (DNS and routes like a pod's)"
    # After the image is there: a holder lives only moments without its container (see ORPHAN_AGE).
    needs = frozenset({"local-end", "namespace", "name-free", "image", "env"})
    provides = frozenset({"holder"})

    async def apply(self, ctx: RunContext) -> None:
        request, settings, tunnel = ctx.request, ctx.settings, ctx.orchestrator.tunnel()
        domain, name = settings.cluster_domain, holder_name(request.name)
        await ctx.runtime.remove_container(name)  # left by a `run -d --rm` whose container ended
        await ctx.runtime.create_container(ContainerSpec(
            name=name, image=tunnel.local_image(settings), network=settings.network_name,
            labels=settings.labels(HOLDER_ROLE) | {LABEL_NAMESPACE: request.namespace},
            entrypoint=["sleep", "infinity"], ports=request.ports,
            dns=[ctx.local_end_ip], dns_search=[f"{request.namespace}.svc.{domain}", f"svc.{domain}", domain],
            dns_options=["ndots:5"],
        ))
        await ctx.runtime.start_container(name)
        await tunnel.route_container(ctx.runtime, settings, name, ctx.local_end_ip, ctx.routes)

    async def undo(self, ctx: RunContext) -> None:
        await ctx.runtime.remove_container(holder_name(ctx.request.name))


class CreateContainer(Step[RunContext]):
    name = "create"
    title = "create the container"
    needs = frozenset({"holder", "volumes", "resources"})
    provides = frozenset({"created"})

    async def apply(self, ctx: RunContext) -> None:
        request, settings = ctx.request, ctx.settings
        holder = holder_name(request.name)
        await ctx.runtime.create_container(ContainerSpec(
            name=request.name, image=request.image, network_of=holder,
            labels=request.labels | settings.labels("run") | {LABEL_NAMESPACE: request.namespace, LABEL_NETNS: holder},
            env=ctx.env, command=request.command, entrypoint=request.entrypoint, volumes=ctx.mounts,
            cpus=ctx.cpus, memory=ctx.memory,
            auto_remove=request.auto_remove,
        ))

    async def undo(self, ctx: RunContext) -> None:
        await ctx.runtime.remove_container(ctx.request.name)


class StartContainer(Step[RunContext]):
    name = "start"
    title = "start the container"
    needs = frozenset({"created"})
    provides = frozenset({"started"})

    async def apply(self, ctx: RunContext) -> None:
        await ctx.runtime.start_container(ctx.request.name)


def run_plan() -> list[Step[RunContext]]:
    return [CheckLocalEnd(), CheckNamespace(), CheckName(), Environment(), VolumesFrom(), ResourcesFrom(), PullImage(),
            NetworkHolder(), CreateContainer(), StartContainer()]
