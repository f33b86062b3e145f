"""What gefyra's operations return: typed records (``dataclasses.asdict`` gives the JSON of ``-o json``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gefyra.core.model.conditions import Condition
from gefyra.core.model.crd import GefyraBridge


@dataclasses.dataclass
class BridgeInfo:
    name: str
    local: str
    #: ``kind/name/container``
    target: str
    namespace: str
    #: remote container port (as text) -> local container port
    ports: dict[str, int]
    phase: str = "Pending"
    pods: list[str] = dataclasses.field(default_factory=list)
    #: The interceptor the bridge names ("" for the default one).
    interceptor: str = ""
    #: A personal bridge's conditions, e.g. "header-exact x-dev:alice"; empty for a global bridge.
    match: list[str] = dataclasses.field(default_factory=list)
    #: A read-only copy of the matching requests: the workload answers them.
    mirror: bool = False
    #: How the interceptor carries it, in its own words (e.g. "in place", "router").
    mode: str = ""
    conditions: list[Condition] = dataclasses.field(default_factory=list)
    #: What is wrong on this machine's side, measured when asked ("" when nothing): the local
    #: container is not running, or not on gefyra's network.
    problem: str = ""

    @classmethod
    def of(cls, bridge: GefyraBridge, problem: str = "") -> BridgeInfo:
        spec, status = bridge.spec, bridge.status
        return cls(name=bridge.name, local=spec.local_container, target=str(spec.target or "?"),
                   namespace=spec.target.namespace if spec.target else "",
                   ports={str(p.remote): p.local for p in spec.ports}, phase=status.phase or "Pending",
                   pods=list(status.pods), interceptor=spec.interceptor or "", match=[str(m) for m in spec.matches],
                   mirror=spec.mirror, mode=status.mode, conditions=list(status.conditions), problem=problem)


@dataclasses.dataclass
class LocalContainer:
    """A container started with `run`."""

    name: str
    image: str
    state: str
    namespace: str
    address: str


@dataclasses.dataclass
class ClientInfo:
    address: str | None
    phase: str | None


@dataclasses.dataclass
class ClusterInfo:
    api: str
    #: None where the cluster was not reachable (unknown).
    installed: bool | None
    client: ClientInfo | None = None
    reachable: bool = True


@dataclasses.dataclass
class CargoInfo:
    """The tunnel's local end (cargo, for the built-in tunnel)."""

    name: str
    state: str
    latest_handshake: int | None
    #: Its address on gefyra's network ("" when it is not on it).
    address: str = ""
    #: How its datagrams reach the server end ("udp", "api": through the Kubernetes API; None:
    #: unknown), and the address it sends them to (for "api", the relay on this machine).
    transport: str | None = None
    endpoint: str = ""


@dataclasses.dataclass
class Status:
    """What is installed and running, as measured when asked (no secrets). ``connected`` is true
    only when nothing in ``problems`` stands in the way."""

    client: str
    runtime: str
    connected: bool
    cluster: ClusterInfo
    cargo: CargoInfo | None
    containers: list[LocalContainer]
    #: None where the cluster was not reachable (unknown).
    bridges: list[BridgeInfo] | None
    #: What does not work, one line each, with what to do.
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


def plain(data: Any) -> Any:
    """Results (dataclasses, and lists and dicts of them) as plain data, for JSON and YAML."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return plain(dataclasses.asdict(data))
    if isinstance(data, (list, tuple)):
        return [plain(d) for d in data]
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    return data
