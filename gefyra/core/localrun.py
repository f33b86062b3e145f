"""`run`: a local container on gefyra's network that resolves and routes like a pod."""

from __future__ import annotations

import dataclasses
import shlex

import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.stream import WsApiClient

from gefyra import errors
from gefyra.core.config import Settings
from gefyra.core.connect import LABEL_ROUTES
from gefyra.core.kube import Cluster
from gefyra.core.runtime import ContainerInfo, ContainerRuntime, ContainerSpec
from gefyra.core.workloads import live_pods, parse_workload

log = structlog.get_logger(__name__)

LABEL_NAMESPACE = "gefyra.dev/namespace"


@dataclasses.dataclass
class RunRequest:
    image: str
    name: str
    namespace: str = "default"
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    env_from: str | None = None
    volumes: list[str] = dataclasses.field(default_factory=list)
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    command: list[str] | None = None
    auto_remove: bool = False


async def _workload_pod(cluster: Cluster, namespace: str, kind: str, name: str) -> client.V1Pod:
    async with cluster.calling(f"{kind} {name} in namespace {namespace}"):
        pods = await live_pods(cluster.api, namespace, kind, name)
    running = [p for p in pods if p.status.phase == "Running"]
    if not running:
        raise errors.NotFoundError(f"{kind} {name} in namespace {namespace} has no running pod",
                                   "wait until it runs, or choose another workload")
    return running[0]


async def workload_env(cluster: Cluster, namespace: str, ref: str) -> dict[str, str]:
    """The environment of a running container of the workload ``ref`` (as ``env`` prints it)."""
    kind, name, container = parse_workload(ref)
    pod = await _workload_pod(cluster, namespace, kind, name)
    names = [c.name for c in pod.spec.containers]
    container = container or names[0]
    if container not in names:
        raise errors.NotFoundError(f"{kind} {name} has no container {container!r}", f"its containers: {', '.join(names)}")
    async with WsApiClient(configuration=cluster.api.configuration) as ws:
        async with cluster.calling(f"reading the environment of {ref}"):
            output = await client.CoreV1Api(ws).connect_get_namespaced_pod_exec(
                pod.metadata.name, namespace, container=container, command=["env"],
                stderr=True, stdin=False, stdout=True, tty=False)
    env = {}
    for line in str(output).splitlines():
        key, sep, value = line.partition("=")
        if sep and key not in ("HOSTNAME", "HOME", "PATH"):
            env[key] = value
    return env


async def running_cargo(settings: Settings, runtime: ContainerRuntime) -> ContainerInfo:
    """This client's cargo; NotConnectedError unless it runs (`run` and `bridge` need it)."""
    cargo = await runtime.get_container(settings.cargo_name)
    if cargo is None or not cargo.running:
        raise errors.NotConnectedError("gefyra is not connected to a cluster (cargo is not running)",
                                       "run `gefyra up` first")
    return cargo


async def start_local(settings: Settings, cluster: Cluster, runtime: ContainerRuntime, request: RunRequest) -> ContainerInfo:
    """Creates and starts the container, then routes the cluster's ranges through cargo.
    On any failure the container is removed again."""
    cargo = await running_cargo(settings, runtime)
    if not await cluster.namespace_exists(request.namespace):
        raise errors.NotFoundError(f"namespace {request.namespace} does not exist in the cluster",
                                   "pass an existing one with -n")
    if await runtime.get_container(request.name) is not None:
        raise errors.ConflictError(f"a container named {request.name} already exists",
                                   "choose another name with -N, or remove it first")
    routes = cargo.labels.get(LABEL_ROUTES, "").split()
    if not routes:
        raise errors.NotConnectedError(f"cargo ({cargo.name}) does not say which ranges it routes",
                                       "run `gefyra down`, then `gefyra up`")
    env = await workload_env(cluster, request.namespace, request.env_from) if request.env_from else {}
    env.update(request.env)
    cargo_ip = cargo.addresses.get(settings.network_name, "")
    domain = settings.cluster_domain
    spec = ContainerSpec(
        name=request.name, image=request.image, network=settings.network_name,
        labels=settings.labels("run") | {LABEL_NAMESPACE: request.namespace},
        env=env, command=request.command, volumes=request.volumes, ports=request.ports,
        dns=[cargo_ip], dns_search=[f"{request.namespace}.svc.{domain}", f"svc.{domain}", domain],
        dns_options=["ndots:5"], auto_remove=request.auto_remove,
    )
    await runtime.create_container(spec)
    try:
        await runtime.start_container(request.name)
        await _route_through_cargo(settings, runtime, request.name, cargo_ip, routes)
    except BaseException:
        await runtime.remove_container(request.name)
        raise
    info = await runtime.get_container(request.name)
    assert info is not None
    return info


async def _route_through_cargo(settings: Settings, runtime: ContainerRuntime, name: str, cargo_ip: str,
                               routes: list[str]) -> None:
    """A short-lived helper in the container's network namespace adds the routes (the container
    itself gets no extra capability)."""
    script = " && ".join(f"ip route replace {shlex.quote(r)} via {shlex.quote(cargo_ip)}" for r in routes)
    code, output = await runtime.run_to_completion(ContainerSpec(
        name=f"{name}-gefyra-route", image=settings.image("cargo"), network_mode=f"container:{name}",
        cap_add=["NET_ADMIN"], entrypoint=["sh", "-c"], command=[script], labels=settings.labels("helper"),
    ))
    if code != 0:
        raise errors.GefyraError(f"cannot route the cluster's ranges in {name}: {output.strip()}")
