"""`bridge` and `unbridge`, the client's side, as plans.

The client checks everything first (the local container, the target with the interceptor's own
validation) and creates a GefyraBridge; the operator does the cluster's part and reports on the
object's conditions (Ready, Invalid, Restoring, Restored), on which the client waits. The client's
own part is steering the ports that arrive through the tunnel to the local container.

`bridge`'s facts: "local" and "target" (checked), "bridge" (the object exists), "steered",
"ready" (condition Ready), "arrived" (traffic through the bridge reaches the local end, or for a
personal bridge: the workload's Services lead to the interceptor that routes the requests).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from typing import Any

import structlog
from kubernetes_asyncio import client

from gefyra import errors
from gefyra.client.run import local_address, running_cargo
from gefyra.core.engine.orchestrator import OperationContext
from gefyra.core.engine.steps import Step
from gefyra.core.engine.waiting import wait_until
from gefyra.core.kube import cluster as kube
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.workloads import parse_workload, pod_spec_and_selector, undeclared_port
from gefyra.core.model.names import (
    ANNOTATION_STEERED,
    BRIDGES_PATH,
    CRD_GROUP,
    CRD_VERSION,
    GEFYRA_NAMESPACE,
    INVALID,
    LABEL_CLIENT,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    READY,
    STOWAWAY,
)
from gefyra.core.model.requests import BridgeRequest
from gefyra.core.model.routing import PROBE_ANSWER, PROBE_HEADER, Target
from gefyra.core.model.settings import Settings
from gefyra.core.spi.interceptor import Interceptor

log = structlog.get_logger(__name__)

_OPERATOR_LOGS = "check `kubectl -n gefyra logs deploy/gefyra-stowaway -c operator`"


def bridge_name(settings: Settings, local: str, kind: str, name: str, container: str) -> str:
    """``CLIENT-LOCAL-KIND-NAME-CONTAINER`` as a DNS label; cut to 63 characters with a digest of the
    whole, so that two long names never end up the same."""
    raw = re.sub(r"[^a-z0-9-]", "-", f"{settings.client_id}-{local}-{kind}-{name}-{container}".lower())
    if len(raw) > 63:
        raw = raw[:54].rstrip("-") + "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return raw.strip("-")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The condition ``kind`` of a GefyraBridge if it is True, else None."""
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == kind and found.get("status") == "True":
            return dict(found)
    return None


async def list_bridges(cluster: Cluster, client_id: str | None = None) -> list[dict[str, Any]]:
    try:
        listing = await cluster.request("GET", BRIDGES_PATH)
    except errors.NotFoundError:
        return []
    return [b for b in listing["items"] if client_id is None or b["spec"]["client"] == client_id]


@dataclasses.dataclass
class Context(OperationContext):
    request: BridgeRequest
    interceptor: Interceptor
    kind: str = ""
    workload: str = ""
    container: str = ""
    address: str = ""
    name: str = ""
    #: remote port -> stowaway port, as the operator allocated them
    proxy: dict[int, int] = dataclasses.field(default_factory=dict)
    found: dict[str, Any] = dataclasses.field(default_factory=dict)
    template: client.V1Container | None = None


class CheckLocal(Step[Context]):
    name = "local"
    title = "check the local container"
    provides = frozenset({"local"})

    async def apply(self, ctx: Context) -> None:
        settings, request = ctx.settings, ctx.request
        await running_cargo(settings, ctx.runtime)
        local = await ctx.runtime.get_container(request.local)
        if local is None or not local.running:
            raise errors.NotFoundError(f"local container {request.local} is not running",
                                       "start it with `gefyra run` first")
        ctx.address = await local_address(settings, ctx.runtime, local)
        if not ctx.address:
            raise errors.UsageError(f"local container {request.local} is not on gefyra's network "
                                    f"{settings.network_name}", "start it with `gefyra run`")


