"""The tunnel backend interface: how this machine and the cluster are joined.

Two ends. The *local end* is a container on gefyra's container network: it carries the cluster's
ranges into the tunnel, answers DNS (the :mod:`~gefyra.core.spi.dns` backend runs inside it) and
steers bridged ports that arrive from the cluster to local containers. The *server end* runs in
the cluster, in the operator's pod, which drives it through :class:`TunnelServer`: one peer per
client (its public key and one tunnel address), and port forwards from the server into the tunnel
for bridges. The backend brings the server end's objects itself (:meth:`Tunnel.server_side`).
Chosen by the ``gefyra_tunnel`` hook; every method raises :mod:`gefyra.errors` only.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from gefyra import errors
from gefyra.core.model.settings import Settings
from gefyra.core.spi.dns import DnsSetup
from gefyra.core.spi.runtime import ContainerRuntime


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A tunnel key pair, both halves as text. The private half is never printed."""

    private: str
    public: str

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r})"


@dataclasses.dataclass(frozen=True)
class LocalEnd:
    """Everything the local end needs to start."""

    name: str
    network: str
    labels: Mapping[str, str]
    keys: KeyPair
    #: This client's one address in the tunnel, and the server end's public key and endpoint
    #: (``HOST:PORT``), as the operator handed them out.
    address: str
    server_public_key: str
    endpoint: str
    #: The cluster ranges that go into the tunnel.
    routes: Sequence[str]
    #: The MTU of its tunnel interface while its datagrams may go over UDP.
    mtu: int
    dns: DnsSetup
    #: Its fixed address on ``network`` ("" to let the engine choose): the `run` containers' DNS
    #: server and route, which a local end made anew must keep.
    network_address: str = ""
    #: The MTU while it sends only on a stream (:meth:`Tunnel.set_endpoint` with no endpoint
    #: but ``stream``): a stream carries a datagram of any size whole, where UDP would break it
    #: into IP fragments. None: ``mtu`` then too.
    stream_mtu: int | None = None


@dataclasses.dataclass(frozen=True)
class ServerSide:
    """The tunnel's server end as its backend installs it: in the pod of the cluster side's
    Deployment, beside the operator, and objects of its own. Manifests are plain JSON."""

    #: The name of that Deployment (it runs the operator and the server end).
    deployment: str
    #: The Secret in which the server end's key pair is made at install (keys ``private-key`` and
    #: ``public-key``; the private half never leaves the cluster).
    key_secret: str
    #: The Pod Security level namespace ``gefyra`` must admit for these containers.
    pod_security: str
    containers: Sequence[Mapping[str, Any]]
    volumes: Sequence[Mapping[str, Any]]
    #: What the operator's container needs to drive the server end: volume mounts (a control
    #: socket, the server's public key), and fields of its ``securityContext`` (``capabilities.add``,
    #: say) over the cluster side's own.
    operator_mounts: Sequence[Mapping[str, Any]] = ()
    operator_security_context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Fields of the pod's ``securityContext`` over the cluster side's own (``sysctls``, say).
    pod_security_context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Other objects (the Service at which clients reach the server end).
    objects: Sequence[Mapping[str, Any]] = ()
    #: The server end's TCP port in its pod that takes the tunnel's datagrams over a stream (each
    #: prefixed with its length, 2 bytes big-endian): what the transport through the Kubernetes
    #: API opens with a pod port-forward. None: the server end takes UDP only.
    stream_port: int | None = None


