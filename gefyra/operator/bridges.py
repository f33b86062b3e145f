"""Bridges follow the GefyraBridge objects. Each round:

- every bridge is checked on its own: its spec (read back from the cluster: untrusted), its
  client and owner, its target (the workload, the container, its declared ports, the
  interceptor's own rules, its conditions), and the other bridges on the same container (a global
  bridge shares a port with no other bridge); if not, it gets condition Invalid with the reason;
- its ports get stowaway ports (status.proxyPorts), which the tunnel's server end forwards to the
  client's tunnel address, for connections from the addresses the interceptor names;
- the bridges of one target workload go to its interceptor together, as routes (in the order they
  were made: the first personal bridge whose conditions match takes a request); the interceptor
  reports each route's state (condition Ready) and whether routes that are gone are undone;
- a bridge that is being deleted, or whose client is gone, is Restoring until the interceptor has
  undone it (Restored); only then does it lose its finalizer.

One target's or one bridge's failure is logged and retried in the next round; the others go on.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from kubernetes_asyncio import client

from gefyra import errors
from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.kube import cluster as kube
from gefyra.core.kube.workloads import pod_spec_and_selector, undeclared_port
from gefyra.core.model import validation
from gefyra.core.model.names import (
    ANNOTATION_STEERED,
    BRIDGE_FINALIZER,
    BRIDGES,
    CRD_GROUP,
    CRD_VERSION,
    GEFYRA_NAMESPACE,
    INVALID,
    PROTECTED_NAMESPACES,
    PROXY_PORTS,
    READY,
    RESTORED,
    RESTORING,
    STEER_BOUND,
)
from gefyra.core.model.routing import Forward, Match, Route, RouteState, Target
from gefyra.core.model.validation import WORKLOAD_ALIASES
from gefyra.core.spi.interceptor import Interceptor, InvalidRoute
from gefyra.core.spi.tunnel import ServerForward, TunnelServer
from gefyra.operator.clients import ActiveClient
from gefyra.operator.retry import backoff

log = structlog.get_logger("gefyra.operator")

#: Seconds one target's reconciliation may take in a round.
TARGET_TIMEOUT = 30.0


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


def _target_of(bridge: dict[str, Any]) -> Target | None:
    """The bridge's target workload, or None if its spec does not name one properly."""
    try:
        found = _target(bridge.get("spec") or {})
    except InvalidBridge:
        return None
    return Target(found["namespace"], found["kind"], found["name"])


