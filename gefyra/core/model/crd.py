"""gefyra's custom resources, typed: GefyraClient and GefyraBridge are the contract between the
client and the operator. Each kind is read in one function (:func:`parse_client`,
:func:`parse_bridge`), which checks every field once, because what comes back from the cluster is
untrusted (whoever may write the object may write anything the schema lets through), and written
in one (:func:`client_body`, :func:`bridge_body`; the operator's status writes go through
:func:`status_patch`). The rule of which bridges may share a port is here too, once."""

from __future__ import annotations

import base64
import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gefyra.core.model import tls, validation
from gefyra.core.model.conditions import Condition, parse_conditions, true_condition
from gefyra.core.model.names import (
    ANNOTATION_STEERED,
    CRD_GROUP,
    CRD_VERSION,
    GEFYRA_NAMESPACE,
    LABEL_CLIENT,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    PROTECTED_NAMESPACES,
    PROXY_PORTS,
)
from gefyra.core.model.routing import PROTOCOLS, Match, Target
from gefyra.core.model.workload import WORKLOAD_KINDS

API_VERSION = f"{CRD_GROUP}/{CRD_VERSION}"


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _names(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str) and validation.is_dns_subdomain(v)) if isinstance(value, list) else ()


def _metadata(labels: Mapping[str, str], name: str) -> dict[str, Any]:
    return {"name": name, "namespace": GEFYRA_NAMESPACE, "labels": {LABEL_MANAGED_BY: MANAGED_BY, **labels}}


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: changed keys, removed ones
    as None, maps patched key by key (a merge patch merges maps: a key left out would stay)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = merge_patch(before, value)
            if inner:
                patch[key] = inner
        elif before != value:
            patch[key] = value
    return patch


# GefyraClient


@dataclasses.dataclass(frozen=True)
class ClientStatus:
    """What the operator tells a client: its tunnel address and the server end's public key."""

    address: str = ""
    server_public_key: str = ""
    phase: str = ""  # Pending, Active, Silent, Invalid
    message: str = ""

    def to_json(self) -> dict[str, str]:
        fields = {"address": self.address, "serverPublicKey": self.server_public_key, "phase": self.phase,
                  "message": self.message}
        return {k: v for k, v in fields.items() if v}


@dataclasses.dataclass(frozen=True)
class GefyraClient:
    """A machine registered as a tunnel client."""

    name: str
    public_key: str
    #: The Kubernetes user who registered it ("" for an admin's).
    owner: str = ""
    created: str = ""
    deleting: bool = False
    status: ClientStatus = ClientStatus()
    #: The status as the object has it (what a status patch is computed against).
    status_json: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def parse_client(obj: Mapping[str, Any]) -> GefyraClient:
    metadata, spec, status = _map(obj.get("metadata")), _map(obj.get("spec")), _map(obj.get("status"))
    return GefyraClient(
        name=_text(metadata.get("name")), public_key=_text(spec.get("publicKey")), owner=_text(spec.get("owner")),
        created=_text(metadata.get("creationTimestamp")), deleting=bool(metadata.get("deletionTimestamp")),
        status=ClientStatus(_text(status.get("address")), _text(status.get("serverPublicKey")),
                            _text(status.get("phase")), _text(status.get("message"))), status_json=dict(status))


def client_body(client_id: str, public_key: str = "", owner: str = "") -> dict[str, Any]:
    """The GefyraClient of ``client_id`` as the client creates (and applies) it."""
    return {"apiVersion": API_VERSION, "kind": "GefyraClient", "metadata": _metadata({LABEL_CLIENT: client_id}, client_id),
            "spec": {"publicKey": public_key, "owner": owner}}


# GefyraBridge


@dataclasses.dataclass(frozen=True)
class BridgeTarget:
    """The workload and container whose ports a bridge takes."""

    namespace: str
    kind: str  # deployment, statefulset or pod
    name: str
    container: str

    @property
    def workload(self) -> Target:
        return Target(self.namespace, self.kind, self.name)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}/{self.container}"


@dataclasses.dataclass(frozen=True)
class PortPair:
    #: The container port in the cluster, and the local container's port that takes it.
    remote: int
    local: int


