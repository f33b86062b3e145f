"""Workloads as gefyra reads them: references (``deploy/NAME[/CONTAINER]``), and typed views of the
pods and containers the cluster returns, parsed once from their JSON. What the cluster returns
is untrusted: a field of the wrong type reads as absent."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from gefyra import errors
from gefyra.core.model.validation import WORKLOAD_ALIASES

#: The kinds of workload gefyra bridges and reads environments from.
WORKLOAD_KINDS = frozenset(WORKLOAD_ALIASES.values())


def parse_workload(ref: str) -> tuple[str, str, str | None]:
    """``deploy/NAME[/CONTAINER]`` (also ``pod/``, ``sts/``) -> (kind, name, container or None)."""
    parts = ref.split("/")
    if len(parts) not in (2, 3) or parts[0] not in WORKLOAD_ALIASES or not parts[1] or (len(parts) == 3 and not parts[2]):
        raise errors.UsageError(f"cannot read the workload {ref!r}",
                                "write it as deploy/NAME[/CONTAINER], pod/NAME[/CONTAINER] or sts/NAME[/CONTAINER]")
    return WORKLOAD_ALIASES[parts[0]], parts[1], parts[2] if len(parts) == 3 else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> dict[str, str]:
    return {str(k): v for k, v in _map(value).items() if isinstance(v, str)}


@dataclasses.dataclass(frozen=True)
class ContainerPort:
    number: int
    name: str = ""
    protocol: str = "TCP"


@dataclasses.dataclass(frozen=True)
class Probe:
    """A liveness, readiness or startup probe: its action (``http``, ``tcp``, ``exec``, ``grpc``)
    and, for ``http`` and ``tcp``, its port (a number or a port's name)."""

    action: str
    port: int | str | None = None


@dataclasses.dataclass(frozen=True)
class Container:
    """A container of a pod spec."""

    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    probes: tuple[Probe, ...] = ()
    pull_policy: str = ""

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Container:
        ports = tuple(ContainerPort(p["containerPort"], _text(p.get("name")), _text(p.get("protocol")) or "TCP")
                      for p in _list(data.get("ports")) if isinstance(p, Mapping) and isinstance(p.get("containerPort"), int))
        probes = []
        for key in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = _map(data.get(key))
            for action, field in (("http", "httpGet"), ("tcp", "tcpSocket"), ("exec", "exec"), ("grpc", "grpc")):
                if field in probe:
                    port = _map(probe[field]).get("port")
                    probes.append(Probe(action, port if isinstance(port, int | str) else None))
        return cls(name=_text(data.get("name")), image=_text(data.get("image")),
                   command=tuple(str(c) for c in _list(data.get("command"))),
                   args=tuple(str(a) for a in _list(data.get("args"))), ports=ports, probes=tuple(probes),
                   pull_policy=_text(data.get("imagePullPolicy")))

    def port_number(self, port: int | str | None) -> int | None:
        """A port given as a number or by the name of one of the container's ports."""
        if isinstance(port, int):
            return port
        return next((p.number for p in self.ports if p.name and p.name == port), None)

    def undeclared(self, ports: Sequence[int]) -> str | None:
        """Why the container cannot be bridged on ``ports`` (one it does not declare: a typo, most
        likely), or None. A container that declares no port at all may be bridged on any (many
        leave ``ports`` out: declaring them is optional in Kubernetes)."""
        if not self.ports:
            return None
        declared = {p.number for p in self.ports}
        unknown = sorted(set(ports) - declared)
        if unknown:
            return (f"container {self.name} declares no port {unknown[0]} "
                    f"(its ports: {', '.join(map(str, sorted(declared))) or 'none'})")
        return None


#: Waiting reasons of a container that will not start by waiting longer.
CANNOT_START = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                          "CreateContainerError", "ErrImageNeverPull"})


@dataclasses.dataclass(frozen=True)
class ContainerStatus:
    name: str
    #: ``containerd://ID`` as the kubelet reports it ("" before the container exists).
    container_id: str = ""
    running: bool = False
    ready: bool = False
    restarts: int = 0
    image: str = ""
    #: Why it waits (``ImagePullBackOff``, ``CrashLoopBackOff``, ...), "" when it does not.
    waiting: str = ""
    message: str = ""
    #: When its previous run ended (RFC 3339, "" if it never ended).
    last_finished: str = ""

    @property
    def cannot_start(self) -> str:
        """Why the container will not start by waiting longer ("" when it may)."""
        if self.waiting not in CANNOT_START:
            return ""
        return f"container {self.name}, image {self.image}: {self.waiting}: {self.message[:200]}"

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ContainerStatus:
        state = _map(data.get("state"))
        waiting = _map(state.get("waiting"))
        finished = _map(_map(data.get("lastState")).get("terminated")).get("finishedAt")
        restarts = data.get("restartCount")
        return cls(name=_text(data.get("name")), container_id=_text(data.get("containerID")),
                   running="running" in state, ready=data.get("ready") is True,
                   restarts=restarts if isinstance(restarts, int) else 0, image=_text(data.get("image")),
                   waiting=_text(waiting.get("reason")), message=_text(waiting.get("message")),
                   last_finished=_text(finished))


