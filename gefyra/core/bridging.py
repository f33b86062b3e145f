"""`bridge` / `unbridge`, the client's side: validate the target, create the GefyraBridge object
(the operator does the cluster's part), steer the stowaway ports that arrive at cargo to the
local container, and wait until traffic really arrives there."""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Any

import anyio
import structlog
from kubernetes_asyncio import client

from gefyra import errors
from gefyra.core.config import CRD_GROUP, CRD_VERSION, GEFYRA_NAMESPACE, LABEL_CLIENT, LABEL_MANAGED_BY, MANAGED_BY, Settings
from gefyra.core.kube import Cluster
from gefyra.core.localrun import running_cargo
from gefyra.core.runtime import ContainerRuntime
from gefyra.core.waiting import wait_until
from gefyra.core.workloads import live_pods, parse_workload, pod_spec_and_selector

log = structlog.get_logger(__name__)

BRIDGES_PATH = f"/apis/{CRD_GROUP}/{CRD_VERSION}/namespaces/{GEFYRA_NAMESPACE}/gefyrabridges"
CARGO_CHAIN = "GEFYRA-BRIDGES"


@dataclasses.dataclass
class BridgeRequest:
    local: str
    target: str
    ports: dict[int, int]  # remote (container port in the cluster) -> local container port
    namespace: str = "default"
    wait: bool = True
    timeout: float = 60.0


def bridge_name(settings: Settings, local: str, kind: str, name: str) -> str:
    raw = f"{settings.client_id}-{local}-{kind}-{name}".lower()
    return re.sub(r"[^a-z0-9-]", "-", raw)[:63].strip("-")


async def list_bridges(cluster: Cluster, client_id: str | None = None) -> list[dict[str, Any]]:
    try:
        listing = await cluster.request("GET", BRIDGES_PATH)
    except errors.NotFoundError:
        return []
    return [b for b in listing["items"] if client_id is None or b["spec"]["client"] == client_id]


async def _validate(settings: Settings, cluster: Cluster, runtime: ContainerRuntime, request: BridgeRequest
                    ) -> tuple[str, str, str, str]:
    """Checks everything before anything changes; returns (kind, name, container, local address)."""
    await running_cargo(settings, runtime)
    local = await runtime.get_container(request.local)
    if local is None or not local.running:
        raise errors.NotFoundError(f"local container {request.local} is not running",
                                   "start it with `gefyra run` first")
    address = local.addresses.get(settings.network_name)
    if not address:
        raise errors.UsageError(f"local container {request.local} is not on gefyra's network {settings.network_name}",
                                "start it with `gefyra run`")
    kind, name, container = parse_workload(request.target)
    async with cluster.calling(f"{kind} {name} in namespace {request.namespace}"):
        spec, _ = await pod_spec_and_selector(cluster.api, request.namespace, kind, name)
    names = [c.name for c in spec.containers]
    if container is None:
        if len(names) != 1:
            raise errors.UsageError(f"{kind}/{name} has several containers ({', '.join(names)})",
                                    f"name one: --target {kind}/{name}/CONTAINER")
        container = names[0]
    if container not in names:
        raise errors.NotFoundError(f"{kind}/{name} has no container {container!r}", f"its containers: {', '.join(names)}")
    target = next(c for c in spec.containers if c.name == container)
    if target.command:
        raise errors.UsageError(f"container {container} of {kind}/{name} sets its own command",
                                "carrier can only replace containers that use their image's entrypoint")
    for probe in (target.liveness_probe, target.readiness_probe, target.startup_probe):
        if probe is not None and probe._exec is not None:  # "exec" is a keyword: the client names it _exec
            raise errors.UsageError(f"container {container} of {kind}/{name} has an exec probe, which carrier cannot answer",
                                    "bridge a container with httpGet or tcpSocket probes only")
    declared = {p.container_port for p in target.ports or []}
    unknown = sorted(set(request.ports) - declared)
    if unknown:
        raise errors.NotFoundError(f"container {container} of {kind}/{name} declares no port {unknown[0]}",
                                   f"its ports: {', '.join(map(str, sorted(declared))) or 'none'}")
    for existing in await list_bridges(cluster):
        t = existing["spec"]["target"]
        if (t["namespace"], t["kind"], t["name"], t["container"]) == (request.namespace, kind, name, container):
            raise errors.ConflictError(f"{kind}/{name}/{container} is already bridged (by {existing['spec']['client']})",
                                       "unbridge it first")
    return kind, name, container, address