class CheckTarget(Step[Context]):
    name = "target"
    title = "check the target workload"
    provides = frozenset({"target"})

    async def apply(self, ctx: Context) -> None:
        request = ctx.request
        kind, name, container = parse_workload(request.target)
        async with ctx.cluster.calling(f"{kind} {name} in namespace {request.namespace}"):
            spec, _ = await pod_spec_and_selector(ctx.cluster.api, request.namespace, kind, name)
        names = [c.name for c in spec.containers]
        if container is None:
            if len(names) != 1:
                raise errors.UsageError(f"{kind}/{name} has several containers ({', '.join(names)})",
                                        f"name one: --target {kind}/{name}/CONTAINER")
            container = names[0]
        if container not in names:
            raise errors.NotFoundError(f"{kind}/{name} has no container {container!r}",
                                       f"its containers: {', '.join(names)}")
        template = next(c for c in spec.containers if c.name == container)
        undeclared = undeclared_port(template, list(request.ports))
        if undeclared:
            raise errors.NotFoundError(f"{kind}/{name}: {undeclared}")
        reason = ctx.interceptor.validate(template, list(request.ports), request.matches)
        if reason:
            raise errors.UsageError(f"cannot bridge {kind}/{name}: {reason}",
                                    "choose another container or port, or another interceptor")
        for existing in await list_bridges(ctx.cluster):
            problem = _conflict(existing, (request.namespace, kind, name, container), set(request.ports),
                                bool(request.matches))
            if problem:
                raise errors.ConflictError(f"{kind}/{name}/{container}: {problem}",
                                           "unbridge that first, or make this one personal (--match-*) too"
                                           if not request.matches else "unbridge the global bridge first")
        ctx.kind, ctx.workload, ctx.container, ctx.template = kind, name, container, template


def _conflict(existing: dict[str, Any], target: tuple[str, str, str, str], ports: set[int], personal: bool
              ) -> str | None:
    """Why a bridge on ``target``'s ``ports`` cannot be made beside ``existing``: a global bridge
    shares a port with no other bridge; personal bridges share ports with each other."""
    spec = existing.get("spec") or {}
    t = spec.get("target") or {}
    if (t.get("namespace"), t.get("kind"), t.get("name"), t.get("container")) != target:
        return None
    shared = ports & {p.get("remote") for p in spec.get("ports") or []}
    if not shared:
        return None
    if not spec.get("match"):
        return f"port {min(shared)} is already bridged globally (by {spec.get('client')})"
    if not personal:
        return f"port {min(shared)} has personal bridges (by {spec.get('client')}); a global bridge would take their requests"
    return None


class CreateBridge(Step[Context]):
    name = "bridge"
    title = "ask the operator for the bridge"
    needs = frozenset({"local", "target"})
    provides = frozenset({"bridge"})

    async def apply(self, ctx: Context) -> None:
        request, settings = ctx.request, ctx.settings
        name = bridge_name(settings, request.local, ctx.kind, ctx.workload, ctx.container)
        doc = {"apiVersion": f"{CRD_GROUP}/{CRD_VERSION}", "kind": "GefyraBridge",
               "metadata": {"name": name, "namespace": GEFYRA_NAMESPACE,
                            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLIENT: settings.client_id}},
               "spec": {"client": settings.client_id, "owner": await ctx.cluster.username(),
                        "localContainer": request.local,
                        **({"interceptor": request.interceptor} if request.interceptor else {}),
                        **({"match": [{"kind": m.kind, **({"header": m.header} if m.header else {}), "value": m.value}
                                      for m in request.matches]} if request.matches else {}),
                        "target": {"namespace": request.namespace, "kind": ctx.kind, "name": ctx.workload,
                                   "container": ctx.container},
                        "ports": [{"remote": r, "local": lo} for r, lo in sorted(request.ports.items())]}}
        await ctx.cluster.request("POST", BRIDGES_PATH, doc)
        ctx.name = name  # only now is there a bridge to undo (never one of the same name made before)

    async def undo(self, ctx: Context) -> None:
        if ctx.name:
            await remove_bridges(ctx, [ctx.name])


class Steer(Step[Context]):
    name = "steer"
    title = "steer the bridged ports to the local container"
    needs = frozenset({"bridge"})
    provides = frozenset({"steered"})

    async def apply(self, ctx: Context) -> None:
        found = await _wait_for(ctx, lambda b: bool((b.get("status") or {}).get("proxyPorts")), 15,
                                "the operator did not take up the bridge")
        ctx.proxy = {int(k): int(v) for k, v in found["status"]["proxyPorts"].items()}
        forwards = {ctx.proxy[r]: (ctx.address, lo) for r, lo in ctx.request.ports.items()}
        await ctx.orchestrator.tunnel().steer(ctx.runtime, ctx.settings.cargo_name, forwards)
        await ctx.cluster.request("PATCH", f"{BRIDGES_PATH}/{ctx.name}",
                                  {"metadata": {"annotations": {ANNOTATION_STEERED: "true"}}},
                                  content_type=kube.MERGE_PATCH)

    async def undo(self, ctx: Context) -> None:
        await ctx.orchestrator.tunnel().unsteer(ctx.runtime, ctx.settings.cargo_name, list(ctx.proxy.values()))


