"""Bridges follow the GefyraBridge objects. Each round, for every bridge, on its own (one bridge's
failure is logged and retried in the next round; the others go on):

- the target is checked with the bridge's interceptor (the workload and its container exist, the
  interceptor can take its place for these ports); if not, the bridge gets condition Invalid with
  the reason, and nothing else happens;
- its ports get stowaway ports (status.proxyPorts), which the tunnel's server end forwards to the
  client's tunnel address;
- every live pod of the target is taken over by the interceptor, which is then told where to
  forward; condition Ready once every pod forwards and is back behind its Services;
- a bridge that is being deleted, or whose client is gone, is Restoring until every pod runs its
  own container again (Restored); only then does it lose its finalizer.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

import structlog
from kubernetes_asyncio import client

from gefyra import errors
from gefyra.core import kube
from gefyra.core.interceptor import Forward, Interceptor
from gefyra.core.names import (
    BRIDGE_FINALIZER,
    BRIDGES,
    CRD_GROUP,
    CRD_VERSION,
    INVALID,
    PROTECTED_NAMESPACES,
    PROXY_PORTS,
    READY,
    RESTORED,
    RESTORING,
)
from gefyra.core.orchestrator import Orchestrator
from gefyra.core.tunnel import ServerForward, TunnelServer
from gefyra.core.validation import WORKLOAD_ALIASES
from gefyra.core.workloads import container_status, live_pods, pod_spec_and_selector, undeclared_port
from gefyra.operator.clients import ActiveClient

log = structlog.get_logger("gefyra.operator")


class InvalidBridge(Exception):
    """The bridge cannot be made as it is; the message is the reason, for its Invalid condition."""


_KINDS = set(WORKLOAD_ALIASES.values())
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _allocate(used: set[int]) -> int:
    for port in PROXY_PORTS:
        if port not in used:
            used.add(port)
            return port
    raise InvalidBridge("no free stowaway port is left for a bridge")


def conditions_with(current: list[dict[str, Any]], kind: str, status: bool, reason: str,
                    message: str = "") -> list[dict[str, Any]]:
    """``current`` with condition ``kind`` set; its transition time changes only with its status."""
    value = "True" if status else "False"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result, found = [], False
    for c in current:
        if c.get("type") == kind:
            found = True
            when = c.get("lastTransitionTime", now) if c.get("status") == value else now
            c = {"type": kind, "status": value, "reason": reason, "message": message, "lastTransitionTime": when}
        result.append(c)
    if not found:
        result.append({"type": kind, "status": value, "reason": reason, "message": message, "lastTransitionTime": now})
    return result


def _target(spec: dict[str, Any]) -> dict[str, str]:
    """spec.target, checked: names Kubernetes could have, in a namespace gefyra may touch."""
    target = spec.get("target")
    if not isinstance(target, dict):
        raise InvalidBridge("spec.target is missing")
    for field in ("namespace", "kind", "name", "container"):
        value = target.get(field)
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise InvalidBridge(f"spec.target.{field} is not a Kubernetes name: {str(value)[:60]!r}")
    if target["kind"] not in _KINDS:
        raise InvalidBridge(f"spec.target.kind must be one of {', '.join(sorted(_KINDS))}")
    if target["namespace"] in PROTECTED_NAMESPACES:
        raise InvalidBridge(f"gefyra does not bridge workloads in namespace {target['namespace']}")
    return target


def _proxy_ports(bridge: dict[str, Any], ports: list[int] | None) -> dict[int, int]:
    """status.proxyPorts (remote port -> stowaway port) as the operator wrote it, or {} when it is
    not exactly that: stowaway ports out of gefyra's range, or remote ports other than ``ports``
    (None: any). Read back from the cluster, so checked like any input."""
    found = (bridge.get("status") or {}).get("proxyPorts")
    if not isinstance(found, dict):
        return {}
    try:
        proxy = {int(k): int(v) for k, v in found.items() if str(k).isascii()}
    except (TypeError, ValueError):
        return {}
    if (len(proxy) != len(found) or not all(p in PROXY_PORTS for p in proxy.values())
            or (ports is not None and set(proxy) != set(ports))):
        return {}
    return proxy


def _ports(spec: dict[str, Any]) -> list[int]:
    ports = spec.get("ports")
    if not isinstance(ports, list) or not ports:
        raise InvalidBridge("spec.ports names no port")
    found = []
    for p in ports:
        remote = p.get("remote") if isinstance(p, dict) else None
        if not isinstance(remote, int) or not 1 <= remote <= 65535:
            raise InvalidBridge(f"spec.ports has a remote port that is not 1-65535: {remote!r}")
        found.append(remote)
    return found


class Bridges:
    def __init__(self, api: client.ApiClient, namespace: str, orchestrator: Orchestrator, server: TunnelServer,
                 stowaway_ip: str, notify: Callable[[], None]) -> None:
        self.api = api
        self.namespace = namespace
        self.orchestrator = orchestrator
        self.server = server
        self.stowaway_ip = stowaway_ip
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        #: True after a round in which some bridge was on its way (the next round comes sooner).
        self.busy = False
        #: The namespaces of the bridges' targets: pod changes there wake the next round.
        self.namespaces: set[str] = set()
        self._notify = notify
        #: Interceptors by the name bridges give (one object each: they may keep state, such as
        #: what their parts in the pods were told).
        self._interceptors: dict[str | None, Interceptor] = {}

    def interceptors(self) -> list[Interceptor]:
        return list(self._interceptors.values())

    async def _patch(self, name: str, body: dict[str, Any], *, status: bool = False) -> None:
        path = kube.custom_path(self.namespace, BRIDGES, name, "status" if status else "")
        await kube.request(self.api, "PATCH", path, body, content_type=kube.MERGE_PATCH)

    async def _set_status(self, bridge: dict[str, Any], **changes: Any) -> None:
        """Patches the status fields that differ from what the object has."""
        status = bridge.get("status") or {}
        diff = {k: v for k, v in changes.items() if status.get(k) != v}
        if diff:
            await self._patch(bridge["metadata"]["name"], {"status": diff}, status=True)
            status.update(diff)
            bridge["status"] = status

    async def sync(self, clients: dict[str, ActiveClient]) -> None:
        listing = await self.custom.list_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.namespace, BRIDGES)
        bridges = listing["items"]
        used = {p for b in bridges for p in _proxy_ports(b, None).values()}
        rules: list[ServerForward] = []
        busy = False
        self.namespaces = {str((b.get("spec") or {}).get("target", {}).get("namespace")) for b in bridges}
        for bridge in bridges:
            name = bridge["metadata"]["name"]
            try:
                ready = await self._reconcile(bridge, clients, used, rules)
            except InvalidBridge as exc:
                ready = True  # nothing more will happen until the object changes
                await self._invalid(bridge, str(exc))
            except Exception as exc:  # noqa: BLE001 - one bridge must not stop the others
                ready = False
                log.warning("bridge failed; retrying", bridge=name, error=f"{type(exc).__name__}: {exc}")
            busy = busy or not ready
        self.busy = busy
        await self.server.forward(rules)

    async def _invalid(self, bridge: dict[str, Any], reason: str) -> None:
        status = bridge.get("status") or {}
        conditions = conditions_with(status.get("conditions") or [], INVALID, True, "TargetRefused", reason)
        conditions = conditions_with(conditions, READY, False, "Invalid", reason)
        if status.get("phase") != "Invalid" or status.get("message") != reason:
            log.warning("bridge invalid", bridge=bridge["metadata"]["name"], reason=reason)
        await self._set_status(bridge, phase="Invalid", message=reason, conditions=conditions)

    def _interceptor(self, spec: dict[str, Any]) -> Interceptor:
        name = spec.get("interceptor") or None
        if name not in self._interceptors:
            try:
                interceptor = self.orchestrator.interceptor(name)
            except errors.GefyraError as exc:
                raise InvalidBridge(f"no plugin in the operator provides the interceptor {name!r}") from exc
            interceptor.notify = self._notify
            self._interceptors[name] = interceptor
        return self._interceptors[name]

    async def _reconcile(self, bridge: dict[str, Any], clients: dict[str, ActiveClient], used: set[int],
                         rules: list[ServerForward]) -> bool:
        """One bridge; True once it is in its wanted state."""
        name, spec = bridge["metadata"]["name"], bridge["spec"]
        owner = clients.get(spec.get("client", ""))
        if bridge["metadata"].get("deletionTimestamp") or owner is None:
            return await self._retire(bridge, orphaned=owner is None)
        # No owner: an admin made it (the ownership policy admits that from nobody else).
        if spec.get("owner") and spec["owner"] != owner.owner:
            raise InvalidBridge(f"client {spec.get('client')} belongs to {owner.owner or 'an admin'}, "
                                f"not to {spec['owner']}")
        interceptor = self._interceptor(spec)
        target = _target(spec)
        ports = _ports(spec)
        try:
            pod_spec, _ = await pod_spec_and_selector(self.api, target["namespace"], target["kind"], target["name"])
        except client.ApiException as exc:
            if exc.status == 404:
                raise InvalidBridge(f"{target['kind']} {target['name']} does not exist in namespace "
                                    f"{target['namespace']}") from exc
            raise
        template = next((c for c in pod_spec.containers if c.name == target["container"]), None)
        if template is None:
            raise InvalidBridge(f"{target['kind']}/{target['name']} has no container {target['container']!r} "
                                f"(its containers: {', '.join(c.name for c in pod_spec.containers)})")
        reason = undeclared_port(template, ports) or interceptor.validate(template, ports)
        if reason:
            raise InvalidBridge(reason)

        if BRIDGE_FINALIZER not in (bridge["metadata"].get("finalizers") or []):
            await self._patch(name, {"metadata": {"finalizers": [BRIDGE_FINALIZER]}})
        proxy = _proxy_ports(bridge, ports)
        if not proxy and (bridge.get("status") or {}).get("proxyPorts"):
            # A merge patch merges maps: what is there must go before the new ports are written.
            await self._patch(name, {"status": {"proxyPorts": None}}, status=True)
            bridge["status"].pop("proxyPorts")
        if not proxy:
            proxy = {p: _allocate(used) for p in ports}
            await self._set_status(bridge, proxyPorts={str(k): v for k, v in proxy.items()}, phase="Pending")
        forwards = [Forward(remote, self.stowaway_ip, port) for remote, port in sorted(proxy.items())]

        ready: list[str] = []
        pods = await live_pods(self.api, target["namespace"], target["kind"], target["name"])
        sources = tuple(sorted(p.status.pod_ip for p in pods if p.status is not None and p.status.pod_ip))
        rules.extend(ServerForward(port, owner.address, sources) for port in proxy.values())
        for pod in pods:
            container = target["container"]
            if interceptor.bridge_of(pod, container) != name:
                await interceptor.take_over(self.api, pod, container, name)
            elif (await interceptor.configure(self.api, pod, container, template, forwards)
                  and getattr(container_status(pod, container), "ready", False)):
                ready.append(pod.metadata.name)
        all_ready = bool(pods) and len(ready) == len(pods) and await self._serving(target["namespace"], ready)
        conditions = (bridge.get("status") or {}).get("conditions") or []
        conditions = conditions_with(conditions, INVALID, False, "TargetAccepted")
        conditions = conditions_with(conditions, READY, all_ready, "Forwarding" if all_ready else "TakingOver",
                                     f"{len(ready)} of {len(pods)} pods forward to the client")
        await self._set_status(bridge, pods=sorted(ready), phase="Active" if all_ready else "Pending", message="",
                               conditions=conditions)
        return all_ready

    async def _serving(self, namespace: str, pod_names: list[str]) -> bool:
        """True once every Service endpoint of these pods is ready (a restarted container drops out
        of its Services until then)."""
        slices = await client.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice(namespace)
        for endpoint_slice in slices.items:
            for endpoint in endpoint_slice.endpoints or []:
                ref = endpoint.target_ref
                if ref is not None and ref.name in pod_names and not (endpoint.conditions and endpoint.conditions.ready):
                    return False
        return True

    async def _retire(self, bridge: dict[str, Any], *, orphaned: bool) -> bool:
        """Restores the pods the bridge took over; once every pod of the target runs its own
        container again (Ready and serving), lets the object go. True when done."""
        name, spec = bridge["metadata"]["name"], bridge["spec"]
        restored = True
        try:
            interceptor, target = self._interceptor(spec), _target(spec)
        except InvalidBridge:
            interceptor = None  # it never took anything over
        if interceptor is not None and bridge["metadata"].get("finalizers"):
            conditions = conditions_with((bridge.get("status") or {}).get("conditions") or [], RESTORING, True,
                                         "Unbridged" if not orphaned else "ClientGone")
            await self._set_status(bridge, phase="Restoring", conditions=conditions)
            pods = [p for p in (await self.core.list_namespaced_pod(target["namespace"])).items
                    if interceptor.bridge_of(p, target["container"]) == name and not p.metadata.deletion_timestamp]
            done = [await interceptor.restore(self.api, pod, target["container"]) for pod in pods]
            restored = all(done) and await self._serving(target["namespace"], [p.metadata.name for p in pods])
            if not restored:
                return False
            conditions = conditions_with(conditions, RESTORED, True, "Restored", "every pod runs its own container")
            await self._set_status(bridge, phase="Restored", conditions=conditions)
        if bridge["metadata"].get("finalizers"):
            await self._patch(name, {"metadata": {"finalizers": None}})
        if orphaned and not bridge["metadata"].get("deletionTimestamp"):
            log.info("client gone; removing its bridge", bridge=name)
            await self.custom.delete_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.namespace, BRIDGES, name)
        return restored

