"""The async Python API: the same operations as the CLI, for asyncio programs that embed gefyra.

Every function takes :class:`~gefyra.core.config.Settings` and an optional
:class:`~gefyra.core.orchestrator.Orchestrator` (to share plugins and the event bus), and raises
only :class:`gefyra.errors.GefyraError` subclasses.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gefyra import __version__, errors
from gefyra.core import bridging, connect
from gefyra.core.bridging import BridgeRequest
from gefyra.core.config import GEFYRA_NAMESPACE, LABEL_CLIENT, LABEL_ROLE, Settings
from gefyra.core.kube import Cluster
from gefyra.core.localrun import LABEL_NAMESPACE, RunRequest, start_local
from gefyra.core.orchestrator import Orchestrator
from gefyra.core.runtime import ContainerInfo, ContainerRuntime

__all__ = ["BridgeRequest", "RunRequest", "bridge", "check", "down", "list_bridges", "list_containers", "run",
           "status", "unbridge", "up", "version"]


def _orchestrator(settings: Settings | None, orchestrator: Orchestrator | None) -> Orchestrator:
    return orchestrator or Orchestrator(settings)


async def up(settings: Settings | None = None, orchestrator: Orchestrator | None = None) -> dict[str, Any]:
    """Connects this machine to the cluster; idempotent. Returns the status afterwards."""
    orch = _orchestrator(settings, orchestrator)
    async with orch.connected() as (cluster, runtime):
        ctx = connect.UpContext(orch, cluster, runtime)
        await orch.run_plan([step() for step in connect.UP_PLAN], ctx)
        return await _status(orch.settings, cluster, runtime)


async def down(settings: Settings | None = None, orchestrator: Orchestrator | None = None) -> list[str]:
    """Removes what gefyra made for this client, locally and in the cluster (the whole cluster
    side when no other client is left). Harmless when nothing is there. Returns what it removed."""
    orch = _orchestrator(settings, orchestrator)
    s = orch.settings
    removed: list[str] = []
    async with orch.connected() as (cluster, runtime):
        # Bridges first: the workloads get their original containers back before anything else goes.
        mine = [b["metadata"]["name"] for b in await bridging.list_bridges(cluster, s.client_id)]
        removed += [f"bridge {name}" for name in await bridging.unbridge(s, cluster, runtime, mine)]
        for container in await runtime.list_containers({LABEL_CLIENT: s.client_id}):
            await runtime.remove_container(container.name)
            removed.append(f"container {container.name}")
        if await runtime.get_network(s.network_name) is not None:
            await runtime.remove_network(s.network_name)
            removed.append(f"network {s.network_name}")
        if await cluster.delete(connect.client_doc(s)):
            removed.append(f"client {s.client_id}")
        if await cluster.namespace_exists(GEFYRA_NAMESPACE) and not await connect.other_clients(cluster, s.client_id):
            await connect.remove_cluster_side(cluster, s, s.timeout)
            removed.append("cluster side")
    return removed


async def run(request: RunRequest, settings: Settings | None = None,
              orchestrator: Orchestrator | None = None) -> ContainerInfo:
    """Starts a local container that behaves like a pod of ``request.namespace``."""
    orch = _orchestrator(settings, orchestrator)
    async with orch.connected() as (cluster, runtime):
        return await start_local(orch.settings, cluster, runtime, request)


async def bridge(request: BridgeRequest, settings: Settings | None = None,
                 orchestrator: Orchestrator | None = None) -> dict[str, Any]:
    """Sends the traffic of ``request.target``'s ports to the local container ``request.local``."""
    orch = _orchestrator(settings, orchestrator)
    async with orch.connected() as (cluster, runtime):
        return await bridging.bridge(orch.settings, cluster, runtime, request)


async def unbridge(names: list[str] | None = None, settings: Settings | None = None,
                   orchestrator: Orchestrator | None = None) -> list[str]:
    """Removes bridges (by bridge or local container name; all of this client's if ``names`` is
    None) and waits until the workloads have their original containers back."""
    orch = _orchestrator(settings, orchestrator)
    async with orch.connected() as (cluster, runtime):
        mine = await bridging.list_bridges(cluster, orch.settings.client_id)
        chosen = [b["metadata"]["name"] for b in mine
                  if names is None or b["metadata"]["name"] in names or b["spec"]["localContainer"] in names]
        if names and not chosen:
            raise errors.NotFoundError(f"no bridge named {', '.join(names)}", "`gefyra list` shows the bridges")
        return await bridging.unbridge(orch.settings, cluster, runtime, chosen)


async def list_bridges(settings: Settings | None = None, orchestrator: Orchestrator | None = None) -> list[dict[str, Any]]:
    """This client's bridges with their state."""
    orch = _orchestrator(settings, orchestrator)
    async with Cluster(orch.settings) as cluster:
        return await _list_bridges(orch.settings, cluster)