class WaitReady(Step[Context]):
    name = "ready"
    title = "wait until the target's pods forward to this machine"
    needs = frozenset({"steered"})
    provides = frozenset({"ready"})

    async def apply(self, ctx: Context) -> None:
        ctx.found = await _wait_for(ctx, lambda b: condition(b, READY) is not None, ctx.request.timeout,
                                    "the target's pods were not bridged")


class ProveArrival(Step[Context]):
    """Connects through each bridged pod (the tunnel, the interceptor and stowaway) until the
    tunnel's local end has passed a connection on every steered port, and through each Service in
    front of the pods until it opens: kube-proxy puts pods that became Ready again back behind their
    Services up to a second later, and `bridge` promises that the Services carry traffic."""

    name = "arrival"
    title = "check that traffic arrives at the local container"
    needs = frozenset({"ready"})
    provides = frozenset({"arrived"})
    TIMEOUT = 30.0
    #: Through Services that lead to the interceptor: how many connections in a row must reach it
    #: (while kube-proxy still sends half of them to the workload's own pods, 8 in a row would all
    #: reach the interceptor by chance once in 256 times).
    IN_A_ROW = 8

    async def apply(self, ctx: Context) -> None:
        if ctx.found["status"].get("services"):
            await self._through_services(ctx)
            return
        core = client.CoreV1Api(ctx.cluster.api)
        namespace = ctx.request.namespace
        pods = list(ctx.found["status"]["pods"])
        async with ctx.cluster.calling(f"the bridged pods in namespace {namespace}"):
            ips = [(await core.read_namespaced_pod(p, namespace)).status.pod_ip for p in pods]
            services = await _service_targets(ctx.cluster, namespace, pods, set(ctx.proxy))
        knock = [(ip, remote) for ip in ips for remote in ctx.proxy]
        tunnel, cargo = ctx.orchestrator.tunnel(), ctx.settings.cargo_name

        async def arrived() -> bool:
            await tunnel.connects(ctx.runtime, cargo, knock)
            if 0 in (await tunnel.steered_connections(ctx.runtime, cargo, list(ctx.proxy.values()))).values():
                return False
            return all(await tunnel.connects(ctx.runtime, cargo, services))

        await wait_until(arrived, self.TIMEOUT, errors.ReadinessTimeoutError(
            f"no connection through the bridge reached the local container within {self.TIMEOUT:.0f}s",
            "check that the local container listens on the given local ports"))


    async def _through_services(self, ctx: Context) -> None:
        """The interceptor stands in for the workload's Services: for a personal bridge, each
        answers the interceptor's probe (no request reaches any application); for a global one, a
        connection through each reaches the local container."""
        namespace, remote = ctx.request.namespace, set(ctx.proxy)
        core = client.CoreV1Api(ctx.cluster.api)
        named = {p.name: p.container_port for p in (ctx.template.ports if ctx.template else None) or [] if p.name}
        services: list[tuple[str, int]] = []
        async with ctx.cluster.calling(f"the bridged Services in namespace {namespace}"):
            for name in ctx.found["status"].get("services") or []:
                svc = await core.read_namespaced_service(str(name), namespace)
                ip = svc.spec.cluster_ip
                if ip and ip != "None":
                    services += [(ip, p.port) for p in svc.spec.ports or []
                                 if named.get(p.target_port, p.target_port) in remote]
        tunnel, cargo = ctx.orchestrator.tunnel(), ctx.settings.cargo_name
        steered = list(ctx.proxy.values())

        async def arrived() -> bool:
            """kube-proxy may still send some connections to the workload's own pods for a moment:
            only when every one of a row of them reaches the bridge is that moment over."""
            for _ in range(self.IN_A_ROW):
                if ctx.request.matches:
                    answers = [await tunnel.exchange(ctx.runtime, cargo, target, _PROBE) for target in services]
                    if not all(_PROBE_ANSWER in a.lower() for a in answers):
                        return False
                else:
                    before = sum((await tunnel.steered_connections(ctx.runtime, cargo, steered)).values())
                    opened = sum(await tunnel.connects(ctx.runtime, cargo, services))
                    after = sum((await tunnel.steered_connections(ctx.runtime, cargo, steered)).values())
                    if opened < len(services) or after - before < opened:
                        return False
            return True

        await wait_until(arrived, self.TIMEOUT, errors.ReadinessTimeoutError(
            f"the workload's Services did not lead to the bridge within {self.TIMEOUT:.0f}s", _OPERATOR_LOGS))