class Tunnel(abc.ABC):
    """Client side of a tunnel backend; :meth:`server` gives the control of its server end, which
    the operator uses, and :meth:`server_side` what the install puts into the cluster for it."""

    #: Name shown by ``status`` and chosen with ``--tunnel``.
    name: str = "?"
    #: Where the DNS server's files go in the local end.
    dns_dir: str = "/etc/gefyra/dns"
    #: The tunnel's own address range (the operator gives each client one address of it) and the
    #: server end's address in it.
    network: str = ""
    server_address: str = ""
    #: Seconds after the last sign of life from the server end (:meth:`latest_handshake`) at which
    #: the tunnel counts as broken.
    stale_after: float = 180.0

    @abc.abstractmethod
    def server_side(self, settings: Settings) -> ServerSide:
        """The server end's part of the cluster side, for ``settings`` (images, port, MTU)."""

    @abc.abstractmethod
    def generate_keys(self) -> KeyPair:
        """A fresh key pair (for a client, or for the server end when the cluster side is installed)."""

    @abc.abstractmethod
    def local_image(self, settings: Settings) -> str:
        """The image of the local end; it also holds the DNS server's program and the helper tools."""

    @abc.abstractmethod
    def local_name(self, settings: Settings) -> str:
        """The container of this client's local end (one per client id)."""

    @abc.abstractmethod
    async def start_local_end(self, runtime: ContainerRuntime, settings: Settings, end: LocalEnd) -> None:
        """Creates and starts the local end (a stale container of the same name is replaced)."""

    @abc.abstractmethod
    async def wait_connected(self, runtime: ContainerRuntime, name: str, probe: tuple[str, int],
                             timeout: float) -> None:
        """Returns once traffic flows through the tunnel from the local end ``name``: the server end
        answers and a TCP connection to ``probe`` (address, port in the cluster) opens.
        ReadinessTimeoutError after ``timeout`` seconds."""

    async def endpoint(self, runtime: ContainerRuntime, name: str) -> str | None:
        """``HOST:PORT`` to which the local end ``name`` sends now, None if unknown."""
        return None

    async def set_endpoint(self, runtime: ContainerRuntime, name: str, preferred: str, *, fallback: str | None = None,
                           current: str | None = None, stream: str | None = None) -> None:
        """Where the local end ``name`` sends (each ``IPV4:PORT``), also after a restart: to
        ``current`` (default ``preferred``) from now on, the tunnel's session and the connections
        in it going on. With a ``fallback``, the local end moves there by itself when ``preferred``
        carries nothing for a few seconds, and back once ``preferred`` answers again. ``stream``
        is the one of them that takes a TCP connection rather than datagrams (the relay through
        the Kubernetes API): the local end sends there each datagram prefixed with its length (2
        bytes, big-endian), as the server end's stream port reads them. A backend whose server
        end has a :attr:`ServerSide.stream_port` must implement it (the transport through the
        Kubernetes API is such a fallback)."""
        raise errors.GefyraError(f"the {self.name} tunnel cannot change its endpoint")

    @abc.abstractmethod
    async def latest_handshake(self, runtime: ContainerRuntime, name: str) -> int | None:
        """Unix time of the last sign of life from the server end, None if never or unknown."""

    @abc.abstractmethod
    async def route_container(self, runtime: ContainerRuntime, settings: Settings, container: str, via: str,
                              routes: Sequence[str]) -> None:
        """Routes ``routes`` of a local container through the local end at address ``via``,
        without giving that container any capability."""

    @abc.abstractmethod
    async def steer(self, runtime: ContainerRuntime, name: str, forwards: Mapping[int, tuple[str, int]]) -> None:
        """In the local end ``name``: connections arriving through the tunnel at port P go to
        ``forwards[P]`` (a local container's address and port). Replaces earlier steering of P."""

    @abc.abstractmethod
    async def unsteer(self, runtime: ContainerRuntime, name: str, ports: Sequence[int]) -> None:
        """Undoes :meth:`steer` for ``ports``; harmless when nothing is steered or the end is gone."""

    @abc.abstractmethod
    async def connects(self, runtime: ContainerRuntime, name: str, targets: Sequence[tuple[str, int]]) -> list[bool]:
        """Opens a TCP connection from the local end ``name`` to each target (address, port in the
        cluster, through the tunnel); for each, whether it opened."""

    @abc.abstractmethod
    async def exchanges(self, runtime: ContainerRuntime, name: str, targets: Sequence[tuple[str, int]],
                        payload: bytes) -> list[bytes]:
        """Sends ``payload`` over a new TCP connection from the local end ``name`` to each target (in
        the cluster, through the tunnel; a target may repeat) and returns the start of each answer
        (b"" if none came within a few seconds): enough to ask HTTP servers for their response
        headers. The connections may be made at once."""

    async def largest_packet(self, runtime: ContainerRuntime, name: str, sizes: Sequence[int]) -> int:
        """The largest of ``sizes`` (IP packet sizes, largest first) that passes the tunnel of the
        local end ``name`` whole, to the server end and back; 0 if none does or it cannot tell."""
        return 0

    @abc.abstractmethod
    async def steered_connections(self, runtime: ContainerRuntime, name: str, ports: Sequence[int]) -> dict[int, int]:
        """How many connections each of the steered ``ports`` has passed so far (0 for a port that
        is not steered)."""

    @abc.abstractmethod
    def server(self) -> TunnelServer:
        """The cluster side of this backend (used by the operator, in the server end's pod)."""


@dataclasses.dataclass(frozen=True)
class ServerForward:
    """TCP from one of ``sources`` (the bridged pods' IPs) to the server's ``port`` goes to the same
    port of the client at ``address`` in the tunnel."""

    port: int
    address: str
    sources: tuple[str, ...]


class TunnelServer(abc.ABC):
    """The server end's control, used by the operator. Peers and forwards change on the running
    server: it is never restarted for a client or a bridge."""

    @abc.abstractmethod
    def is_public_key(self, text: str) -> bool:
        """True if ``text`` is a well-formed public key of this backend (checked before any use)."""

    @abc.abstractmethod
    async def wait_ready(self) -> None:
        """Returns once the server end accepts peers."""

    @abc.abstractmethod
    async def peers(self) -> dict[str, str]:
        """Public key -> tunnel address of every peer the server has now."""

    @abc.abstractmethod
    async def set_peer(self, public_key: str, address: str) -> None:
        """Adds the peer, or gives it ``address``."""

    @abc.abstractmethod
    async def remove_peer(self, public_key: str) -> None: ...

    @abc.abstractmethod
    async def received(self) -> dict[str, int]:
        """Public key -> bytes received from that peer so far (keepalives included)."""

    @abc.abstractmethod
    async def forward(self, rules: Sequence[ServerForward]) -> None:
        """Sets the server's forwards into the tunnel to exactly ``rules``. Nothing else reaches a
        client through the server: not another client, not a pod that is not the bridge's."""
