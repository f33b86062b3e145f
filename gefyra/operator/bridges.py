"""Bridges follow the GefyraBridge objects. Each round (:meth:`Bridges.sync`) has three phases:

1. every bridge is checked on its own (:meth:`Bridges._prepare`): its spec (read back from the
   cluster: untrusted, checked by :func:`gefyra.core.model.crd.parse_bridge`), its client and
   owner, its target (the workload, the container, its declared ports, the interceptor's own
   rules), and the other bridges on the same container (:func:`gefyra.core.model.crd.conflict`);
   if not, it gets condition Invalid with the reason. Its ports get the server end's ports
   (status.proxyPorts), which the server end forwards to the client's tunnel address, for
   connections from the addresses the interceptor names;
2. the bridges of one target workload go to its interceptor together, as routes (in the order they
   were made: the first personal bridge whose conditions match takes a request); the interceptor
   reports each route's state (condition Ready) and whether routes that are gone are undone; a
   bridge that is being deleted, or whose client is gone, is Restoring until the interceptor has
   undone it (Restored); only then does it lose its finalizer;
3. the server end's forwards are set, and what interceptors hold of targets no bridge names any
   more is given back.

One target's or one bridge's failure is logged and retried in a later round; the others go on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import structlog

from gefyra import errors
from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.kube.cluster import MERGE_PATCH, Cluster
from gefyra.core.kube.paths import path
from gefyra.core.kube.workloads import read_workload
from gefyra.core.model import tls
from gefyra.core.model.conditions import CLIENT_SILENT, FAILING, INVALID, READY, RESTORED, RESTORING, with_condition
from gefyra.core.model.crd import BridgeStatus, GefyraBridge, PortClaim, conflict, parse_bridge, status_patch
from gefyra.core.model.names import BRIDGE_FINALIZER, BRIDGES, GEFYRA_NAMESPACE, PROXY_PORTS, STEER_BOUND
from gefyra.core.model.routing import Forward, Route, RouteState, Target
from gefyra.core.model.tls import TlsMaterial
from gefyra.core.model.workload import Workload
from gefyra.core.spi.interceptor import Interceptor, InvalidRoute
from gefyra.core.spi.tunnel import ServerForward, TunnelServer
from gefyra.operator.clients import ActiveClient, Roster
from gefyra.operator.retry import backoff

log = structlog.get_logger("gefyra.operator")

#: Seconds one target's reconciliation may take in a round.
TARGET_TIMEOUT = 30.0


class InvalidBridge(Exception):
    """The bridge cannot be made as it is; the message is the reason, for its Invalid condition."""


def _allocate(used: set[int]) -> int:
    for port in PROXY_PORTS:
        if port not in used:
            used.add(port)
            return port
    raise InvalidBridge("no free port of the tunnel's server end is left for a bridge")


@dataclasses.dataclass
class _Member:
    """A bridge of a target: with its route while it should exist, without while it is retiring.
    ``status`` is what the object's status is now, ``status_json`` the same as JSON (each write
    updates both)."""

    bridge: GefyraBridge
    status: BridgeStatus
    status_json: Mapping[str, Any]
    route: Route | None = None
    owner: ActiveClient | None = None
    proxy: dict[int, int] = dataclasses.field(default_factory=dict)
    orphaned: bool = False
    #: Its client is silent: the bridge stays, its traffic goes back to the workload meanwhile.
    suspended: bool = False
    #: Its client is still steering its ports: no route yet, its target is prepared meanwhile.
    unsteered: bool = False

    @property
    def claim(self) -> PortClaim | None:
        if self.route is None:
            return None
        return PortClaim(self.route.bridge, self.route.container, frozenset(f.port for f in self.route.forwards),
                         self.route.personal)


class Bridges:
    """Reconciles the GefyraBridge objects through the interceptors and the tunnel's server end."""

    def __init__(self, cluster: Cluster, namespace: str, orchestrator: Orchestrator, server: TunnelServer,
                 server_ip: str, notify: Callable[[], None]) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.orchestrator = orchestrator
        self.server = server
        self.server_ip = server_ip
        #: True after a round in which some bridge was on its way (the next round comes sooner).
        self.busy = False
        #: The namespaces of the bridges' targets (and gefyra's, where interceptors may run pods of
        #: their own): pod changes there wake the next round.
        self.namespaces: set[str] = set()
        self._notify = notify
        #: Interceptors by their own names (one object each: they may keep state, such as what
        #: their parts in the pods were told), and by the name bridges give (None: the default one;
        #: the CRD fills in "nginx", which is the same interceptor).
        self._interceptors: dict[str, Interceptor] = {}
        self._named: dict[str | None, Interceptor] = {}
        #: The server end's forwards of each target, as its last good round made them.
        self._rules: dict[Target, list[ServerForward]] = {}
        #: Targets that failed: (failures in a row, not before this time.monotonic()).
        self._failures: dict[Target, tuple[int, float]] = {}

    def interceptors(self) -> list[Interceptor]:
        return list(self._interceptors.values())

    def _path(self, name: str, subresource: str = "") -> str:
        return path(BRIDGES, self.namespace, name, subresource)

    async def _set_status(self, member: _Member, **changes: object) -> None:
        """Patches the status fields that differ from what the object has."""
        wanted = dataclasses.replace(member.status, **changes)  # type: ignore[arg-type]
        patch = status_patch(member.status_json, wanted)
        if patch:
            await self.cluster.request("PATCH", self._path(member.bridge.name, "status"), patch, content_type=MERGE_PATCH)
        member.status, member.status_json = wanted, wanted.to_json()

    async def sync(self, clients: Roster) -> None:
        """One round (see the module)."""
        found = [parse_bridge(b) for b in await self.cluster.objects(path(BRIDGES, self.namespace))]
        bridges = sorted(found, key=lambda b: (b.created, b.name))
        targets, interceptors, held, failed, coming = await self._group(bridges, clients)
        self.namespaces = {t.namespace for t in targets} | {GEFYRA_NAMESPACE}
        await self._prepare_targets({t: c for t, c in coming.items() if t not in targets})
        rules, busy = await self._reconcile_targets(targets, interceptors, held)
        self.busy = busy or failed
        await self.server.forward(rules)
        await self._give_back_orphans(targets.keys() | held | coming.keys())

    async def _group(self, bridges: list[GefyraBridge], clients: Roster
                     ) -> tuple[dict[Target, list[_Member]], dict[Target, Interceptor], set[Target], bool,
                                dict[Target, tuple[Interceptor, bool]]]:
        """Phase 1: the bridges checked and grouped by target, with the interceptor of each target,
        the targets held back this round (one of their bridges failed for a reason that may pass,
        an API error, and without it their routes would look removed), whether any failed so, and
        the targets of bridges whose clients are still steering (with the interceptor, and whether
        in place)."""
        used = {p for b in bridges for p in b.status.proxy_ports.values()}
        targets: dict[Target, list[_Member]] = {}
        interceptors: dict[Target, Interceptor] = {}
        held: set[Target] = set()
        coming: dict[Target, tuple[Interceptor, bool]] = {}
        failed = False
        workloads: dict[Target, Workload] = {}  # read once a round, however many bridges name one
        for bridge in bridges:
            member = _Member(bridge, bridge.status, bridge.status_json)
            try:
                if not await self._prepare(member, clients, used, workloads):
                    if member.unsteered and bridge.spec.target is not None:
                        coming.setdefault(bridge.spec.target.workload,
                                          (self._interceptor(bridge.spec.interceptor), bridge.spec.in_place))
                    continue  # gone without a trace, or waiting for its client to steer
                assert bridge.spec.target is not None  # _prepare checked it
                target = bridge.spec.target.workload
                interceptor = self._interceptor(bridge.spec.interceptor)
                chosen = interceptors.setdefault(target, interceptor)
                claim = member.claim
                if claim is not None and chosen is not interceptor:
                    raise InvalidBridge(f"{target} is bridged with the interceptor {chosen.name} already")
                if claim is not None:
                    problem = conflict(claim, [c for m in targets.get(target, []) if (c := m.claim) is not None])
                    if problem:
                        raise InvalidBridge(problem)
                targets.setdefault(target, []).append(member)
            except InvalidBridge as exc:
                await self._invalid(member, str(exc))
            except Exception as exc:  # noqa: BLE001 - one bridge must not stop the others
                log.warning("bridge failed; retrying", bridge=bridge.name, error=f"{type(exc).__name__}: {exc}")
                failed = True
                if bridge.spec.target is not None:
                    held.add(bridge.spec.target.workload)
        return targets, interceptors, held, failed, coming

    async def _prepare_targets(self, coming: dict[Target, tuple[Interceptor, bool]]) -> None:
        """Phase 1b: the targets that only bridges on their way name (none of their bridges has a
        route yet): their interceptors start what takes long, while the clients steer."""
        for target, (interceptor, in_place) in sorted(coming.items(), key=lambda item: str(item[0])):
            try:
                with anyio.fail_after(TARGET_TIMEOUT):
                    await interceptor.prepare(self.cluster, target, in_place)
            except Exception as exc:  # noqa: BLE001 - the bridge's own round makes it later all the same
                log.warning("target not prepared ahead of its bridge", target=str(target),
                            error=f"{type(exc).__name__}: {exc}")

    async def _reconcile_targets(self, targets: dict[Target, list[_Member]], interceptors: dict[Target, Interceptor],
                                 held: set[Target]) -> tuple[list[ServerForward], bool]:
        """Phase 2: each target through its interceptor, unless it is held back or backing off
        after failures (then what carried its traffic keeps doing so). Returns the server end's
        forwards and whether some bridge is still on its way."""
        rules: list[ServerForward] = []
        busy = False
        now = time.monotonic()
        for target in sorted(targets.keys() | held, key=str):
            failures, not_before = self._failures.get(target, (0, 0.0))
            if target in held or target not in targets or now < not_before:
                busy = True
                rules.extend(self._rules.get(target, []))
                continue
            try:
                with anyio.fail_after(TARGET_TIMEOUT):
                    done, self._rules[target] = await self._reconcile_target(interceptors[target], target,
                                                                             targets[target])
                self._failures.pop(target, None)
                busy = busy or not done
            except Exception as exc:  # noqa: BLE001 - one target must not stop the others
                busy = True
                self._failures[target] = (failures + 1, now + backoff(failures + 1))
                log.warning("target failed; retrying", target=str(target), error=f"{type(exc).__name__}: {exc}",
                            retry_in=backoff(failures + 1))
            rules.extend(self._rules.get(target, []))
        self._rules = {t: r for t, r in self._rules.items() if t in targets or t in held}
        return rules, busy

    async def _give_back_orphans(self, named: set[Target]) -> None:
        """Phase 3: what interceptors still hold of targets that no bridge names (removed while the
        operator was away, or by a client that had to give the target back itself) is given back."""
        self._interceptor(None)  # the default one looks even when no bridge names it
        for interceptor in self.interceptors():
            try:
                with anyio.fail_after(TARGET_TIMEOUT):
                    for target in await interceptor.held(self.cluster):
                        if target not in named:
                            log.info("giving back a target no bridge names", target=str(target))
                            await interceptor.intercept(self.cluster, target, [])
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("giving back failed; retrying", interceptor=interceptor.name,
                            error=f"{type(exc).__name__}: {exc}")

    async def _invalid(self, member: _Member, reason: str) -> None:
        conditions = with_condition(member.status.conditions, INVALID, True, "TargetRefused", reason)
        conditions = with_condition(conditions, READY, False, "Invalid", reason)
        if member.status.phase != "Invalid" or member.status.message != reason:
            log.warning("bridge invalid", bridge=member.bridge.name, reason=reason)
        await self._set_status(member, phase="Invalid", message=reason, conditions=conditions)

    def _interceptor(self, name: str | None) -> Interceptor:
        if name not in self._named:
            try:
                found = self.orchestrator.interceptor(name)
            except errors.GefyraError as exc:
                raise InvalidBridge(f"no plugin in the operator provides the interceptor {name!r}") from exc
            interceptor = self._interceptors.setdefault(found.name, found)
            interceptor.notify = self._notify
            self._named[name] = interceptor
        return self._named[name]

    async def _prepare(self, member: _Member, clients: Roster, used: set[int], workloads: dict[Target, Workload]
                       ) -> bool:
        """Checks the bridge and gives ``member`` its route (none while it retires or its client is
        silent). Whether it takes part in its target this round: not a retiring bridge that never
        got as far as its target (its finalizer is removed here), nor one whose client has not
        steered its ports yet (its traffic would find no way to the local container: the route
        waits for that)."""
        bridge = member.bridge
        spec = bridge.spec
        owner = clients.active.get(spec.client)
        if not bridge.deleting and spec.client in clients.silent and spec.target is not None:
            member.suspended = True  # no route: the workload answers until its client speaks again
            return bool(bridge.finalizers)  # one that never took its target over waits as it is
        if bridge.deleting or owner is None:
            member.orphaned = owner is None
            try:
                if spec.target is None:
                    raise InvalidBridge(bridge.problem or "")
                self._interceptor(spec.interceptor)
            except InvalidBridge:
                await self._let_go(member)  # it never took anything over
                return False
            return True
        # No owner: an admin made it (the ownership policy admits that from nobody else).
        if spec.owner and spec.owner != owner.owner:
            raise InvalidBridge(f"client {spec.client} belongs to {owner.owner or 'an admin'}, not to {spec.owner}")
        interceptor = self._interceptor(spec.interceptor)
        if bridge.problem or spec.target is None:
            raise InvalidBridge(bridge.problem or "spec.target is missing")
        await self._check_target(bridge, interceptor, workloads)
        if bridge.unsteered_for() > STEER_BOUND:
            log.info("bridge never steered by its client; removing it", bridge=bridge.name, bound=STEER_BOUND)
            await self.cluster.delete(self._path(bridge.name), foreground=False)
            return True  # retiring: the next round sees it being deleted
        if BRIDGE_FINALIZER not in bridge.finalizers:
            await self.cluster.patch(self._path(bridge.name), {"metadata": {"finalizers": [BRIDGE_FINALIZER]}})
        proxy = bridge.proxy_ports()
        if not proxy:
            proxy = {p: _allocate(used) for p in spec.remote_ports}
            await self._set_status(member, proxy_ports=proxy, phase="Pending")
        if not bridge.steered:
            member.unsteered = True
            return False  # the client steers the ports it was given, then says so: then the route
        forwards = tuple(Forward(remote, self.server_ip, port) for remote, port in sorted(proxy.items()))
        material = await self._tls(bridge) if spec.tls_secret else None
        member.route = Route(bridge.name, spec.target.container, forwards, spec.matches, spec.in_place, spec.mirror,
                             spec.protocol, material)
        member.owner, member.proxy = owner, proxy
        return True

    async def _tls(self, bridge: GefyraBridge) -> TlsMaterial:
        """The certificate that the bridge brought along (spec.tls.secret), checked again: read back
        from the cluster, it must be the copy that this bridge's owner made for it."""
        spec = bridge.spec
        where = f"its certificate's Secret {GEFYRA_NAMESPACE}/{spec.tls_secret}"
        try:
            secret = await self.cluster.request("GET", path("secrets", GEFYRA_NAMESPACE, spec.tls_secret))
        except errors.NotFoundError as exc:
            raise InvalidBridge(f"{where} does not exist") from exc
        except errors.ForbiddenError as exc:
            raise InvalidBridge(f"the operator may not read {where}: install gefyra's current manifests") from exc
        wrong = tls.owned_copy_problem(secret, bridge.uid, spec.owner)
        try:
            certificate, key, trusted = tls.from_secret(secret, where)
        except ValueError as exc:
            raise InvalidBridge(str(exc)) from exc
        wrong = wrong or tls.problem(certificate, key, trusted, spec.tls_verify)
        if wrong:
            raise InvalidBridge(f"{where} cannot be used: {wrong}")
        metadata = secret.get("metadata") or {}
        return TlsMaterial(certificate, key, trusted, spec.tls_verify,
                           version=f"{metadata.get('uid', '')}/{metadata.get('resourceVersion', '')}")

    async def _check_target(self, bridge: GefyraBridge, interceptor: Interceptor, workloads: dict[Target, Workload]
                            ) -> None:
        """The target exists, has the container, which declares the ports, and the interceptor
        takes it; InvalidBridge if not. ``workloads``: those read this round."""
        target = bridge.spec.target
        assert target is not None
        workload = workloads.get(target.workload)
        if workload is None:
            try:
                workload = await read_workload(self.cluster, target.namespace, target.kind, target.name)
            except errors.NotFoundError as exc:
                raise InvalidBridge(f"{target.kind} {target.name} does not exist in namespace {target.namespace}") from exc
            workloads[target.workload] = workload
        template = workload.container(target.container)
        if template is None:
            raise InvalidBridge(f"{target.kind}/{target.name} has no container {target.container!r} "
                                f"(its containers: {', '.join(c.name for c in workload.containers)})")
        ports = list(bridge.spec.remote_ports)
        reason = template.undeclared(ports) or interceptor.validate(template, ports, bridge.spec.matches,
                                                                    bridge.spec.in_place)
        if reason:
            raise InvalidBridge(reason)

    async def _reconcile_target(self, interceptor: Interceptor, target: Target, members: list[_Member]
                                ) -> tuple[bool, list[ServerForward]]:
        """The target's routes through its interceptor; (whether every bridge of it is where it
        should be: Ready, or gone; the server end's forwards for it)."""
        rules: list[ServerForward] = []
        active = [m for m in members if m.route is not None]
        while True:
            try:
                interception = await interceptor.intercept(self.cluster, target, [m.route for m in active if m.route])
                break
            except InvalidRoute as exc:
                refused = next((m for m in active if m.route and m.route.bridge == exc.bridge), None)
                if refused is None:
                    raise RuntimeError(f"the interceptor refused a route it was not given: {exc.bridge}") from exc
                await self._invalid(refused, str(exc))
                active.remove(refused)
        done = interception.settled
        for member in active:
            assert member.route is not None and member.owner is not None
            state = interception.routes.get(member.route.bridge, RouteState(ready=False))
            rules.extend(ServerForward(port, member.owner.address, state.sources) for port in member.proxy.values())
            await self._report(member, state)
            done = done and state.ready
        before = {rule.port: rule for rule in self._rules.get(target, [])}
        for member in members:
            if member.suspended:
                await self._suspend(member, interception.settled)
            elif member.route is None:
                retired = await self._retire(member, interception.settled)
                done = retired and done
                if not retired:  # its traffic may come through the interceptor until it settles
                    rules.extend(before[port] for port in member.bridge.proxy_ports().values() if port in before)
        return done, rules

    async def _suspend(self, member: _Member, settled: bool) -> None:
        """Its client is silent: the target answers in its place (Pending until the interceptor has
        given the traffic back, then Suspended)."""
        conditions = with_condition(member.status.conditions, READY, False, CLIENT_SILENT,
                                    "its client is silent: the workload answers until it speaks again")
        await self._set_status(member, phase="Suspended" if settled else "Pending", conditions=conditions)

    async def _report(self, member: _Member, state: RouteState) -> None:
        conditions = with_condition(member.status.conditions, INVALID, False, "TargetAccepted")
        reason = "Forwarding" if state.ready else FAILING if state.failure else "TakingOver"
        conditions = with_condition(conditions, READY, state.ready, reason, state.failure or state.message)
        await self._set_status(member, pods=state.pods, pod_namespace=state.namespace, services=state.services,
                               mode=state.mode, phase="Active" if state.ready else "Pending", message="",
                               conditions=conditions)

    async def _retire(self, member: _Member, settled: bool) -> bool:
        """Restoring until the interceptor has undone the bridge, then Restored and let go. True when done."""
        if member.bridge.finalizers:
            conditions = with_condition(member.status.conditions, RESTORING, True,
                                        "Unbridged" if not member.orphaned else "ClientGone")
            if not settled:
                await self._set_status(member, phase="Restoring", conditions=conditions)
                return False
            conditions = with_condition(conditions, RESTORED, True, "Restored", "the workload is as it was before")
            await self._set_status(member, phase="Restored", conditions=conditions)
        await self._let_go(member)
        return True

    async def _let_go(self, member: _Member) -> None:
        bridge = member.bridge
        if bridge.finalizers:
            await self.cluster.patch(self._path(bridge.name), {"metadata": {"finalizers": None}})
        if member.orphaned and not bridge.deleting:
            log.info("client gone; removing its bridge", bridge=bridge.name)
            await self.cluster.delete(self._path(bridge.name), foreground=False)
