"""What gefyra's operations return: typed records (``dataclasses.asdict`` gives the JSON of ``-o json``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gefyra.core.model.routing import Match


@dataclasses.dataclass
class Condition:
    """One condition of a GefyraBridge's status, as the operator set it."""

    type: str
    status: str
    reason: str = ""
    message: str = ""


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
    #: How the interceptor carries it, in its own words (e.g. "in place", "router").
    mode: str = ""
    conditions: list[Condition] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, obj: dict[str, Any]) -> BridgeInfo:
        """From a GefyraBridge object."""
        spec, status = obj["spec"], obj.get("status") or {}
        return cls(name=obj["metadata"]["name"], local=spec.get("localContainer", ""),
                   target="{kind}/{name}/{container}".format(**spec["target"]),
                   namespace=spec["target"]["namespace"],
                   ports={str(p["remote"]): p["local"] for p in spec["ports"]},
                   phase=status.get("phase", "Pending"), pods=list(status.get("pods") or []),
                   interceptor=spec.get("interceptor") or "",
                   match=[str(Match(str(m.get("kind")), str(m.get("value")), str(m.get("header", ""))))
                          for m in spec.get("match") or [] if isinstance(m, dict)],
                   mode=str(status.get("mode") or ""),
                   conditions=[Condition(c.get("type", ""), c.get("status", ""), c.get("reason", ""),
                                         c.get("message", "")) for c in status.get("conditions") or []])


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
    installed: bool
    client: ClientInfo | None = None


@dataclasses.dataclass
class CargoInfo:
    name: str
    state: str
    latest_handshake: int | None


@dataclasses.dataclass
class Status:
    """What is installed and running (no secrets)."""

    client: str
    runtime: str
    connected: bool
    cluster: ClusterInfo
    cargo: CargoInfo | None
    containers: list[LocalContainer]
    bridges: list[BridgeInfo]


@dataclasses.dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
