"""What `run` and `bridge` are asked to do: the requests of the API (and of the CLI), each of which
checks itself before anything connects (:meth:`validate`, with the fields' names in the message)."""

from __future__ import annotations

import dataclasses
import re

from gefyra import errors
from gefyra.core.model import validation
from gefyra.core.model.routing import PROTOCOLS, Match

_LABEL_KEY = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


@dataclasses.dataclass
class RunRequest:
    """A local container that behaves like a pod of ``namespace``."""

    image: str
    name: str
    namespace: str = "default"
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    #: ``deploy/NAME[/CONTAINER]`` (or ``pod/``, ``sts/``) whose environment the container gets.
    env_from: str | None = None
    #: ``deploy/NAME[/CONTAINER]`` whose ConfigMap, Secret, downward API and projected volumes the
    #: container mounts at the same paths (read-only copies, kept in step).
    volumes_from: str | None = None
    #: ``deploy/NAME[/CONTAINER]`` whose CPU and memory limits the container gets.
    resources_from: str | None = None
    #: ``HOST_PATH:CONTAINER_PATH[:ro]`` bind mounts.
    volumes: list[str] = dataclasses.field(default_factory=list)
    #: container port (``"8080/tcp"``) -> host port, or ``"IP:PORT"`` on one address of this machine.
    ports: dict[str, int | str] = dataclasses.field(default_factory=dict)
    command: list[str] | None = None
    #: The image's entrypoint replaced (as the engines' run --entrypoint).
    entrypoint: list[str] | None = None
    auto_remove: bool = False
    #: More labels of the container (gefyra's own ones win): ``prefix/name`` -> a label value.
    labels: dict[str, str] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        """Raises UsageError for a bad field, naming it (``RunRequest.image``)."""
        v = validation
        v.image(self.image, "RunRequest.image")
        v.dns_label(self.name, "RunRequest.name", "container name")
        v.dns_label(self.namespace, "RunRequest.namespace", "namespace")
        for key, value in self.env.items():
            v.env_name(key, "RunRequest.env")
            v.text_value(value, "RunRequest.env", f"the value of {key}")
        if self.env_from is not None:
            v.workload(self.env_from, "RunRequest.env_from")
        if self.volumes_from is not None:
            v.workload(self.volumes_from, "RunRequest.volumes_from")
        if self.resources_from is not None:
            v.workload(self.resources_from, "RunRequest.resources_from")
        v.volumes(self.volumes, "RunRequest.volumes")
        v.published_port_values(self.ports, "RunRequest.ports")
        v.command_words(self.command, "RunRequest.command")
        v.command_words(self.entrypoint, "RunRequest.entrypoint")
        for key, value in self.labels.items():
            if not (isinstance(key, str) and _LABEL_KEY.fullmatch(key) and isinstance(value, str)
                    and _LABEL_VALUE.fullmatch(value)):
                raise errors.UsageError(f"RunRequest.labels {v.shown(key)}: {v.shown(value)} is not a label",
                                        "use prefix/name keys and values of at most 63 letters, digits, '-', '_', '.'")


@dataclasses.dataclass
class BridgeRequest:
    """The traffic of ``target``'s ``ports`` sent to the local container ``local``."""

    local: str
    target: str
    ports: dict[int, int]  # remote (container port in the cluster) -> local container port
    namespace: str = "default"
    #: None: the default interceptor.
    interceptor: str | None = None
    #: A personal bridge's conditions (all must hold for a request to come here); none: global.
    matches: list[Match] = dataclasses.field(default_factory=list)
    #: A global bridge that takes connections to the target pods' own addresses too: the pods'
    #: container is swapped in place and restarts (and again at unbridge). Else only what reaches
    #: the workload's Services is taken, and no pod is touched.
    in_place: bool = False
    #: A read-only copy: the matching requests (every HTTP request without ``matches``) are
    #: answered by the workload as before, and a copy of each comes to ``local``, whose answers
    #: go nowhere.
    mirror: bool = False
    #: How the workload speaks on the ports (one of PROTOCOLS): where personal routing needs to know
    #: and its Services do not say (appProtocol). None: what they say.
    protocol: str | None = None
    #: HTTPS ports: a Secret of ``namespace`` with the workload's certificate (type
    #: kubernetes.io/tls; ca.crt where it is not self-signed): the interceptor ends TLS with it and
    #: speaks TLS on. ``tls_verify``: it checks the workload's certificate when it does.
    tls_secret: str | None = None
    tls_verify: bool = True
    wait: bool = True
    timeout: float = 60.0

    @property
    def personal(self) -> bool:
        """A personal bridge or a mirror: HTTP requests routed one by one, ports shared with others."""
        return bool(self.matches) or self.mirror

    def validate(self) -> None:
        """Raises UsageError for a bad field, naming it (``BridgeRequest.ports``)."""
        v = validation
        v.dns_label(self.local, "BridgeRequest.local", "container name")
        v.workload(self.target, "BridgeRequest.target")
        v.bridge_port_values(self.ports, "BridgeRequest.ports")
        v.dns_label(self.namespace, "BridgeRequest.namespace", "namespace")
        if self.interceptor is not None:
            v.dns_label(self.interceptor, "BridgeRequest.interceptor", "interceptor")
        v.match_values(self.matches, "BridgeRequest.matches")
        if self.in_place and self.matches:
            raise errors.UsageError("BridgeRequest.in_place: a personal bridge (matches) cannot be in place",
                                    "leave the conditions out for an in-place bridge, or in_place for a personal one")
        if self.protocol is not None and self.protocol not in PROTOCOLS:
            raise errors.UsageError(f"BridgeRequest.protocol: {self.protocol!r} is not a protocol",
                                    f"one of: {', '.join(PROTOCOLS)}")
        if self.protocol is not None and not self.personal:
            raise errors.UsageError("BridgeRequest.protocol: only personal bridges and mirrors route by protocol",
                                    "leave it out: a global bridge passes connections on as they are")
        if self.tls_secret is not None:
            v.dns_subdomain(self.tls_secret, "BridgeRequest.tls_secret", "Secret name")
            if not self.personal:
                raise errors.UsageError("BridgeRequest.tls_secret: only personal bridges and mirrors end TLS",
                                        "leave it out: a global bridge passes TLS connections on as they are")
        if self.in_place and self.mirror:
            raise errors.UsageError("BridgeRequest.in_place: a mirror cannot be in place",
                                    "leave out in_place (a mirror copies what reaches the workload's Services)")
        v.seconds_value(self.timeout, "BridgeRequest.timeout")