@dataclasses.dataclass(frozen=True)
class BridgeSpec:
    client: str
    #: The Kubernetes user who made it ("" for an admin's).
    owner: str
    local_container: str
    #: None when the object names no proper target (see :attr:`GefyraBridge.problem`).
    target: BridgeTarget | None
    ports: tuple[PortPair, ...]
    #: A personal bridge's conditions (all must hold for a request); none: a global bridge.
    matches: tuple[Match, ...] = ()
    #: The interceptor it asks for; None for the default one.
    interceptor: str | None = None
    #: A global bridge that takes connections to the pods' own addresses too (see Route.in_place).
    in_place: bool = False
    #: A read-only copy of the matching requests (see Route.mirror).
    mirror: bool = False
    #: How the workload speaks on the ports (see Route.protocol); "" for what its Services say.
    protocol: str = ""
    #: HTTPS: the Secret in namespace gefyra with the ports' certificate (see gefyra.core.model.tls),
    #: "" for none; and whether the interceptor verifies the workload's certificate.
    tls_secret: str = ""
    tls_verify: bool = True

    @property
    def personal(self) -> bool:
        """It shares its ports with other personal bridges and mirrors (a global one takes them all)."""
        return bool(self.matches) or self.mirror

    @property
    def remote_ports(self) -> tuple[int, ...]:
        return tuple(p.remote for p in self.ports)


@dataclasses.dataclass(frozen=True)
class BridgeStatus:
    """What the operator reports on a bridge."""

    phase: str = ""  # Pending, Active, Suspended, Invalid, Restoring, Restored
    message: str = ""
    #: Remote port -> the server end's port that leads into the tunnel, as the operator allocated
    #: them ({} while none are, or when what the object says is not exactly that).
    proxy_ports: Mapping[int, int] = dataclasses.field(default_factory=dict)
    #: The pods that carry the bridge, in ``pod_namespace``.
    pods: tuple[str, ...] = ()
    pod_namespace: str = ""
    #: The target's Services that lead to the interceptor instead of its pods.
    services: tuple[str, ...] = ()
    mode: str = ""
    conditions: tuple[Condition, ...] = ()

    def to_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "phase": self.phase, "message": self.message,
            "proxyPorts": {str(k): v for k, v in sorted(self.proxy_ports.items())},
            "pods": list(self.pods), "podNamespace": self.pod_namespace, "services": list(self.services),
            "mode": self.mode, "conditions": [c.to_json() for c in self.conditions]}
        return {k: v for k, v in fields.items() if v}


@dataclasses.dataclass(frozen=True)
class GefyraBridge:
    name: str
    spec: BridgeSpec
    status: BridgeStatus = BridgeStatus()
    created: str = ""
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    #: Its client has said that it steers the bridged ports to the local container.
    steered: bool = False
    #: Why the spec cannot be carried out as it is (None: it is well formed).
    problem: str | None = None
    #: The status as the object has it (what a status patch is computed against: fields that did
    #: not parse are replaced or removed by it).
    status_json: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    uid: str = ""

    def condition(self, kind: str) -> Condition | None:
        """The condition ``kind`` if it is True."""
        return true_condition(self.status.conditions, kind)

    def proxy_ports(self) -> dict[int, int]:
        """status.proxyPorts if it covers exactly the bridge's ports, else {}."""
        found = dict(self.status.proxy_ports)
        return found if set(found) == set(self.spec.remote_ports) else {}

    def unsteered_for(self) -> float:
        """Seconds since the bridge was made, while its client has not said that it steers it (0
        once it has)."""
        if self.steered:
            return 0.0
        try:
            made = datetime.datetime.fromisoformat(self.created.replace("Z", "+00:00"))
        except ValueError:
            return 0.0
        return (datetime.datetime.now(datetime.UTC) - made).total_seconds()


def _target(value: Any) -> tuple[BridgeTarget | None, str | None]:
    """spec.target, checked: names Kubernetes could have, in a namespace gefyra may touch."""
    if not isinstance(value, Mapping):
        return None, "spec.target is missing"
    for field in ("namespace", "kind", "name", "container"):
        text = value.get(field)
        if not isinstance(text, str) or not validation.is_dns_subdomain(text):
            return None, f"spec.target.{field} is not a Kubernetes name: {str(text)[:60]!r}"
    if value["kind"] not in WORKLOAD_KINDS:
        return None, f"spec.target.kind must be one of {', '.join(sorted(WORKLOAD_KINDS))}"
    if value["namespace"] in PROTECTED_NAMESPACES:
        return None, f"gefyra does not bridge workloads in namespace {value['namespace']}"
    return BridgeTarget(value["namespace"], value["kind"], value["name"], value["container"]), None


