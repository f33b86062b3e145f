"""The routing types of bridges: a personal bridge's conditions, the target workload, and the
routes that the operator hands an interceptor (one per bridge) with the states it reports back.
Shared by the client, the operator and the interceptor plugins."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from gefyra.core.model.tls import TlsMaterial

#: The kinds of a personal bridge's conditions: a header's value or the request's path, compared
#: exactly, by prefix, or with a regular expression (the CLI's ``--match-KIND``).
MATCH_KINDS: Final = ("header-exact", "header-prefix", "header-regex", "path-exact", "path-prefix", "path-regex")


#: How a workload speaks HTTP on a port, as a bridge may say (``--protocol``): HTTP/1.x, or
#: cleartext HTTP/2 (h2c, and gRPC over it). Without one, the Service port's says.
PROTOCOLS: Final = ("http", "h2c", "grpc")


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
    #: A global bridge that also takes connections to the target pods' own addresses, which needs
    #: the pods changed (their containers restart); else only what reaches the workload's
    #: Services is taken, and no pod is touched.
    in_place: bool = False
    #: A read-only copy: the requests that match (all of them, without conditions) are answered
    #: by the workload as before, and a copy of each goes to ``forwards``, whose answers go nowhere.
    mirror: bool = False
    #: How the workload speaks on the bridged ports (one of PROTOCOLS), "" for what its Services say.
    protocol: str = ""
    #: HTTPS ports: the interceptor ends TLS with this and speaks TLS on to both sides.
    tls: TlsMaterial | None = None

    @property
    def personal(self) -> bool:
        """It takes or copies HTTP requests, sharing its ports with other such routes (a global
        route takes its ports alone)."""
        return bool(self.matches) or self.mirror


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
    #: Why it cannot become ready by waiting ("" while it may), e.g. the interceptor's pods cannot
    #: pull their image: the operator reports it, and the client stops waiting.
    failure: str = ""


@dataclasses.dataclass(frozen=True)
class Interception:
    """The outcome of one :meth:`Interceptor.intercept` call."""

    #: By bridge name, for every route that was asked for.
    routes: Mapping[str, RouteState]
    #: Nothing is left of routes that are no longer asked for: their traffic goes where it went
    #: before they existed. With no routes asked for: the workload is exactly as before.
    settled: bool