#: kubelet's restart back-off: the first restart waits this long, each further one twice as long,
#: up to the maximum; after twice the maximum without a restart, it starts over.
BACK_OFF_FIRST, BACK_OFF_MAX = 10.0, 300.0


def restart_back_off(status: ContainerStatus, now: float) -> float:
    """About how long kubelet will hold the container back at its next restart (0: not at all).
    An estimate from its restart count and when it last ended, as kubelet doubles the wait."""
    if not status.restarts or not status.last_finished:
        return 0.0
    try:
        ended = datetime.datetime.fromisoformat(status.last_finished.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    if now - ended > 2 * BACK_OFF_MAX:
        return 0.0
    return float(min(BACK_OFF_FIRST * 2 ** min(status.restarts - 1, 10), BACK_OFF_MAX))


@dataclasses.dataclass(frozen=True)
class Pod:
    """A pod: what gefyra reads of its metadata, spec and status."""

    name: str
    namespace: str
    ip: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: The address of the node it runs on ("" before it is scheduled and started).
    host_ip: str = ""
    #: It is being deleted.
    deleting: bool = False
    phase: str = ""
    #: Its Ready condition is True.
    ready: bool = False
    containers: tuple[Container, ...] = ()
    statuses: tuple[ContainerStatus, ...] = ()

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Pod:
        metadata, spec, status = _map(data.get("metadata")), _map(data.get("spec")), _map(data.get("status"))
        conditions = [_map(c) for c in _list(status.get("conditions"))]
        return cls(name=_text(metadata.get("name")), namespace=_text(metadata.get("namespace")),
                   ip=_text(status.get("podIP")), labels=_strings(metadata.get("labels")),
                   annotations=_strings(metadata.get("annotations")), host_ip=_text(status.get("hostIP")),
                   deleting=bool(metadata.get("deletionTimestamp")),
                   phase=_text(status.get("phase")),
                   ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
                   containers=tuple(Container.of(c) for c in _list(spec.get("containers")) if isinstance(c, Mapping)),
                   statuses=tuple(ContainerStatus.of(s) for s in _list(status.get("containerStatuses"))
                                  if isinstance(s, Mapping)))

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)

    def status(self, name: str) -> ContainerStatus | None:
        """The status of the container ``name``, None while the pod has none for it."""
        return next((s for s in self.statuses if s.name == name), None)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A workload's pod template as gefyra needs it, and the label selector of its pods (None for
    a bare pod)."""

    kind: str
    name: str
    namespace: str
    containers: tuple[Container, ...]
    labels: Mapping[str, str]
    selector: str | None
    #: The pod template (metadata and spec) as JSON, for those who read more of it.
    template: Mapping[str, Any]

    def container(self, name: str) -> Container | None:
        return next((c for c in self.containers if c.name == name), None)


def label_selector(selector: Mapping[str, Any]) -> str:
    """A workload's whole selector (matchLabels and matchExpressions) as a label selector query.
    Raises UsageError for an operator Kubernetes does not define."""
    terms = [f"{k}={v}" for k, v in _strings(selector.get("matchLabels")).items()]
    for expression in _list(selector.get("matchExpressions")):
        expression = _map(expression)
        key, operator = _text(expression.get("key")), expression.get("operator")
        values = ",".join(str(v) for v in _list(expression.get("values")))
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            raise errors.UsageError(f"the workload's selector has an unknown operator {operator!r}")
    return ",".join(terms)


def workload_of(kind: str, data: Mapping[str, Any]) -> Workload:
    """A Deployment's, StatefulSet's or Pod's JSON as a :class:`Workload`."""
    metadata = _map(data.get("metadata"))
    if kind == "pod":
        template: Mapping[str, Any] = {"metadata": metadata, "spec": _map(data.get("spec"))}
        selector = None
    else:
        spec = _map(data.get("spec"))
        template = _map(spec.get("template"))
        selector = label_selector(_map(spec.get("selector")))
    containers = tuple(Container.of(c) for c in _list(_map(template.get("spec")).get("containers"))
                       if isinstance(c, Mapping))
    return Workload(kind, _text(metadata.get("name")), _text(metadata.get("namespace")), containers,
                    _strings(_map(template.get("metadata")).get("labels")), selector, template)
