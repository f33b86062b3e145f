"""Bridges follow the GefyraBridge objects. Each round, for every bridge:

- its ports get stowaway ports (status.proxyPorts), and stowaway DNATs each of them into the
  tunnel, to the client's address (iptables chain GEFYRA-BRIDGES in the pod's namespace);
- every live pod of the target gets the target container's image swapped, in place, for carrier
  (the original image is kept in an annotation), and carrier is told where to forward;
- a bridge that is being deleted, or whose client is gone, gets its pods' images restored first,
  and only then loses its finalizer.

Level-based and idempotent: a replaced or added pod is bridged in the next round.
"""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.stream import WsApiClient

from gefyra.core.config import CRD_GROUP, CRD_VERSION
from gefyra.core.workloads import live_pods, pod_spec_and_selector

log = structlog.get_logger("gefyra.operator")

PLURAL = "gefyrabridges"
FINALIZER = "gefyra.dev/restore-pods"
ANN_BRIDGE = "gefyra.dev/bridge"
ANN_ORIGINAL = "gefyra.dev/original-image"
ANN_CONFIG = "gefyra.dev/carrier-config"
CHAIN = "GEFYRA-BRIDGES"
PROXY_PORTS = range(20000, 30000)
_STRATEGIC = "application/strategic-merge-patch+json"
_MERGE = "application/merge-patch+json"


def carrier_config(ports: dict[int, int], stowaway_ip: str, probes: dict[int, str]) -> tuple[str, str]:
    """(stream config, http config) for carrier: each bridged port forwards to its stowaway port;
    probe ports that are not bridged are answered by carrier itself (HTTP 200, or a bare accept)."""
    stream = "".join(f"server {{ listen {remote}; proxy_pass {stowaway_ip}:{proxy}; }}\n"
                     for remote, proxy in sorted(ports.items()))
    http = ""
    for port, kind in sorted(probes.items()):
        if port in ports:
            continue
        if kind == "http":
            http += f"server {{ listen {port}; location / {{ return 200 'ok'; }} }}\n"
        else:
            stream += f"server {{ listen {port}; return ''; }}\n"
    return stream, http


def probe_ports(container: client.V1Container) -> dict[int, str]:
    """Port -> "http" or "tcp" for the container's httpGet and tcpSocket probes (numeric ports)."""
    found: dict[int, str] = {}
    named = {p.name: p.container_port for p in container.ports or [] if p.name}
    for probe in (container.liveness_probe, container.readiness_probe, container.startup_probe):
        if probe is None:
            continue
        action, kind = (probe.http_get, "http") if probe.http_get else (probe.tcp_socket, "tcp")
        if action is not None:
            port = action.port if isinstance(action.port, int) else named.get(action.port)
            if isinstance(port, int):
                found[port] = kind
    return found


def _allocate(used: set[int]) -> int:
    for port in PROXY_PORTS:
        if port not in used:
            used.add(port)
            return port
    raise RuntimeError("no free stowaway port for a bridge")


