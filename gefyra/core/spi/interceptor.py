"""The interceptor backend interface: what sends a bridged workload's traffic to the tunnel's server
end, from where it reaches the client.

A bridge is global (every connection to its ports goes to one developer) or personal (only the
HTTP requests that match its :class:`Match` conditions do; the rest stay with the workload's own
code). The operator groups the bridges by their target workload and hands each group to the
interceptor as :class:`Route` objects, level-based: :meth:`Interceptor.intercept` is called again
and again with the routes that should exist now (an empty list: give the workload back) and
reports how far it got. The client calls :meth:`Interceptor.validate` to fail fast. Chosen by the
``gefyra_interceptor`` hook, by the name a GefyraBridge gives in ``spec.interceptor``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from kubernetes_asyncio import client

#: The kinds of a personal bridge's conditions: a header's value or the request's path, compared
#: exactly, by prefix, or with a regular expression (the CLI's ``--match-KIND``).
MATCH_KINDS: Final = ("header-exact", "header-prefix", "header-regex", "path-exact", "path-prefix", "path-regex")


#: Where an interceptor stands in for a workload's Services (:attr:`RouteState.services`) with a
#: personal route, it answers an HTTP request that carries this header itself (no application sees
#: it), with PROBE_ANSWER in its response headers: the client proves with it that the Services lead
#: to the interceptor.
PROBE_HEADER: Final = "X-Gefyra-Probe"
PROBE_ANSWER: Final = "X-Gefyra-Router"


@dataclasses.dataclass(frozen=True)
class Match:
    """One condition of a personal bridge; a request goes to the bridge when all of them hold."""

    #: One of :data:`MATCH_KINDS`.
    kind: str
    value: str
    #: The header's name for the ``header-*`` kinds, "" for the ``path-*`` kinds.
    header: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.header}:{self.value}" if self.header else f"{self.kind} {self.value}"


@dataclasses.dataclass(frozen=True)
class Forward:
    """Connections to the bridged container's ``port`` go to ``host``:``host_port``."""

    port: int
    host: str
    host_port: int


@dataclasses.dataclass(frozen=True)
class Target:
    """A workload whose traffic bridges take: ``kind`` is deployment, statefulset or pod."""

    namespace: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} in namespace {self.namespace}"


@dataclasses.dataclass(frozen=True)
class Route:
    """One bridge, as the interceptor carries it out."""

    bridge: str
    container: str
    #: One per bridged port of ``container``, to the tunnel's server end.
    forwards: tuple[Forward, ...]
    #: Empty: a global bridge. Else a personal one: only HTTP requests that match all of them.
    matches: tuple[Match, ...] = ()


@dataclasses.dataclass(frozen=True)
class RouteState:
    """How far one route is."""

    #: Every part of the interceptor that should carry the route does, and the workload's
    #: Services lead to them: traffic for the route reaches the tunnel's server end.
    ready: bool
    #: The pods that carry it: the target's own (``namespace`` is the target's) or the
    #: interceptor's (in another namespace).
    pods: tuple[str, ...] = ()
    namespace: str = ""
    #: The addresses from which its forwarded connections come: the server end admits only these.
    sources: tuple[str, ...] = ()
    #: The Services of the target that lead to the interceptor instead of the target's pods,
    #: where it works on Services (see PROBE_HEADER).
    services: tuple[str, ...] = ()
    #: How it is carried, for people ("in place", "router", ...).
    mode: str = ""
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Interception:
    """The outcome of one :meth:`Interceptor.intercept` call."""

    #: By bridge name, for every route that was asked for.
    routes: Mapping[str, RouteState]
    #: Nothing is left of routes that are no longer asked for: their traffic goes where it went
    #: before they existed. With no routes asked for: the workload is exactly as before.
    settled: bool


@dataclasses.dataclass(frozen=True)
class EndpointRequest:
    """A request to the operator's HTTP endpoint, from the interceptor's part in a pod."""

    #: The caller's IP address: its pod's (the endpoint answers each pod only about itself).
    peer: str
    query: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class EndpointAnswer:
    status: int
    body: bytes = b""


EndpointHandler = Callable[[EndpointRequest], Awaitable[EndpointAnswer]]


class InvalidRoute(Exception):
    """A route cannot be carried out on its target as it is (the message says why, for the bridge's
    Invalid condition); raised by :meth:`Interceptor.intercept`, which then changed nothing for it."""

    def __init__(self, bridge: str, reason: str) -> None:
        super().__init__(reason)
        self.bridge = bridge


def _nothing() -> None:
    return None


class Interceptor(abc.ABC):

    #: The name a GefyraBridge gives in ``spec.interceptor``.
    name: str = "?"
    #: Set by the operator: call it when something a reconcile round acts on has changed (for
    #: instance, the interceptor in a pod reports its configuration applied), so that the next
    #: round comes at once.
    notify: Callable[[], None] = staticmethod(_nothing)

    def endpoints(self) -> Mapping[str, EndpointHandler]:
        """Paths of the operator's HTTP endpoint that this interceptor answers. Its parts in the
        pods fetch their configuration there, so the operator needs no right to exec into pods
        (and no pod needs a token)."""
        return {}

    async def held(self, api: client.ApiClient) -> list[Target]:
        """The targets this interceptor still holds something of, whatever bridges exist: the
        operator gives back those that no bridge names any more (a bridge removed while the
        operator was down). None known: []."""
        return []

    @abc.abstractmethod
    def validate(self, container: client.V1Container, ports: Sequence[int], matches: Sequence[Match]) -> str | None:
        """None if this interceptor can bridge ``ports`` of ``container`` (all declared by it: that
        is checked before) with these conditions (none: a global bridge); otherwise the reason,
        one sentence for the user."""

    @abc.abstractmethod
    async def intercept(self, api: client.ApiClient, target: Target, routes: Sequence[Route]) -> Interception:
        """Makes exactly ``routes`` true on ``target``, as far as it can in one go, and says how far
        that is. Level-based: called again (every round, and after any change) until everything is
        ready and settled, and again after that; a call that finds everything in place changes
        nothing. Routes that were given before and are missing now are taken back; with no routes
        the workload is given back exactly as it was. Raises :class:`InvalidRoute` for a route it
        cannot carry out on this target (the operator leaves that route out and calls again)."""