async def _list_bridges(settings: Settings, cluster: Cluster) -> list[dict[str, Any]]:
    found = await bridging.list_bridges(cluster, settings.client_id)
    return [{"name": b["metadata"]["name"], "local": b["spec"]["localContainer"],
             "target": "{kind}/{name}/{container}".format(**b["spec"]["target"]),
             "namespace": b["spec"]["target"]["namespace"],
             "ports": {str(p["remote"]): p["local"] for p in b["spec"]["ports"]},
             "phase": (b.get("status") or {}).get("phase", "Pending"),
             "pods": (b.get("status") or {}).get("pods", [])} for b in found]


async def list_containers(settings: Settings | None = None,
                          orchestrator: Orchestrator | None = None) -> list[dict[str, str]]:
    """The local containers started with ``run`` for this client."""
    orch = _orchestrator(settings, orchestrator)
    async with orch.runtime() as runtime:
        return await _list_containers(orch.settings, runtime)


async def _list_containers(settings: Settings, runtime: ContainerRuntime) -> list[dict[str, str]]:
    found = await runtime.list_containers({LABEL_CLIENT: settings.client_id, LABEL_ROLE: "run"})
    return [{"name": c.name, "image": c.image, "state": c.state,
             "namespace": c.labels.get(LABEL_NAMESPACE, ""),
             "address": c.addresses.get(settings.network_name, "")} for c in found]


async def status(settings: Settings | None = None, orchestrator: Orchestrator | None = None) -> dict[str, Any]:
    """What is installed and running: cluster side, client, tunnel, containers. No secrets."""
    orch = _orchestrator(settings, orchestrator)
    async with orch.connected() as (cluster, runtime):
        return await _status(orch.settings, cluster, runtime)


async def _status(s: Settings, cluster: Cluster, runtime: ContainerRuntime) -> dict[str, Any]:
    result: dict[str, Any] = {"client": s.client_id, "runtime": runtime.name, "connected": False,
                              "cluster": {"api": cluster.api.configuration.host,
                                          "installed": await cluster.namespace_exists(GEFYRA_NAMESPACE)}}
    registered = await connect.get_client(cluster, s.client_id) if result["cluster"]["installed"] else None
    result["cluster"]["client"] = (
        {"address": registered.get("status", {}).get("address"), "phase": registered.get("status", {}).get("phase")}
        if registered else None)
    result["cargo"] = None
    cargo = await runtime.get_container(s.cargo_name)
    if cargo is not None:
        handshake = None
        if cargo.running:
            code, out = await runtime.exec(s.cargo_name, ["wg", "show", "wg0", "latest-handshakes"])
            fields = out.split()
            handshake = int(fields[1]) if code == 0 and len(fields) == 2 and fields[1].isdigit() else None
        result["cargo"] = {"name": cargo.name, "state": cargo.state, "latest_handshake": handshake}
    result["connected"] = bool(registered and cargo and cargo.running
                               and (registered.get("status") or {}).get("phase") == "Active")
    result["containers"] = await _list_containers(s, runtime)
    result["bridges"] = await _list_bridges(s, cluster) if result["cluster"]["installed"] else []
    return result


@dataclasses.dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


async def check(settings: Settings | None = None, orchestrator: Orchestrator | None = None) -> list[CheckResult]:
    """Checks the prerequisites; each result says what is fine or what to do."""
    orch = _orchestrator(settings, orchestrator)
    s = orch.settings
    results: list[CheckResult] = []
    try:
        async with orch.runtime() as runtime:
            results.append(CheckResult("engine", True, f"{runtime.name} {await runtime.version()}"))
            missing = [img for img in (s.image("cargo"),) if not await runtime.image_exists(img)]
            results.append(CheckResult("wireguard", not missing,
                                       "user-space WireGuard in the cargo image" if not missing
                                       else f"image {missing[0]} is missing locally: build or pull it"))
    except errors.GefyraError as exc:
        results.append(CheckResult("engine", False, str(exc)))
    try:
        async with Cluster(s) as cluster:
            results.append(CheckResult("cluster", True, cluster.api.configuration.host))
            review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                      "spec": {"resourceAttributes": {"group": "apiextensions.k8s.io", "verb": "create",
                                                      "resource": "customresourcedefinitions"}}}
            answer = await cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
            allowed = bool(answer.get("status", {}).get("allowed"))
            results.append(CheckResult("permissions", allowed, "may install gefyra's cluster side" if allowed
                                       else "this identity may not create CRDs: ask for cluster-admin rights"))
            host = s.host or cluster.api_host
            results.append(CheckResult("endpoint", bool(host), f"{host}:{s.port}/udp"))
    except errors.GefyraError as exc:
        results.append(CheckResult("cluster", False, str(exc)))
    return results


def version() -> str:
    return __version__