_PROBE = f"GET / HTTP/1.1\r\nHost: gefyra-probe\r\n{PROBE_HEADER}: 1\r\nConnection: close\r\n\r\n".encode()
_PROBE_ANSWER = f"\r\n{PROBE_ANSWER.lower()}:".encode()


async def _service_targets(cluster: Cluster, namespace: str, pods: list[str], ports: set[int]) -> list[tuple[str, int]]:
    """(cluster IP, service port) of every Service whose endpoints include one of ``pods`` on one
    of the container ``ports`` (matched through the EndpointSlice's port names)."""
    slices = await client.DiscoveryV1Api(cluster.api).list_namespaced_endpoint_slice(namespace)
    wanted: set[tuple[str, str]] = set()  # (service, port name)
    for endpoint_slice in slices.items:
        service = (endpoint_slice.metadata.labels or {}).get("kubernetes.io/service-name")
        if service and any(e.target_ref is not None and e.target_ref.name in pods for e in endpoint_slice.endpoints or []):
            wanted |= {(service, p.name or "") for p in endpoint_slice.ports or [] if p.port in ports}
    targets: list[tuple[str, int]] = []
    for svc in (await client.CoreV1Api(cluster.api).list_namespaced_service(namespace)).items:
        ip = svc.spec.cluster_ip
        if not ip or ip == "None":
            continue
        targets += [(ip, p.port) for p in svc.spec.ports or [] if (svc.metadata.name, p.name or "") in wanted]
    return targets


def bridge_plan(request: BridgeRequest) -> list[Step[Context]]:
    steps: list[Step[Context]] = [CheckLocal(), CheckTarget(), CreateBridge(), Steer()]
    return steps + [WaitReady(), ProveArrival()] if request.wait else steps