def _ports(value: Any) -> tuple[tuple[PortPair, ...], str | None]:
    if not isinstance(value, list) or not value:
        return (), "spec.ports names no port"
    found = []
    for item in value:
        item = _map(item)
        remote, local = item.get("remote"), item.get("local")
        if not isinstance(remote, int) or not validation.is_port(remote):
            return (), f"spec.ports has a remote port that is not 1-65535: {remote!r}"
        if not isinstance(local, int) or not validation.is_port(local):
            return (), f"spec.ports has a local port that is not 1-65535: {local!r}"
        found.append(PortPair(remote, local))
    return tuple(found), None


def _matches(value: Any) -> tuple[tuple[Match, ...], str | None]:
    """spec.match, checked: a personal bridge's conditions (none: a global bridge)."""
    value = value or []
    if not isinstance(value, list) or len(value) > validation.MAX_MATCHES:
        return (), f"spec.match is not a list of at most {validation.MAX_MATCHES} conditions"
    matches = []
    for item in value:
        item = _map(item)
        kind, header, text = item.get("kind"), item.get("header", ""), item.get("value")
        problem = validation.match_problem(kind, header, text)
        if problem:
            return (), f"spec.match: {problem}"
        matches.append(Match(str(kind), str(text), str(header)))
    return tuple(matches), None


def _proxy_ports(value: Any) -> dict[int, int]:
    """status.proxyPorts as the operator wrote it, or {} when it is not exactly that (keys that are
    ports, values in the server end's range)."""
    if not isinstance(value, Mapping):
        return {}
    found: dict[int, int] = {}
    for key, port in value.items():
        if (not isinstance(key, str) or not key.isascii() or not key.isdigit() or not validation.is_port(int(key))
                or not validation.is_port(port) or port not in PROXY_PORTS):
            return {}
        found[int(key)] = int(port)
    return found


def parse_bridge(obj: Mapping[str, Any]) -> GefyraBridge:
    """A GefyraBridge object as read from the cluster. Never raises: what is wrong with the spec is
    its :attr:`~GefyraBridge.problem` (the first one found: target, ports, conditions)."""
    metadata, spec, status = _map(obj.get("metadata")), _map(obj.get("spec")), _map(obj.get("status"))
    target, problem = _target(spec.get("target"))
    ports, ports_problem = _ports(spec.get("ports"))
    matches, matches_problem = _matches(spec.get("match"))
    interceptor = spec.get("interceptor")
    in_place, mirror = spec.get("inPlace") is True, spec.get("mirror") is True
    if in_place and matches and not (problem or ports_problem or matches_problem):
        matches_problem = "a personal bridge (spec.match) cannot be in place (spec.inPlace)"
    if in_place and mirror and not (problem or ports_problem or matches_problem):
        matches_problem = "a mirror (spec.mirror) cannot be in place (spec.inPlace)"
    protocol = spec.get("protocol") if isinstance(spec.get("protocol"), str) else ""
    if protocol and protocol not in PROTOCOLS and not (problem or ports_problem or matches_problem):
        matches_problem = f"spec.protocol {protocol[:20]!r} is not one of {', '.join(PROTOCOLS)}"
    tls_spec = _map(spec.get("tls"))
    tls_secret = str(tls_spec["secret"]) if isinstance(tls_spec.get("secret"), str) else ""
    if tls_spec and not (problem or ports_problem or matches_problem):
        if not validation.is_dns_subdomain(tls_secret):
            matches_problem = "spec.tls.secret is not the name of a Secret"
        elif not (matches or mirror):
            matches_problem = "spec.tls: only personal bridges and mirrors end TLS"
    return GefyraBridge(
        name=_text(metadata.get("name")),
        spec=BridgeSpec(client=_text(spec.get("client")), owner=_text(spec.get("owner")),
                        local_container=_text(spec.get("localContainer")), target=target, ports=ports,
                        matches=matches, interceptor=interceptor if isinstance(interceptor, str) and interceptor else None,
                        in_place=in_place, mirror=mirror, protocol=protocol if protocol in PROTOCOLS else "",
                        tls_secret=tls_secret if validation.is_dns_subdomain(tls_secret) else "",
                        tls_verify=tls_spec.get("insecureSkipVerify") is not True),
        status=BridgeStatus(phase=_text(status.get("phase")), message=_text(status.get("message")),
                            proxy_ports=_proxy_ports(status.get("proxyPorts")), pods=_names(status.get("pods")),
                            pod_namespace=_text(status.get("podNamespace")), services=_names(status.get("services")),
                            mode=_text(status.get("mode")), conditions=parse_conditions(status.get("conditions"))),
        created=_text(metadata.get("creationTimestamp")), deleting=bool(metadata.get("deletionTimestamp")),
        finalizers=tuple(f for f in metadata.get("finalizers") or [] if isinstance(f, str)),
        steered=bool(_map(metadata.get("annotations")).get(ANNOTATION_STEERED)),
        problem=problem or ports_problem or matches_problem, status_json=dict(status), uid=_text(metadata.get("uid")))


