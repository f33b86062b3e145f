"""The container runtime interface that the core uses; plugins implement it (gefyra.plugins).

A runtime object is returned by the ``gefyra_container_runtime`` hook, then used as an async
context manager. Methods raise :mod:`gefyra.errors` exceptions only: the plugin translates its
engine's errors at this edge.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Self

from gefyra import errors


@dataclasses.dataclass
class ContainerSpec:
    name: str
    image: str
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    network: str | None = None
    #: The name of another container whose network namespace this one joins (instead of ``network``).
    network_of: str | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    cap_add: list[str] = dataclasses.field(default_factory=list)
    devices: list[str] = dataclasses.field(default_factory=list)
    dns: list[str] = dataclasses.field(default_factory=list)
    dns_search: list[str] = dataclasses.field(default_factory=list)
    dns_options: list[str] = dataclasses.field(default_factory=list)
    #: ``HOST_PATH:CONTAINER_PATH[:ro]`` bind mounts.
    volumes: list[str] = dataclasses.field(default_factory=list)
    #: container port (``"8080/tcp"``) -> host port, or ``"IP:PORT"`` on one address of the host.
    ports: dict[str, int | str] = dataclasses.field(default_factory=dict)
    auto_remove: bool = False
    #: A fixed address on ``network`` (its NetworkInfo.reserved), else the engine picks one.
    ip: str | None = None
    #: Limits: the CPUs it may use (1.5: one and a half), the bytes of memory; None: none.
    cpus: float | None = None
    memory: int | None = None


@dataclasses.dataclass
class ContainerInfo:
    id: str
    name: str
    image: str
    state: str  # created, running, exited, ...
    labels: dict[str, str]
    #: network name -> IPv4 address
    addresses: dict[str, str]
    #: When it was created (Unix time; 0 where the engine does not say).
    created: float = 0.0

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclasses.dataclass
class NetworkInfo:
    name: str
    subnet: str
    gateway: str
    labels: dict[str, str]
    #: An address of the network that the engine gives no container unless asked for it (the
    #: tunnel's local end keeps it across restarts: the other containers' DNS server and route).
    #: "" for a network without one (made before, or by an engine that cannot).
    reserved: str = ""
    #: The MTU of its containers' interfaces, None for the engine's default.
    mtu: int | None = None


class ContainerRuntime(abc.ABC):
    """One connection to a container engine."""

    #: Name shown by ``status`` and ``check``, and chosen with ``--runtime``.
    name: str = "?"

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def connect(self) -> None:
        """Opens the connection; raises EngineUnavailableError if the engine does not answer."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def version(self) -> str: ...

    async def vm_host_gateway(self) -> str | None:
        """Where this engine's containers reach the host, if the engine runs in a VM whose
        containers reach the cluster's nodes only that way (they then reach the host's published
        ports); None for an engine that runs on this host."""
        return None

    @abc.abstractmethod
    async def image_exists(self, image: str) -> bool: ...

    async def image_available(self, image: str) -> bool | None:
        """Whether ``image``'s registry has it, asked from this machine without pulling it (None:
        this engine cannot tell)."""
        return None

    @abc.abstractmethod
    async def pull_image(self, image: str, progress: Callable[[str], Awaitable[None]]) -> None:
        """Pulls ``image``, telling ``progress`` how far it is now and then (a short line); raises
        NotFoundError when the registry does not have it, GefyraError for other refusals."""

    async def build_image(self, context: str, tag: str, progress: Callable[[str], Awaitable[None]]) -> str:
        """Builds the image of the build context ``context`` (a directory with the build file the engine reads) as
        ``tag``; returns its id. A runtime that cannot build says so."""
        raise errors.UsageError(f"the container runtime {self.name} cannot build images",
                                "build the image yourself and name it with image: in the session file")

    @abc.abstractmethod
    async def ensure_network(self, name: str, labels: Mapping[str, str], *, mtu: int | None = None) -> NetworkInfo:
        """Creates the bridge network ``name`` unless it exists, if it can with a reserved address
        (NetworkInfo.reserved), its containers' interfaces with ``mtu`` (None: the engine's
        default); returns it (an existing one as it is)."""

    @abc.abstractmethod
    async def get_network(self, name: str) -> NetworkInfo | None: ...

    @abc.abstractmethod
    async def remove_network(self, name: str) -> None:
        """Removes the network; no error if it does not exist."""

    @abc.abstractmethod
    async def create_container(self, spec: ContainerSpec) -> ContainerInfo:
        """Creates (does not start) a container; ConflictError if the name is taken."""

    @abc.abstractmethod
    async def put_files(self, name: str, directory: str, files: Mapping[str, bytes]) -> None:
        """Copies ``files`` (relative name -> content, mode 0600) into ``directory`` of a container."""

    @abc.abstractmethod
    async def start_container(self, name: str) -> None: ...

    @abc.abstractmethod
    async def get_container(self, name: str) -> ContainerInfo | None: ...

    @abc.abstractmethod
    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """All containers (running or not) that carry every one of ``labels``."""

    @abc.abstractmethod
    async def remove_container(self, name: str) -> None:
        """Stops and removes a container; no error if it does not exist."""

    @abc.abstractmethod
    async def exec(self, name: str, command: Sequence[str]) -> tuple[int, str]:
        """Runs ``command`` in a running container; returns (exit code, stdout+stderr)."""

    @abc.abstractmethod
    async def run_to_completion(self, spec: ContainerSpec) -> tuple[int, str]:
        """Runs a short-lived helper container, waits for it, removes it; (exit code, output)."""

    @abc.abstractmethod
    def logs(self, name: str, *, follow: bool = True, since: float | None = None,
             tail: int | None = None) -> AsyncIterator[str]:
        """Yields the container's output lines (stdout and stderr): those written since the Unix
        time ``since`` (all without), of them the last ``tail`` only (all without); with
        ``follow``, then each new one until the container stops."""

    @abc.abstractmethod
    async def wait_container(self, name: str) -> int:
        """Waits until the container stops; returns its exit code."""

    @abc.abstractmethod
    async def send_signal(self, name: str, signal: str) -> None:
        """Sends ``signal`` (``SIGINT``, ``SIGTERM``, ...) to the container's main process, as
        Ctrl-C reaches an attached container's application."""