class Bridges:
    def __init__(self, api: client.ApiClient, namespace: str, carrier_image: str, stowaway_ip: str) -> None:
        self.api = api
        self.namespace = namespace
        self.carrier_image = carrier_image
        self.stowaway_ip = stowaway_ip
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def _patch(self, name: str, body: dict[str, Any], *, status: bool = False) -> None:
        patch = (self.custom.patch_namespaced_custom_object_status if status
                 else self.custom.patch_namespaced_custom_object)
        await patch(CRD_GROUP, CRD_VERSION, self.namespace, PLURAL, name, body, _content_type=_MERGE)

    async def sync(self, client_addresses: dict[str, str]) -> None:
        listing = await self.custom.list_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.namespace, PLURAL)
        bridges = listing["items"]
        used = {p for b in bridges for p in ((b.get("status") or {}).get("proxyPorts") or {}).values()}
        rules: list[tuple[int, str]] = []
        for bridge in bridges:
            name, spec = bridge["metadata"]["name"], bridge["spec"]
            address = client_addresses.get(spec["client"])
            if bridge["metadata"].get("deletionTimestamp") or address is None:
                await self._retire(bridge, orphaned=address is None)
                continue
            if FINALIZER not in (bridge["metadata"].get("finalizers") or []):
                await self._patch(name, {"metadata": {"finalizers": [FINALIZER]}})
            proxy = (bridge.get("status") or {}).get("proxyPorts") or {}
            if not proxy:
                proxy = {str(p["remote"]): _allocate(used) for p in spec["ports"]}
                await self._patch(name, {"status": {"proxyPorts": proxy, "phase": "Pending"}}, status=True)
            rules.extend((port, address) for port in proxy.values())
            try:
                await self._bridge_pods(bridge, {int(k): v for k, v in proxy.items()})
            except client.ApiException as exc:
                log.warning("bridging failed; retrying", bridge=name, status=exc.status, reason=exc.reason)
        await self._sync_rules(rules)

    async def _bridge_pods(self, bridge: dict[str, Any], proxy: dict[int, int]) -> None:
        name, spec = bridge["metadata"]["name"], bridge["spec"]
        target = spec["target"]
        ns, container_name = target["namespace"], target["container"]
        pod_spec, _ = await pod_spec_and_selector(self.api, ns, target["kind"], target["name"])
        template = next(c for c in pod_spec.containers if c.name == container_name)
        stream, http = carrier_config(proxy, self.stowaway_ip, probe_ports(template))
        digest = hashlib.sha256((stream + http).encode()).hexdigest()[:16]
        ready: list[str] = []
        for pod in await live_pods(self.api, ns, target["kind"], target["name"]):
            pod_name = pod.metadata.name
            annotations = pod.metadata.annotations or {}
            current = next(c for c in pod.spec.containers if c.name == container_name)
            if current.image != self.carrier_image:
                await self.core.patch_namespaced_pod(pod_name, ns, {
                    "metadata": {"annotations": {ANN_BRIDGE: name, ANN_ORIGINAL: current.image}},
                    "spec": {"containers": [{"name": container_name, "image": self.carrier_image}]},
                }, _content_type=_STRATEGIC)
                log.info("carrier swapped in", bridge=name, pod=pod_name)
                continue
            if annotations.get(ANN_CONFIG) != digest:
                if await self._configure_carrier(pod, container_name, stream, http):
                    await self.core.patch_namespaced_pod(pod_name, ns, {
                        "metadata": {"annotations": {ANN_CONFIG: digest}}}, _content_type=_STRATEGIC)
                    log.info("carrier configured", bridge=name, pod=pod_name)
                continue
            ready.append(pod_name)
        status = bridge.get("status") or {}
        phase = "Active" if ready else "Pending"
        if status.get("pods") != sorted(ready) or status.get("phase") != phase:
            await self._patch(name, {"status": {"pods": sorted(ready), "phase": phase}}, status=True)

    async def _configure_carrier(self, pod: client.V1Pod, container: str, stream: str, http: str) -> bool:
        """Writes carrier's forwarding rules and reloads it; False while carrier is not running yet."""
        statuses = {s.name: s for s in pod.status.container_statuses or []}
        state = statuses.get(container)
        if state is None or state.state.running is None or not (state.image or "").endswith(self.carrier_image):
            return False
        script = ('mkdir -p /etc/gefyra-carrier/http && printf %s "$1" > /etc/gefyra-carrier/ports/gefyra.conf && '
                  'printf %s "$2" > /etc/gefyra-carrier/http/gefyra.conf && '
                  'nginx -c /etc/gefyra-carrier/nginx.conf -s reload && echo GEFYRA-CONFIGURED')
        async with WsApiClient(configuration=self.api.configuration) as ws:
            output = await client.CoreV1Api(ws).connect_get_namespaced_pod_exec(
                pod.metadata.name, pod.metadata.namespace, container=container,
                command=["sh", "-c", script, "sh", stream, http], stderr=True, stdout=True, stdin=False, tty=False)
        return "GEFYRA-CONFIGURED" in str(output)

    async def _retire(self, bridge: dict[str, Any], *, orphaned: bool) -> None:
        """Restores the original images of the bridge's pods, then lets the object go."""
        name, target = bridge["metadata"]["name"], bridge["spec"]["target"]
        pods = (await self.core.list_namespaced_pod(target["namespace"])).items
        for pod in pods:
            annotations = pod.metadata.annotations or {}
            if annotations.get(ANN_BRIDGE) != name or pod.metadata.deletion_timestamp:
                continue
            await self.core.patch_namespaced_pod(pod.metadata.name, target["namespace"], {
                "metadata": {"annotations": {ANN_BRIDGE: None, ANN_ORIGINAL: None, ANN_CONFIG: None}},
                "spec": {"containers": [{"name": target["container"], "image": annotations[ANN_ORIGINAL]}]},
            }, _content_type=_STRATEGIC)
            log.info("original image restored", bridge=name, pod=pod.metadata.name)
        if bridge["metadata"].get("finalizers"):
            await self._patch(name, {"metadata": {"finalizers": None}})
        if orphaned and not bridge["metadata"].get("deletionTimestamp"):
            log.info("client gone; removing its bridge", bridge=name)
            await self.custom.delete_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.namespace, PLURAL, name)

    async def _sync_rules(self, rules: list[tuple[int, str]]) -> None:
        """stowaway port -> client address:same port, for TCP, in one chain rebuilt when it differs."""
        wanted = sorted(f"-A {CHAIN} -p tcp -m tcp --dport {port} -j DNAT --to-destination {address}:{port}"
                        for port, address in rules)
        current = await anyio.run_process(["iptables", "-t", "nat", "-S", CHAIN], check=False)
        if current.returncode != 0:
            await anyio.run_process(["iptables", "-t", "nat", "-N", CHAIN])
            await anyio.run_process(["iptables", "-t", "nat", "-A", "PREROUTING", "-j", CHAIN])
            # Replies must come back through stowaway: traffic into the tunnel leaves as stowaway.
            await anyio.run_process(["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "wg0", "-j", "MASQUERADE"])
            have: list[str] = []
        else:
            have = sorted(line for line in current.stdout.decode().splitlines() if line.startswith("-A"))
        if have == wanted:
            return
        await anyio.run_process(["iptables", "-t", "nat", "-F", CHAIN])
        for rule in wanted:
            await anyio.run_process(["iptables", "-t", "nat", *rule.split()])
        log.info("bridge ports routed", rules=len(wanted))
