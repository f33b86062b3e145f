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

from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.routing import Interception, Match, Route, Target
from gefyra.core.model.workload import Container


@dataclasses.dataclass(frozen=True)
class HttpRequest:
    """A request to the operator's HTTP server, from the interceptor's part in a pod."""

    #: The caller's IP address: its pod's (the interceptor answers each pod only about itself).
    peer: str
    query: Mapping[str, str]
    #: The bearer token the caller sent (``Authorization``), "" if none: a pod's proof of which pod
    #: it is, where its address does not say it yet. Never logged.
    token: str = dataclasses.field(default="", repr=False)


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header ("" for any other)."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@dataclasses.dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes = b""


HttpHandler = Callable[[HttpRequest], Awaitable[HttpAnswer]]


class InvalidRoute(Exception):
    """A route cannot be carried out on its target as it is (the message says why, for the bridge's
    Invalid condition); raised by :meth:`Interceptor.intercept`, which then changed nothing for it."""

    def __init__(self, bridge: str, reason: str) -> None:
        super().__init__(reason)
        self.bridge = bridge


def _nothing() -> None:
    return None


class Interceptor(abc.ABC):
    """An interceptor backend. The operator makes one object per name and keeps it (it may keep
    state, such as what its parts in the pods were told); it reaches the cluster through the
    :class:`~gefyra.core.kube.cluster.Cluster` it is handed, whose errors are gefyra's."""

    #: The name a GefyraBridge gives in ``spec.interceptor``.
    name: str = "?"
    #: Set by the operator: call it when something a reconcile round acts on has changed (for
    #: instance, the interceptor in a pod reports its configuration applied), so that the next
    #: round comes at once.
    notify: Callable[[], None] = staticmethod(_nothing)

    def images(self) -> Sequence[str]:
        """The images this interceptor runs in the cluster (`gefyra check` asks their registry)."""
        return ()

    def http_paths(self) -> Mapping[str, HttpHandler]:
        """Paths of the operator's HTTP server (port 8080, Service ``gefyra-operator``) that this
        interceptor answers. Its parts in the pods fetch their configuration there, so the operator
        needs no right to exec into pods (and no pod needs a token)."""
        return {}

    async def held(self, cluster: Cluster) -> list[Target]:
        """The targets this interceptor still holds something of, whatever bridges exist: the
        operator gives back those that no bridge names any more (a bridge removed while the
        operator was down). None known: []."""
        return []

    async def prepare(self, cluster: Cluster, target: Target, in_place: bool = False) -> None:
        """A bridge of ``target`` is on its way (its client is still setting up its end of it):
        start what takes long to become ready (a router's pods), carrying no traffic yet, so that
        the bridge's first :meth:`intercept` finds it running. What is held for a target that no
        bridge takes after all is given back through :meth:`held`. Default: nothing."""
        return None

    @abc.abstractmethod
    def validate(self, container: Container, ports: Sequence[int], matches: Sequence[Match],
                 in_place: bool = False) -> str | None:
        """None if this interceptor can bridge ``ports`` of ``container`` with these conditions
        (none: a global bridge), in place if asked (:attr:`Route.in_place`); otherwise the reason,
        one sentence for the user."""

    @abc.abstractmethod
    async def intercept(self, cluster: Cluster, target: Target, routes: Sequence[Route]) -> Interception:
        """Makes exactly ``routes`` true on ``target``, as far as it can in one go, and says how far
        that is. Level-based: called again (every round, and after any change) until everything is
        ready and settled, and again after that; a call that finds everything in place changes
        nothing. Routes that were given before and are missing now are taken back; with no routes
        the workload is given back exactly as it was. Raises :class:`InvalidRoute` for a route it
        cannot carry out on this target (the operator leaves that route out and calls again)."""