async def bridge(settings: Settings, cluster: Cluster, runtime: ContainerRuntime, request: BridgeRequest) -> dict[str, Any]:
    """Creates the bridge; with ``request.wait`` returns once every target pod forwards to the
    local container and a connection made through a bridged pod has reached it."""
    kind, name, container, address = await _validate(settings, cluster, runtime, request)
    bname = bridge_name(settings, request.local, kind, name)
    doc = {"apiVersion": f"{CRD_GROUP}/{CRD_VERSION}", "kind": "GefyraBridge",
           "metadata": {"name": bname, "namespace": GEFYRA_NAMESPACE,
                        "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLIENT: settings.client_id}},
           "spec": {"client": settings.client_id, "localContainer": request.local,
                    "target": {"namespace": request.namespace, "kind": kind, "name": name, "container": container},
                    "ports": [{"remote": r, "local": lo} for r, lo in sorted(request.ports.items())]}}
    await cluster.request("POST", BRIDGES_PATH, doc)
    try:
        found = await _wait_for(cluster, bname, lambda b: bool((b.get("status") or {}).get("proxyPorts")), 15,
                                "the operator did not take up the bridge")
        proxy = {int(k): v for k, v in found["status"]["proxyPorts"].items()}
        await _steer(settings, runtime, {proxy[r]: (address, lo) for r, lo in request.ports.items()})
        if request.wait:
            found = await _wait_for(cluster, bname, lambda b: (b.get("status") or {}).get("phase") == "Active",
                                    request.timeout, "the target's pods were not bridged")
            await _prove_arrival(settings, runtime, cluster, found, proxy)
            pods = found["status"]["pods"]
            await wait_until(lambda: _serving(cluster, request.namespace, pods), request.timeout,
                             errors.ReadinessTimeoutError("the bridged pods did not get back behind their Services",
                                                          "check the target's readiness probes"))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await unbridge(settings, cluster, runtime, [bname], wait=True)
        raise
    return {"name": bname, "target": f"{kind}/{name}/{container}", "namespace": request.namespace,
            "ports": {str(r): lo for r, lo in request.ports.items()}}


async def _wait_for(cluster: Cluster, name: str, condition: Any, timeout: float, what: str) -> dict[str, Any]:
    """The bridge object, once ``condition`` holds for it."""
    async def satisfied() -> dict[str, Any] | None:
        found: dict[str, Any] = await cluster.request("GET", f"{BRIDGES_PATH}/{name}")
        return found if condition(found) else None

    return await wait_until(satisfied, timeout, errors.ReadinessTimeoutError(
        f"{what} within {timeout:.0f}s", "check `kubectl -n gefyra logs deploy/gefyra-stowaway -c operator`"))


async def _steer(settings: Settings, runtime: ContainerRuntime, forwards: dict[int, tuple[str, int]]) -> None:
    """In cargo: tunnel port -> local container address:port (DNAT), answered back through cargo."""
    lines = [f"iptables -t nat -N {CARGO_CHAIN} 2>/dev/null || true",
             f"iptables -t nat -C PREROUTING -i wg0 -j {CARGO_CHAIN} 2>/dev/null || iptables -t nat -A PREROUTING -i wg0 -j {CARGO_CHAIN}",
             "iptables -t nat -C POSTROUTING -o eth0 -m conntrack --ctstate DNAT -j MASQUERADE 2>/dev/null || "
             "iptables -t nat -A POSTROUTING -o eth0 -m conntrack --ctstate DNAT -j MASQUERADE"]
    for port, (address, local_port) in forwards.items():
        lines.append(f"iptables -t nat -A {CARGO_CHAIN} -p tcp --dport {port} -j DNAT --to-destination "
                     f"{shlex.quote(address)}:{local_port} -m comment --comment gefyra-bridge-{port}")
    code, output = await runtime.exec(settings.cargo_name, ["sh", "-c", " && ".join(lines)])
    if code != 0:
        raise errors.GefyraError(f"cannot steer bridged ports in cargo: {output.strip()}")


async def _unsteer(settings: Settings, runtime: ContainerRuntime, ports: list[int]) -> None:
    script = "; ".join(
        f"iptables -t nat -S {CARGO_CHAIN} | grep -- '--comment gefyra-bridge-{p}' | sed 's/^-A/-D/' | "
        "while read -r rule; do eval iptables -t nat $rule; done" for p in ports)
    if script and await runtime.get_container(settings.cargo_name):
        await runtime.exec(settings.cargo_name, ["sh", "-c", script])


async def _prove_arrival(settings: Settings, runtime: ContainerRuntime, cluster: Cluster,
                         bridge_obj: dict[str, Any], proxy: dict[int, int]) -> None:
    """From cargo, connects to each bridged port of each bridged pod (through the tunnel, the
    carrier and stowaway) and waits until cargo's forwarding rule has counted the connection."""
    namespace = bridge_obj["spec"]["target"]["namespace"]
    core = client.CoreV1Api(cluster.api)
    ips = []
    for pod_name in bridge_obj["status"]["pods"]:
        pod = await core.read_namespaced_pod(pod_name, namespace)
        ips.append(pod.status.pod_ip)
    connects = " ; ".join(f"timeout 2 bash -c '</dev/tcp/{ip}/{remote}' 2>/dev/null" for ip in ips for remote in proxy)
    count = (f"iptables -t nat -L {CARGO_CHAIN} -v -x -n | awk '/gefyra-bridge-/ && $1 > 0' | wc -l")
    with anyio.move_on_after(30) as scope:
        while True:
            await runtime.exec(settings.cargo_name, ["sh", "-c", connects])
            _, counted = await runtime.exec(settings.cargo_name, ["sh", "-c", count])
            if counted.strip().isdigit() and int(counted.strip()) >= len(proxy):
                return
            await anyio.sleep(0.3)
    if scope.cancelled_caught:
        raise errors.ReadinessTimeoutError("no connection through the bridge reached the local container within 30s",
                                           "check that the local container listens on the given local ports")


async def unbridge(settings: Settings, cluster: Cluster, runtime: ContainerRuntime, names: list[str],
                   *, wait: bool = True, timeout: float = 60.0) -> list[str]:
    """Deletes the bridges ``names``; with ``wait`` returns once the operator restored their pods."""
    removed: list[tuple[str, dict[str, Any]]] = []
    for name in names:
        try:
            found = await cluster.request("GET", f"{BRIDGES_PATH}/{name}")
        except errors.NotFoundError:
            continue
        await cluster.request("DELETE", f"{BRIDGES_PATH}/{name}")
        await _unsteer(settings, runtime, list(((found.get("status") or {}).get("proxyPorts") or {}).values()))
        removed.append((name, found["spec"]["target"]))
    if wait:
        async def all_restored() -> bool:
            return all([await _restored(cluster, name, target, settings.image("carrier")) for name, target in removed])

        await wait_until(all_restored, timeout, errors.ReadinessTimeoutError(
            f"the bridged pods were not restored within {timeout:.0f}s",
            "check `kubectl -n gefyra logs deploy/gefyra-stowaway -c operator`"))
    return [name for name, _ in removed]


async def _restored(cluster: Cluster, name: str, target: dict[str, str], carrier_image: str) -> bool:
    """True once the bridge object is gone and every pod of the target runs its original
    container again, Ready."""
    try:
        await cluster.request("GET", f"{BRIDGES_PATH}/{name}")
        return False
    except errors.NotFoundError:
        pass
    try:
        pods = await live_pods(cluster.api, target["namespace"], target["kind"], target["name"])
    except client.ApiException:
        return True  # the workload itself is gone: nothing to restore
    for pod in pods:
        status = next((s for s in pod.status.container_statuses or [] if s.name == target["container"]), None)
        if status is None or not status.ready or (status.image or "").endswith(carrier_image):
            return False
    return await _serving(cluster, target["namespace"], [p.metadata.name for p in pods])


async def _serving(cluster: Cluster, namespace: str, pod_names: list[str]) -> bool:
    """True once every Service endpoint of these pods is ready again (a restarted container
    drops out of its Services until then)."""
    slices = await client.DiscoveryV1Api(cluster.api).list_namespaced_endpoint_slice(namespace)
    for endpoint_slice in slices.items:
        for endpoint in endpoint_slice.endpoints or []:
            ref = endpoint.target_ref
            if ref is not None and ref.name in pod_names and not (endpoint.conditions and endpoint.conditions.ready):
                return False
    return True