async def _wait_for(ctx: Context, wanted: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
    """The bridge object once ``wanted`` holds for it; the operator's Invalid condition ends the wait."""
    async def satisfied() -> dict[str, Any] | None:
        found: dict[str, Any] = await ctx.cluster.request("GET", f"{BRIDGES_PATH}/{ctx.name}")
        invalid = condition(found, INVALID)
        if invalid:
            raise errors.UsageError(f"the operator refused the bridge: {invalid.get('message', '')}",
                                    "fix the target or the ports, then bridge again")
        return found if wanted(found) else None

    return await wait_until(satisfied, timeout, errors.ReadinessTimeoutError(f"{what} within {timeout:.0f}s", _OPERATOR_LOGS),
                            interval=0.15)


async def steer_again(ctx: OperationContext) -> list[str]:
    """Steers the ports of this client's bridges to their local containers again (after `up` made
    cargo anew, or a local container got another address); returns the bridges' names."""
    settings, steered = ctx.settings, []
    for found in await list_bridges(ctx.cluster, settings.client_id):
        spec, status = found.get("spec") or {}, found.get("status") or {}
        proxy = status.get("proxyPorts") or {}
        local = await ctx.runtime.get_container(str(spec.get("localContainer", "")))
        address = await local_address(settings, ctx.runtime, local) if local is not None and local.running else ""
        if found["metadata"].get("deletionTimestamp") or not address or not isinstance(proxy, dict):
            continue
        forwards = {int(proxy[str(p["remote"])]): (address, int(p["local"]))
                    for p in spec.get("ports") or [] if str(p.get("remote")) in proxy}
        await ctx.orchestrator.tunnel().steer(ctx.runtime, settings.cargo_name, forwards)
        steered.append(found["metadata"]["name"])
    return steered


# unbridge


class RemoveBridge(Step["UnbridgeContext"]):
    """One bridge: delete it, stop steering its ports, wait until the operator restored its pods
    (it removes the object's finalizer only then)."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self.name = f"unbridge {bridge}"
        self.title = f"remove bridge {bridge} (its pods get their containers back)"

    async def apply(self, ctx: UnbridgeContext) -> None:
        ctx.removed += await remove_bridges(ctx, [self.bridge])


@dataclasses.dataclass
class UnbridgeContext(OperationContext):
    removed: list[str] = dataclasses.field(default_factory=list)


async def remove_bridges(ctx: OperationContext, names: list[str]) -> list[str]:
    """Deletes the bridges ``names`` and returns once the operator let them go (restored), within
    the settings' timeout: a pod whose container was swapped often waits out kubelet's restart
    back-off (10 s, 20 s, 40 s, ...) before its own container runs again. Without a running
    operator the client gives the workloads back itself, as far as its rights go, and lets the
    objects go: `unbridge` and `down` always finish."""
    cluster, timeout = ctx.cluster, ctx.settings.timeout
    removed: list[dict[str, Any]] = []
    for name in names:
        try:
            found = await cluster.request("GET", f"{BRIDGES_PATH}/{name}")
        except errors.NotFoundError:
            continue
        await cluster.request("DELETE", f"{BRIDGES_PATH}/{name}")
        proxy = list(((found.get("status") or {}).get("proxyPorts") or {}).values())
        await ctx.orchestrator.tunnel().unsteer(ctx.runtime, ctx.settings.cargo_name, proxy)
        removed.append(found)
    gone = [b["metadata"]["name"] for b in removed]

    async def all_gone() -> bool:
        return not [b for b in await list_bridges(cluster) if b["metadata"]["name"] in gone]

    if removed and await _operator_running(cluster):
        try:
            await wait_until(all_gone, timeout, errors.ReadinessTimeoutError(
                f"the bridged pods were not restored within {timeout:.0f}s", _OPERATOR_LOGS), interval=0.15)
            return gone
        except errors.ReadinessTimeoutError:
            if await _operator_running(cluster):
                raise
    if removed:
        await _give_back_without_operator(ctx, removed)
    return gone


async def _operator_running(cluster: Cluster) -> bool:
    """The operator's Deployment exists and has a ready pod."""
    try:
        found = await cluster.request("GET", f"/apis/apps/v1/namespaces/{GEFYRA_NAMESPACE}/deployments/{STOWAWAY}")
    except errors.NotFoundError:
        return False
    return not found["metadata"].get("deletionTimestamp") and (found.get("status") or {}).get("availableReplicas", 0) > 0


async def _give_back_without_operator(ctx: OperationContext, removed: list[dict[str, Any]]) -> None:
    """The operator's part of removing these bridges, from here: each target that no other bridge
    names is given back by its interceptor (what this user may not do is left for the operator
    to do when it runs again), and the bridges lose their finalizers."""
    log.warning("the operator does not run; giving the workloads back from here")
    others = {(t.get("namespace"), t.get("kind"), t.get("name"))
              for b in await list_bridges(ctx.cluster) if not b["metadata"].get("deletionTimestamp")
              for t in [(b.get("spec") or {}).get("target") or {}]}
    targets: dict[Target, str | None] = {}
    for found in removed:
        spec = found.get("spec") or {}
        t = spec.get("target") or {}
        if (t.get("namespace"), t.get("kind"), t.get("name")) not in others:
            targets[Target(t["namespace"], t["kind"], t["name"])] = spec.get("interceptor") or None
    for target, name in targets.items():
        interceptor = ctx.orchestrator.interceptor(name)

        async def given_back(interceptor: Interceptor = interceptor, target: Target = target) -> bool:
            async with ctx.cluster.calling(f"{target}"):
                return (await interceptor.intercept(ctx.cluster.api, target, [])).settled

        await wait_until(given_back, ctx.settings.timeout, errors.ReadinessTimeoutError(
            f"{target} was not given back within {ctx.settings.timeout:.0f}s", _OPERATOR_LOGS), interval=0.5)
    for found in removed:
        try:
            await ctx.cluster.request("PATCH", f"{BRIDGES_PATH}/{found['metadata']['name']}",
                                      {"metadata": {"finalizers": None}}, content_type=kube.MERGE_PATCH)
        except errors.NotFoundError:
            pass
