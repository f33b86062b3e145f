"""`bridge`, the client's side, as a plan.

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
import secrets
import time
from collections.abc import Callable

import anyio

from gefyra import errors
from gefyra.client.bridge_objects import bridge_path, list_bridges, operator_logs
from gefyra.client.run import local_address, running_local_end
from gefyra.client.unbridge import remove_bridges
from gefyra.core.engine.orchestrator import OperationContext
from gefyra.core.engine.steps import Step
from gefyra.core.engine.waiting import wait_until
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.kube.workloads import live_pods, read_workload
from gefyra.core.model import tls
from gefyra.core.model.conditions import FAILING, INVALID, READY
from gefyra.core.model.crd import (
    BridgeSpec,
    BridgeTarget,
    GefyraBridge,
    PortClaim,
    PortPair,
    bridge_body,
    claims_on,
    conflict,
    parse_bridge,
    tls_copy_body,
)
from gefyra.core.model.names import ANNOTATION_STEERED, LABEL_ROLE
from gefyra.core.model.requests import BridgeRequest
from gefyra.core.model.routing import PROBE_ANSWER, PROBE_HEADER
from gefyra.core.model.settings import Settings
from gefyra.core.model.tls import TlsMaterial
from gefyra.core.model.workload import Container, Pod, parse_workload, restart_back_off
from gefyra.core.spi.interceptor import Interceptor


def bridge_name(settings: Settings, local: str, kind: str, name: str, container: str) -> str:
    """``CLIENT-LOCAL-KIND-NAME-CONTAINER`` as a DNS label; cut to 63 characters with a digest of the
    whole, so that two long names never end up the same."""
    raw = re.sub(r"[^a-z0-9-]", "-", f"{settings.client_id}-{local}-{kind}-{name}-{container}".lower())
    if len(raw) > 63:
        raw = raw[:54].rstrip("-") + "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    return raw.strip("-")


@dataclasses.dataclass
class BridgeContext(OperationContext):
    request: BridgeRequest
    interceptor: Interceptor
    target: BridgeTarget | None = None
    #: The local container's address on gefyra's network.
    address: str = ""
    name: str = ""
    #: remote port -> the server end's port, as the operator allocated them
    proxy: dict[int, int] = dataclasses.field(default_factory=dict)
    found: GefyraBridge | None = None
    template: Container | None = None
    #: HTTPS: the workload's certificate, as read and checked from --tls-secret.
    tls: TlsMaterial | None = None

    @property
    def local_end(self) -> str:
        return self.orchestrator.tunnel().local_name(self.settings)


class CheckLocal(Step[BridgeContext]):
    name = "local"
    changes = False
    title = "check the local container"
    provides = frozenset({"local"})

    async def apply(self, ctx: BridgeContext) -> None:
        settings, request = ctx.settings, ctx.request
        await running_local_end(ctx)
        local = await ctx.runtime.get_container(request.local)
        if local is None or not local.running:
            raise errors.NotFoundError(f"local container {request.local} is not running",
                                       "start it with `gefyra run` first")
        if local.labels.get(LABEL_ROLE) != "run":
            raise errors.UsageError(f"{request.local} is not a container of `gefyra run` (it is "
                                    f"{'part of gefyra' if local.labels.get(LABEL_ROLE) else 'not gefyra'}'s)",
                                    "bridge to the container you started with `gefyra run -N NAME`")
        ctx.address = await local_address(settings, ctx.runtime, local)
        if not ctx.address:
            raise errors.UsageError(f"local container {request.local} is not on gefyra's network "
                                    f"{settings.network_name}", "start it with `gefyra run`")
        await self._listens(ctx)

    LISTEN_WAIT = 5.0

    async def _listens(self, ctx: BridgeContext) -> None:
        """Every local port takes connections (from the tunnel's local end, as the bridged traffic
        will come); an application that is still starting gets a few seconds."""
        tunnel, ports = ctx.orchestrator.tunnel(), sorted(set(ctx.request.ports.values()))

        async def closed() -> list[int]:
            opened = await tunnel.connects(ctx.runtime, ctx.local_end, [(ctx.address, p) for p in ports])
            return [p for p, ok in zip(ports, opened, strict=True) if not ok]

        not_yet = await closed()
        if not_yet:
            await ctx.progress(self.name, f"waiting up to {self.LISTEN_WAIT:.0f} s for {ctx.request.local} to listen "
                                          f"on port {', '.join(map(str, not_yet))}")
            with anyio.move_on_after(self.LISTEN_WAIT):
                while not_yet := await closed():
                    await anyio.sleep(0.5)
        if not_yet:
            raise errors.UsageError(
                f"local container {ctx.request.local} takes no connection on port {', '.join(map(str, not_yet))}",
                "is the application listening there? -p REMOTE:LOCAL names the container port in the cluster, then "
                "the local container's port")


class CheckTarget(Step[BridgeContext]):
    name = "target"
    changes = False
    title = "check the target workload"
    provides = frozenset({"target"})

    async def apply(self, ctx: BridgeContext) -> None:
        request = ctx.request
        kind, name, container = parse_workload(request.target)
        try:
            workload = await read_workload(ctx.cluster, request.namespace, kind, name)
        except errors.NotFoundError as exc:
            raise errors.NotFoundError(f"{kind} {name} in namespace {request.namespace} not found") from exc
        names = [c.name for c in workload.containers]
        if container is None:
            if len(names) != 1:
                raise errors.UsageError(f"{kind}/{name} has several containers ({', '.join(names)})",
                                        f"name one: --target {kind}/{name}/CONTAINER")
            container = names[0]
        template = workload.container(container)
        if template is None:
            raise errors.NotFoundError(f"{kind}/{name} has no container {container!r}",
                                       f"its containers: {', '.join(names)}")
        undeclared = template.undeclared(list(request.ports))
        if undeclared:
            raise errors.NotFoundError(f"{kind}/{name}: {undeclared}")
        reason = ctx.interceptor.validate(template, list(request.ports), request.matches, request.in_place)
        if reason:
            raise errors.UsageError(f"cannot bridge {kind}/{name}: {reason}",
                                    "choose another container or port, or another interceptor")
        target = BridgeTarget(request.namespace, kind, name, container)
        claim = PortClaim("", container, frozenset(request.ports), request.personal)
        claims = claims_on(await list_bridges(ctx.cluster), target.workload)
        problem = conflict(claim, claims)
        if problem:
            # A global bridge shares no port: only where the others are personal can this one be too.
            others_personal = all(c.personal for c in claims if c.container == container and c.ports & claim.ports)
            raise errors.ConflictError(f"{kind}/{name}: {problem}",
                                       "unbridge that first, or make this one personal (--match-*) too"
                                       if others_personal else "unbridge that first (`gefyra unbridge -N NAME`)")
        ctx.target, ctx.template = target, template
        if request.tls_secret:
            ctx.tls = await _workload_tls(ctx.cluster, request, request.tls_secret)
        if request.in_place:
            await self._back_off(ctx, target)

    async def _back_off(self, ctx: BridgeContext, target: BridgeTarget) -> None:
        """In place, the container restarts now and again at unbridge: say up front when kubelet's
        restart back-off will hold it back, and for about how long."""
        pods = await live_pods(ctx.cluster, target.namespace, target.kind, target.name)
        delays = [restart_back_off(s, time.time()) for p in pods if (s := p.status(target.container)) is not None]
        delay = max(delays, default=0.0)
        if delay:
            await ctx.progress(self.name, f"in place: kubelet's restart back-off will hold container {target.container} "
                                          f"back by up to {delay:.0f} s (it restarted recently); a bridge without "
                                          "--in-place restarts nothing")


async def _workload_tls(cluster: Cluster, request: BridgeRequest, secret: str) -> TlsMaterial:
    """The certificate in the Secret that --tls-secret names, read with the developer's own rights
    and checked; one clear line for what is wrong with it."""
    where = f"Secret {secret} in namespace {request.namespace}"
    hint = ("--tls-secret names a Secret of type kubernetes.io/tls (tls.crt, tls.key; ca.crt unless the "
            "certificate is self-signed) with the workload's certificate")
    try:
        found = await cluster.request("GET", path("secrets", request.namespace, secret))
    except errors.NotFoundError as exc:
        raise errors.NotFoundError(f"{where} not found", hint) from exc
    except errors.ForbiddenError as exc:
        raise errors.ForbiddenError(f"you may not read {where}", "the router needs the workload's certificate: ask "
                                                                 "for `get` on that Secret") from exc
    try:
        certificate, key, trusted = tls.from_secret(found, where)
    except ValueError as exc:
        raise errors.UsageError(str(exc), hint) from exc
    trusted = tls.trusted_for(certificate, trusted)
    problem = tls.problem(certificate, key, trusted, request.tls_verify)
    if problem:
        raise errors.UsageError(f"{where} cannot serve HTTPS: {problem}",
                                "add ca.crt (the CA that issued it) or pass --tls-insecure-skip-verify"
                                if "CA bundle" in problem else hint)
    return TlsMaterial(certificate, key, trusted, request.tls_verify)


class CreateBridge(Step[BridgeContext]):
    name = "bridge"
    title = "ask the operator for the bridge"
    needs = frozenset({"local", "target"})
    provides = frozenset({"bridge"})

    async def apply(self, ctx: BridgeContext) -> None:
        request, settings, target = ctx.request, ctx.settings, ctx.target
        assert target is not None, "the target step sets it"
        name = bridge_name(settings, request.local, target.kind, target.name, target.container)
        # The certificate's copy gets a name of its own each time: one of an earlier bridge of the
        # same name may still wait for the garbage collector.
        copy = f"{name}-tls-{secrets.token_hex(4)}" if ctx.tls else ""
        spec = BridgeSpec(client=settings.client_id, owner=await ctx.cluster.username(), local_container=request.local,
                          target=target, ports=tuple(PortPair(r, lo) for r, lo in request.ports.items()),
                          matches=tuple(request.matches), interceptor=request.interceptor, in_place=request.in_place,
                          mirror=request.mirror, protocol=request.protocol or "", tls_secret=copy,
                          tls_verify=request.tls_verify)
        try:
            made = await ctx.cluster.create(bridge_body(name, spec))
        except errors.ConflictError as exc:
            raise errors.ConflictError(f"{request.local} is bridged to {target} already (bridge {name})",
                                       f"unbridge it first: `gefyra unbridge -N {name}`") from exc
        ctx.name = name  # only now is there a bridge to undo (never one of the same name made before)
        if ctx.tls is not None:
            # Owned by the bridge: it goes with it (undo included). Only the operator reads it.
            await ctx.cluster.create(tls_copy_body(copy, ctx.tls, bridge=name, bridge_uid=made["metadata"]["uid"],
                                                   owner=spec.owner, client=settings.client_id))

    async def undo(self, ctx: BridgeContext) -> None:
        if ctx.name:
            await remove_bridges(ctx, [ctx.name])


class Steer(Step[BridgeContext]):
    name = "steer"
    title = "steer the bridged ports to the local container"
    needs = frozenset({"bridge"})
    provides = frozenset({"steered"})

    async def apply(self, ctx: BridgeContext) -> None:
        found = await _wait_for(ctx, lambda b: bool(b.proxy_ports()), 15, "the operator did not take up the bridge")
        ctx.proxy = found.proxy_ports()
        forwards = {ctx.proxy[r]: (ctx.address, lo) for r, lo in ctx.request.ports.items()}
        await ctx.orchestrator.tunnel().steer(ctx.runtime, ctx.local_end, forwards)
        await ctx.cluster.patch(bridge_path(ctx.name), {"metadata": {"annotations": {ANNOTATION_STEERED: "true"}}})

    async def undo(self, ctx: BridgeContext) -> None:
        await ctx.orchestrator.tunnel().unsteer(ctx.runtime, ctx.local_end, list(ctx.proxy.values()))


class WaitReady(Step[BridgeContext]):
    name = "ready"
    changes = False
    title = "wait until the operator reports the bridge ready"
    needs = frozenset({"steered"})
    provides = frozenset({"ready"})

    async def apply(self, ctx: BridgeContext) -> None:
        ctx.found = await _wait_for(ctx, lambda b: b.condition(READY) is not None, ctx.request.timeout,
                                    "the operator did not report the bridge ready")


class ProveArrival(Step[BridgeContext]):
    """Connects through each bridged pod (the tunnel, the interceptor and the server end) until the
    tunnel's local end has passed a connection on every steered port, and through each Service in
    front of the pods until it opens: kube-proxy puts pods that became Ready again back behind their
    Services up to a second later, and `bridge` promises that the Services carry traffic."""

    name = "arrival"
    changes = False
    title = "check that traffic arrives at the local container"
    needs = frozenset({"ready"})
    provides = frozenset({"arrived"})
    TIMEOUT = 30.0
    #: Through Services that lead to the interceptor: how many connections in a row must reach it
    #: (while kube-proxy still sends half of them to the workload's own pods, 8 in a row would all
    #: reach the interceptor by chance once in 256 times).
    IN_A_ROW = 8

    async def apply(self, ctx: BridgeContext) -> None:
        assert ctx.found is not None, "the ready step sets it"
        if ctx.found.status.services:
            await self._through_services(ctx)
            return
        namespace = ctx.request.namespace
        pods = list(ctx.found.status.pods)
        ips = [Pod.of(await ctx.cluster.request("GET", path("pods", namespace, p))).ip for p in pods]
        services = await _service_targets(ctx.cluster, namespace, pods, set(ctx.proxy))
        knock = [(ip, remote) for ip in ips for remote in ctx.proxy]
        tunnel = ctx.orchestrator.tunnel()

        async def arrived() -> bool:
            await tunnel.connects(ctx.runtime, ctx.local_end, knock)
            if 0 in (await tunnel.steered_connections(ctx.runtime, ctx.local_end, list(ctx.proxy.values()))).values():
                return False
            return all(await tunnel.connects(ctx.runtime, ctx.local_end, services))

        await wait_until(arrived, self.TIMEOUT, errors.ReadinessTimeoutError(
            f"no connection through the bridge reached the local container within {self.TIMEOUT:.0f}s",
            "check that the local container listens on the given local ports"))

    async def _through_services(self, ctx: BridgeContext) -> None:
        """The interceptor stands in for the workload's Services: for a personal bridge, each
        answers the interceptor's probe (no request reaches any application); for a global one, a
        connection through each reaches the local container."""
        assert ctx.found is not None and ctx.template is not None
        namespace, remote = ctx.request.namespace, set(ctx.proxy)
        services: list[tuple[str, int]] = []
        for name in ctx.found.status.services:
            spec = (await ctx.cluster.request("GET", path("services", namespace, name))).get("spec") or {}
            ip = spec.get("clusterIP")
            if ip and ip != "None":
                services += [(ip, p["port"]) for p in spec.get("ports") or []
                             if ctx.template.port_number(p.get("targetPort", p["port"])) in remote]
        tunnel, local_end = ctx.orchestrator.tunnel(), ctx.local_end
        steered = list(ctx.proxy.values())

        async def arrived() -> bool:
            """kube-proxy may still send some connections to the workload's own pods for a moment:
            only when every one of a row of them reaches the bridge is that moment over."""
            if ctx.request.personal:
                # The row at once: each probe is its own connection, balanced by kube-proxy alone.
                answers = await tunnel.exchanges(ctx.runtime, local_end, services * self.IN_A_ROW, _PROBE)
                return all(_PROBE_ANSWER in a.lower() for a in answers)
            # A global bridge: the whole row in one go, counted by the local end's steering.
            before = sum((await tunnel.steered_connections(ctx.runtime, local_end, steered)).values())
            opened = sum(await tunnel.connects(ctx.runtime, local_end, services * self.IN_A_ROW))
            after = sum((await tunnel.steered_connections(ctx.runtime, local_end, steered)).values())
            return opened == len(services) * self.IN_A_ROW and after - before >= opened

        await wait_until(arrived, self.TIMEOUT, errors.ReadinessTimeoutError(
            f"the workload's Services did not lead to the bridge within {self.TIMEOUT:.0f}s", operator_logs(ctx)))


_PROBE = f"GET / HTTP/1.1\r\nHost: gefyra-probe\r\n{PROBE_HEADER}: 1\r\nConnection: close\r\n\r\n".encode()
_PROBE_ANSWER = f"\r\n{PROBE_ANSWER.lower()}:".encode()


async def _service_targets(cluster: Cluster, namespace: str, pods: list[str], ports: set[int]) -> list[tuple[str, int]]:
    """(cluster IP, service port) of every Service whose endpoints include one of ``pods`` on one
    of the container ``ports`` (matched through the EndpointSlice's port names)."""
    wanted: set[tuple[str, str]] = set()  # (service, port name)
    for endpoint_slice in await cluster.objects(path("endpointslices", namespace)):
        service = (endpoint_slice["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if service and any((e.get("targetRef") or {}).get("name") in pods for e in endpoint_slice.get("endpoints") or []):
            wanted |= {(service, p.get("name") or "") for p in endpoint_slice.get("ports") or [] if p.get("port") in ports}
    targets: list[tuple[str, int]] = []
    for svc in await cluster.objects(path("services", namespace)):
        ip = (svc.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            continue
        targets += [(ip, p["port"]) for p in svc["spec"].get("ports") or []
                    if (svc["metadata"]["name"], p.get("name") or "") in wanted]
    return targets


def bridge_plan(request: BridgeRequest) -> list[Step[BridgeContext]]:
    steps: list[Step[BridgeContext]] = [CheckLocal(), CheckTarget(), CreateBridge(), Steer()]
    return steps + [WaitReady(), ProveArrival()] if request.wait else steps


async def _wait_for(ctx: BridgeContext, wanted: Callable[[GefyraBridge], bool], timeout: float, what: str
                    ) -> GefyraBridge:
    """The bridge once ``wanted`` holds for it; the operator's Invalid condition ends the wait."""
    async def satisfied() -> GefyraBridge | None:
        found = parse_bridge(await ctx.cluster.request("GET", bridge_path(ctx.name)))
        invalid = found.condition(INVALID)
        if invalid:
            raise errors.UsageError(f"the operator refused the bridge: {invalid.message}",
                                    "fix the target or the ports, then bridge again")
        failing = next((c for c in found.status.conditions if c.type == READY and c.reason == FAILING), None)
        if failing is not None:
            raise errors.ReadinessTimeoutError(f"the bridge cannot become ready: {failing.message}",
                                               "see README: What gefyra installs and may do (images, admission)")
        return found if wanted(found) else None

    return await wait_until(satisfied, timeout, errors.ReadinessTimeoutError(f"{what} within {timeout:.0f}s",
                                                                             operator_logs(ctx)), interval=0.05)


async def steer_again(ctx: OperationContext) -> list[str]:
    """Steers the ports of this client's bridges to their local containers again (after `up` made
    the local end anew, or a local container got another address); returns the bridges' names."""
    settings, steered = ctx.settings, []
    tunnel = ctx.orchestrator.tunnel()
    for found in await list_bridges(ctx.cluster, settings.client_id):
        proxy = found.proxy_ports()
        local = await ctx.runtime.get_container(found.spec.local_container) if found.spec.local_container else None
        address = await local_address(settings, ctx.runtime, local) if local is not None and local.running else ""
        if found.deleting or not address or not proxy:
            continue
        forwards = {proxy[p.remote]: (address, p.local) for p in found.spec.ports}
        await tunnel.steer(ctx.runtime, tunnel.local_name(settings), forwards)
        steered.append(found.name)
    return steered
