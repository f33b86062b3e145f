"""`status` and `list`: what is there, measured when asked, never remembered. The tunnel's local
end must run, be on gefyra's network and have heard from the server end lately; the cluster side
must have a ready pod; a bridge's local container must run on gefyra's network. Whatever is not
so is a problem, one line each with what to do; with any problem, the client is not connected.

Where the cluster does not answer, what is on this machine is still shown, and the cluster's part
is unknown (None), not empty."""

from __future__ import annotations

import time

from gefyra import errors
from gefyra.client import api_relay, cluster_side, up
from gefyra.client.bridge_objects import list_bridges
from gefyra.client.results import BridgeInfo, CargoInfo, ClientInfo, ClusterInfo, LocalContainer, Status
from gefyra.client.run import local_address, remove_orphaned_holders
from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.kube import kubeconfig
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.crd import GefyraBridge
from gefyra.core.model.names import GEFYRA_NAMESPACE, LABEL_CLIENT, LABEL_ENDPOINT, LABEL_NAMESPACE, LABEL_ROLE
from gefyra.core.spi.runtime import ContainerInfo, ContainerRuntime

_UP_AGAIN = "run `gefyra up` to repair it"


async def containers(orchestrator: Orchestrator, runtime: ContainerRuntime) -> list[LocalContainer]:
    """The local containers started with `run` for this client (network holders whose container
    is gone, after a `run --rm`, are removed on the way)."""
    settings = orchestrator.settings
    await remove_orphaned_holders(settings, runtime)
    found = await runtime.list_containers({LABEL_CLIENT: settings.client_id, LABEL_ROLE: "run"})
    return [await local_container(orchestrator, runtime, c) for c in found]


async def local_container(orchestrator: Orchestrator, runtime: ContainerRuntime, info: ContainerInfo) -> LocalContainer:
    return LocalContainer(name=info.name, image=info.image, state=info.state,
                          namespace=info.labels.get(LABEL_NAMESPACE, ""),
                          address=await local_address(orchestrator.settings, runtime, info))


async def bridges(orchestrator: Orchestrator, cluster: Cluster, runtime: ContainerRuntime) -> list[BridgeInfo]:
    """This client's bridges with the operator's state and, measured here, what is wrong on this
    machine's side of each."""
    found = await list_bridges(cluster, orchestrator.settings.client_id)
    return [BridgeInfo.of(b, problem=await _bridge_problem(orchestrator, runtime, b)) for b in found]


async def _bridge_problem(orchestrator: Orchestrator, runtime: ContainerRuntime, bridge: GefyraBridge) -> str:
    name = bridge.spec.local_container
    local = await runtime.get_container(name) if name else None
    if local is None:
        return f"its local container {name} is gone: run it again with `gefyra run -N {name} ...`"
    if not local.running:
        return f"its local container {name} is {local.state}: start it again (`gefyra run` or the engine's start)"
    if not await local_address(orchestrator.settings, runtime, local):
        return f"its local container {name} is not on gefyra's network: {_UP_AGAIN}, then run it again"
    return ""


async def measure(orchestrator: Orchestrator) -> Status:
    """The status as it is now (see the module)."""
    settings, tunnel = orchestrator.settings, orchestrator.tunnel()
    problems: list[str] = []
    try:  # the cluster first: with both broken, the kubeconfig's error is the one reported
        cluster: Cluster | None = await orchestrator.cluster()
    except errors.ClusterUnreachableError as exc:
        cluster = None
        problems.append(f"the cluster does not answer ({exc.what}): its part is unknown")
    runtime = await orchestrator.engine()
    local_end = await _local_end(orchestrator, runtime, problems)
    running_containers = await containers(orchestrator, runtime)
    if cluster is None:
        server = kubeconfig.read(settings.kubeconfig, settings.context).server
        return Status(client=settings.client_id, runtime=runtime.name, connected=False,
                      cluster=ClusterInfo(api=server, installed=None, reachable=False), cargo=local_end,
                      containers=running_containers, bridges=None, problems=problems)
    installed = await cluster.namespace_exists(GEFYRA_NAMESPACE)
    registered = await up.get_client(cluster, settings.client_id) if installed else None
    if not installed:
        problems.append("gefyra's cluster side is not installed: run `gefyra up`")
    elif registered is None:
        problems.append("this machine is not registered with the cluster: run `gefyra up`")
    else:
        if registered.status.phase != "Active":
            problems.append(f"the operator has not made this client active ({registered.status.phase or 'no phase'}"
                            f"{': ' + registered.status.message if registered.status.message else ''})")
        deployment = await cluster.get(cluster_side.deployment_path(settings, tunnel))
        if not ((deployment or {}).get("status") or {}).get("availableReplicas"):
            name = tunnel.server_side(settings).deployment
            problems.append(f"the tunnel's server end does not run (deploy/{name} in namespace gefyra has no ready "
                            f"pod): {_UP_AGAIN}")
    found_bridges = await bridges(orchestrator, cluster, runtime) if installed else []
    problems += [f"bridge {b.name}: {b.problem}" for b in found_bridges if b.problem]
    client = ClientInfo(registered.status.address or None, registered.status.phase or None) if registered else None
    connected = registered is not None and local_end is not None and not [p for p in problems if not p.startswith("bridge ")]
    return Status(client=settings.client_id, runtime=runtime.name, connected=connected,
                  cluster=ClusterInfo(api=cluster.server, installed=installed, client=client), cargo=local_end,
                  containers=running_containers, bridges=found_bridges, problems=problems)


async def _local_end(orchestrator: Orchestrator, runtime: ContainerRuntime, problems: list[str]) -> CargoInfo | None:
    """The tunnel's local end as it is, and its problems."""
    settings, tunnel = orchestrator.settings, orchestrator.tunnel()
    found = await runtime.get_container(tunnel.local_name(settings))
    if found is None:
        problems.append(f"the tunnel's local end ({tunnel.local_name(settings)}) does not exist: run `gefyra up`")
        return None
    address = found.addresses.get(settings.network_name, "")
    handshake = await tunnel.latest_handshake(runtime, found.name) if found.running else None
    endpoint = (await tunnel.endpoint(runtime, found.name) or "") if found.running else ""
    relay = api_relay.running(settings.client_id)
    via_api = relay is not None and relay.endpoint == endpoint
    info = CargoInfo(found.name, found.state, handshake, address, ("api" if via_api else "udp") if endpoint else None,
                     endpoint)
    if endpoint and not via_api and endpoint != found.labels.get(LABEL_ENDPOINT, endpoint):
        problems.append(f"the tunnel's local end sends to {endpoint}, where the relay through the Kubernetes API no "
                        f"longer runs: {_UP_AGAIN}")
    if not found.running:
        problems.append(f"the tunnel's local end ({found.name}) is {found.state}: {_UP_AGAIN}")
    elif not address:
        problems.append(f"the tunnel's local end ({found.name}) is not on gefyra's network {settings.network_name} "
                        f"(was it removed?): {_UP_AGAIN}")
    elif handshake is None:
        problems.append("the tunnel's ends have never shaken hands: check the endpoint with `gefyra check`")
    elif time.time() - handshake > tunnel.stale_after:
        problems.append(f"the tunnel's ends last shook hands {time.time() - handshake:.0f} s ago: the server end "
                        f"is gone or cannot be reached; {_UP_AGAIN}")
    return info