def _unsteered_for(bridge: dict[str, Any]) -> float:
    """Seconds since the bridge was made, while its client has not said that it steers it (0 once
    it has)."""
    metadata = bridge["metadata"]
    if (metadata.get("annotations") or {}).get(ANNOTATION_STEERED):
        return 0.0
    try:
        made = datetime.datetime.fromisoformat(str(metadata.get("creationTimestamp")).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (datetime.datetime.now(datetime.UTC) - made).total_seconds()


def _matches(spec: dict[str, Any]) -> tuple[Match, ...]:
    """spec.match, checked: a personal bridge's conditions (none: a global bridge)."""
    found = spec.get("match") or []
    if not isinstance(found, list) or len(found) > validation.MAX_MATCHES:
        raise InvalidBridge(f"spec.match is not a list of at most {validation.MAX_MATCHES} conditions")
    matches = []
    for item in found:
        item = item if isinstance(item, dict) else {}
        kind, header, value = item.get("kind"), item.get("header", ""), item.get("value")
        problem = validation.match_problem(kind, header, value)
        if problem:
            raise InvalidBridge(f"spec.match: {problem}")
        matches.append(Match(str(kind), str(value), str(header)))
    return tuple(matches)


@dataclasses.dataclass
class _Member:
    """A bridge of a target: with its route while it should exist, without while it is retiring."""

    bridge: dict[str, Any]
    route: Route | None = None
    owner: ActiveClient | None = None
    proxy: dict[int, int] = dataclasses.field(default_factory=dict)
    orphaned: bool = False


def _conflict(route: Route, earlier: list[Route]) -> str | None:
    """Why ``route`` cannot share its container's ports with the bridges made before it."""
    for other in earlier:
        shared = {f.port for f in route.forwards} & {f.port for f in other.forwards}
        if other.container != route.container or not shared:
            continue
        port = min(shared)
        if not other.matches:
            return f"port {port} of container {route.container} is bridged globally by {other.bridge}"
        if not route.matches:
            return (f"port {port} of container {route.container} has personal bridges ({other.bridge}); "
                    "a global bridge would take their requests")
    return None


class Bridges:
    def __init__(self, api: client.ApiClient, namespace: str, orchestrator: Orchestrator, server: TunnelServer,
                 stowaway_ip: str, notify: Callable[[], None]) -> None:
        self.api = api
        self.namespace = namespace
        self.orchestrator = orchestrator
        self.server = server
        self.stowaway_ip = stowaway_ip
        self.custom = client.CustomObjectsApi(api)
        #: True after a round in which some bridge was on its way (the next round comes sooner).
        self.busy = False
        #: The namespaces of the bridges' targets (and gefyra's, where interceptors may run pods of
        #: their own): pod changes there wake the next round.
        self.namespaces: set[str] = set()
        self._notify = notify
        #: Interceptors by the name bridges give (one object each: they may keep state, such as
        #: what their parts in the pods were told).
        self._interceptors: dict[str | None, Interceptor] = {}
        #: The server end's forwards of each target, as its last good round made them.
        self._rules: dict[Target, list[ServerForward]] = {}
        #: Targets that failed: (failures in a row, not before this time.monotonic()).
        self._failures: dict[Target, tuple[int, float]] = {}

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
        bridges = sorted(listing["items"], key=lambda b: (b["metadata"].get("creationTimestamp", ""),
                                                          b["metadata"]["name"]))
        used = {p for b in bridges for p in _proxy_ports(b, None).values()}
        busy = False
        targets: dict[Target, list[_Member]] = {}
        interceptors: dict[Target, Interceptor] = {}
        #: Targets with a bridge that failed for a reason that may pass (an API error): without that
        #: bridge its routes would look removed, so the target waits for a round that reads it all.
        held: set[Target] = set()
        for bridge in bridges:
            name = bridge["metadata"]["name"]
            try:
                member = await self._prepare(bridge, clients, used)
                if member is None:
                    continue  # nothing of it was ever made, and it is gone now
                target = _target_of(bridge)
                assert target is not None  # _prepare checked it
                interceptor = self._interceptor(bridge["spec"])
                chosen = interceptors.setdefault(target, interceptor)
                if member.route is not None and chosen is not interceptor:
                    raise InvalidBridge(f"{target} is bridged with the interceptor {chosen.name} already")
                if member.route is not None:
                    problem = _conflict(member.route, [m.route for m in targets.get(target, []) if m.route])
                    if problem:
                        raise InvalidBridge(problem)
                targets.setdefault(target, []).append(member)
            except InvalidBridge as exc:
                await self._invalid(bridge, str(exc))
            except Exception as exc:  # noqa: BLE001 - one bridge must not stop the others
                busy = True
                log.warning("bridge failed; retrying", bridge=name, error=f"{type(exc).__name__}: {exc}")
                held |= {t for t in [_target_of(bridge)] if t is not None}
        self.namespaces = {t.namespace for t in targets} | {GEFYRA_NAMESPACE}
        rules: list[ServerForward] = []
        now = time.monotonic()
        for target in sorted(targets.keys() | held, key=str):
            failures, not_before = self._failures.get(target, (0, 0.0))
            if target in held or target not in targets or now < not_before:
                busy = True
                rules.extend(self._rules.get(target, []))  # what carried its traffic keeps doing so
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
        self.busy = busy
        await self.server.forward(rules)
        await self._give_back_orphans(targets.keys() | held)

    async def _give_back_orphans(self, named: set[Target]) -> None:
        """What interceptors still hold of targets that no bridge names (removed while the operator
        was away, or by a client that had to give the target back itself) is given back."""
        self._interceptor({})  # the default one looks even when no bridge names it
        for interceptor in self.interceptors():
            try:
                with anyio.fail_after(TARGET_TIMEOUT):
                    for target in await interceptor.held(self.api):
                        if target not in named:
                            log.info("giving back a target no bridge names", target=str(target))
                            await interceptor.intercept(self.api, target, [])
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("giving back failed; retrying", interceptor=interceptor.name,
                            error=f"{type(exc).__name__}: {exc}")

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

    async def _prepare(self, bridge: dict[str, Any], clients: dict[str, ActiveClient], used: set[int]) -> _Member | None:
        """The bridge checked, with its route (or without, while it retires); None for a retiring
        bridge that never got as far as its target (its finalizer is removed here)."""
        name, spec = bridge["metadata"]["name"], bridge.get("spec") or {}
        owner = clients.get(spec.get("client", ""))
        if bridge["metadata"].get("deletionTimestamp") or owner is None:
            try:
                _target(spec)
                self._interceptor(spec)
            except InvalidBridge:
                await self._let_go(bridge, orphaned=owner is None)  # it never took anything over
                return None
            return _Member(bridge, orphaned=owner is None)
        # No owner: an admin made it (the ownership policy admits that from nobody else).
        if spec.get("owner") and spec["owner"] != owner.owner:
            raise InvalidBridge(f"client {spec.get('client')} belongs to {owner.owner or 'an admin'}, "
                                f"not to {spec['owner']}")
        interceptor = self._interceptor(spec)
        target = _target(spec)
        ports = _ports(spec)
        matches = _matches(spec)
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
        reason = undeclared_port(template, ports) or interceptor.validate(template, ports, matches)
        if reason:
            raise InvalidBridge(reason)
        if _unsteered_for(bridge) > STEER_BOUND:
            log.info("bridge never steered by its client; removing it", bridge=name, bound=STEER_BOUND)
            await self.custom.delete_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.namespace, BRIDGES, name)
            return _Member(bridge)  # retiring: the next round sees it being deleted

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
        forwards = tuple(Forward(remote, self.stowaway_ip, port) for remote, port in sorted(proxy.items()))
        return _Member(bridge, Route(name, target["container"], forwards, matches), owner, proxy)

    async def _reconcile_target(self, interceptor: Interceptor, target: Target, members: list[_Member]
                                ) -> tuple[bool, list[ServerForward]]:
        """The target's routes through its interceptor; (whether every bridge of it is where it
        should be: Ready, or gone; the server end's forwards for it)."""
        rules: list[ServerForward] = []
        active = [m for m in members if m.route is not None]
        while True:
            try:
                interception = await interceptor.intercept(self.api, target, [m.route for m in active if m.route])
                break
            except InvalidRoute as exc:
                refused = next((m for m in active if m.route and m.route.bridge == exc.bridge), None)
                if refused is None:
                    raise RuntimeError(f"the interceptor refused a route it was not given: {exc.bridge}") from exc
                await self._invalid(refused.bridge, str(exc))
                active.remove(refused)
        done = interception.settled
        for member in active:
            assert member.route is not None and member.owner is not None
            state = interception.routes.get(member.route.bridge, RouteState(ready=False))
            rules.extend(ServerForward(port, member.owner.address, state.sources) for port in member.proxy.values())
            await self._report(member.bridge, state)
            done = done and state.ready
        for member in members:
            if member.route is None:
                done = await self._retire(member.bridge, interception.settled, orphaned=member.orphaned) and done
        return done, rules

    async def _report(self, bridge: dict[str, Any], state: RouteState) -> None:
        conditions = (bridge.get("status") or {}).get("conditions") or []
        conditions = conditions_with(conditions, INVALID, False, "TargetAccepted")
        conditions = conditions_with(conditions, READY, state.ready, "Forwarding" if state.ready else "TakingOver",
                                     state.message)
        await self._set_status(bridge, pods=list(state.pods), podNamespace=state.namespace, services=list(state.services),
                               mode=state.mode, phase="Active" if state.ready else "Pending", message="",
                               conditions=conditions)

    async def _retire(self, bridge: dict[str, Any], settled: bool, *, orphaned: bool) -> bool:
        """Restoring until the interceptor has undone the bridge, then Restored and let go. True when done."""
        if bridge["metadata"].get("finalizers"):
            conditions = conditions_with((bridge.get("status") or {}).get("conditions") or [], RESTORING, True,
                                         "Unbridged" if not orphaned else "ClientGone")
            if not settled:
                await self._set_status(bridge, phase="Restoring", conditions=conditions)
                return False
            conditions = conditions_with(conditions, RESTORED, True, "Restored", "the workload is as it was before")
            await self._set_status(bridge, phase="Restored", conditions=conditions)
        await self._let_go(bridge, orphaned=orphaned)
        return True

    async def _let_go(self, bridge: dict[str, Any], *, orphaned: bool) -> None:
        name = bridge["metadata"]["name"]
        if bridge["metadata"].get("finalizers"):
            await self._patch(name, {"metadata": {"finalizers": None}})
        if orphaned and not bridge["metadata"].get("deletionTimestamp"):
            log.info("client gone; removing its bridge", bridge=name)
            await self.custom.delete_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.namespace, BRIDGES, name)