def bridge_body(name: str, spec: BridgeSpec) -> dict[str, Any]:
    """The GefyraBridge ``name`` as the client creates it."""
    assert spec.target is not None, "a bridge is made for a target"
    target = spec.target
    return {
        "apiVersion": API_VERSION, "kind": "GefyraBridge", "metadata": _metadata({LABEL_CLIENT: spec.client}, name),
        "spec": {"client": spec.client, "owner": spec.owner, "localContainer": spec.local_container,
                 **({"interceptor": spec.interceptor} if spec.interceptor else {}),
                 **({"inPlace": True} if spec.in_place else {}),
                 **({"mirror": True} if spec.mirror else {}),
                 **({"protocol": spec.protocol} if spec.protocol else {}),
                 **({"tls": {"secret": spec.tls_secret, **({} if spec.tls_verify else {"insecureSkipVerify": True})}}
                    if spec.tls_secret else {}),
                 **({"match": [{"kind": m.kind, **({"header": m.header} if m.header else {}), "value": m.value}
                               for m in spec.matches]} if spec.matches else {}),
                 "target": {"namespace": target.namespace, "kind": target.kind, "name": target.name,
                            "container": target.container},
                 "ports": [{"remote": p.remote, "local": p.local} for p in sorted(spec.ports, key=lambda p: p.remote)]}}


def status_patch(old: Mapping[str, Any], new: BridgeStatus | ClientStatus) -> dict[str, Any]:
    """The merge patch of the status subresource that turns the status JSON ``old`` (as the object
    has it) into ``new`` ({} when they are the same)."""
    patch = merge_patch(old, new.to_json())
    return {"status": patch} if patch else {}


# Which bridges may share a container's ports


@dataclasses.dataclass(frozen=True)
class PortClaim:
    """What one bridge takes of a container: its ports, globally or personally."""

    bridge: str
    container: str
    ports: frozenset[int]
    personal: bool


def conflict(claim: PortClaim, earlier: Iterable[PortClaim]) -> str | None:
    """Why ``claim`` cannot be made beside the ``earlier`` claims on the same workload: a global
    bridge shares a port with no other bridge; personal bridges share ports with each other."""
    for other in earlier:
        shared = claim.ports & other.ports
        if other.container != claim.container or not shared:
            continue
        port = min(shared)
        if not other.personal:
            return f"port {port} of container {claim.container} is already bridged globally by {other.bridge}"
        if not claim.personal:
            return (f"port {port} of container {claim.container} has personal bridges ({other.bridge}); "
                    "a global bridge would take their requests")
    return None


def claims_on(bridges: Sequence[GefyraBridge], workload: Target) -> list[PortClaim]:
    """The port claims of the well-formed bridges on ``workload`` that are not going away."""
    return [PortClaim(b.name, b.spec.target.container, frozenset(b.spec.remote_ports), b.spec.personal)
            for b in bridges if b.spec.target is not None and b.spec.target.workload == workload
            and not b.problem and not b.deleting]


def tls_copy_body(name: str, material: tls.TlsMaterial, *, bridge: str, bridge_uid: str, owner: str,
                  client: str) -> dict[str, Any]:
    """The copy of ``material`` in namespace gefyra that the bridge ``bridge`` (its uid) brings
    along: Kubernetes' garbage collector removes it with the bridge."""
    data = {tls.CERTIFICATE: material.certificate, tls.KEY: material.key, tls.TRUSTED: material.trusted}
    return {
        "apiVersion": "v1", "kind": "Secret", "type": tls.SECRET_TYPE,
        "metadata": {"name": name, "namespace": GEFYRA_NAMESPACE,
                     "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLIENT: client},
                     "annotations": {tls.ANNOTATION_OWNER: owner},
                     "ownerReferences": [{"apiVersion": API_VERSION, "kind": "GefyraBridge", "name": bridge,
                                          "uid": bridge_uid}]},
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in data.items() if v},
    }
