"""The interceptor backend interface: what takes a bridged container's place in the cluster's pods
and forwards its ports to the tunnel's server end, from where they reach the client.

The client calls :meth:`Interceptor.validate` to fail fast; the operator calls everything, for each
live pod of a bridge's target, level-based: a method may be called again for a pod that is already
in the wanted state and must then do nothing. Chosen by the ``gefyra_interceptor`` hook, by the
name a GefyraBridge gives in ``spec.interceptor``.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence

from kubernetes_asyncio import client


@dataclasses.dataclass(frozen=True)
class Forward:
    """Connections to the bridged container's ``port`` go to ``host``:``host_port``."""

    port: int
    host: str
    host_port: int


@dataclasses.dataclass(frozen=True)
class EndpointRequest:
    """A request to the operator's HTTP endpoint, from the interceptor's part in a bridged pod."""

    #: The caller's IP address: its pod's (the endpoint answers each pod only about itself).
    peer: str
    query: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class EndpointAnswer:
    status: int
    body: bytes = b""


EndpointHandler = Callable[[EndpointRequest], Awaitable[EndpointAnswer]]


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
        bridged pods fetch their configuration there, so the operator needs no right to exec into
        pods (and no pod needs a token)."""
        return {}

    @abc.abstractmethod
    def validate(self, container: client.V1Container, ports: Sequence[int]) -> str | None:
        """None if this interceptor can take ``container``'s place and forward ``ports`` (container
        ports the bridge asks for, all declared by the container: that is checked before); otherwise
        the reason, one sentence for the user."""

    @abc.abstractmethod
    def bridge_of(self, pod: client.V1Pod, container: str) -> str | None:
        """The name of the bridge whose interceptor took ``container`` of ``pod`` over, or None."""

    @abc.abstractmethod
    def is_active(self, pod: client.V1Pod, container: str) -> bool:
        """True when the *running* container (not only the pod's spec) is the interceptor. Not from
        the image name in the pod's status: a node that has one image under two tags reports either."""

    @abc.abstractmethod
    async def take_over(self, api: client.ApiClient, pod: client.V1Pod, container: str, bridge: str) -> None:
        """Puts the interceptor in the place of ``container``, remembering what it replaced."""

    @abc.abstractmethod
    async def configure(self, api: client.ApiClient, pod: client.V1Pod, container: str,
                        template: client.V1Container, forwards: Sequence[Forward]) -> bool:
        """Makes the active interceptor forward ``forwards`` and answer ``template``'s probes;
        True once it does (False while it is not running yet)."""

    @abc.abstractmethod
    async def restore(self, api: client.ApiClient, pod: client.V1Pod, container: str) -> bool:
        """Gives ``pod`` back exactly the container that :meth:`take_over` replaced; called each
        round until it returns True: once that container runs again and is ready, and nothing of
        the interceptor is left on the pod (from then on :meth:`bridge_of` is None)."""
