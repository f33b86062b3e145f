"""`run --env-from`: the environment of a workload's container, as the kubelet builds it from the
pod spec, read through the API and never by running anything in the container. So every value
arrives exactly (several lines, ``=``, any Unicode), a container without a shell or an ``env``
program (distroless, scratch) is no different, and a workload scaled to 0 still has one.

The kubelet's order, which this follows: the Services' variables (``NAME_SERVICE_HOST``, ...,
unless ``enableServiceLinks`` is false; the ``kubernetes`` Service's always), then ``envFrom``
(ConfigMaps and Secrets, with their prefix), then ``env`` (later ones win; ``$(VAR)`` refers to
one defined before, ``$$`` is a literal ``$``). Values that only a running pod knows (its name,
IP, node) come from a running pod of the workload when there is one, and are left out, with a
note, when there is none. ``HOSTNAME``, ``HOME`` and ``PATH`` are the local container's own."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from gefyra import errors
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.kube.workloads import live_pods, read_workload
from gefyra.core.model.workload import parse_workload

#: Names the local container keeps its own values of.
KEPT = frozenset({"HOSTNAME", "HOME", "PATH"})
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_QUANTITY = re.compile(r"([0-9.]+)([a-zA-Z]*)")
_SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


@dataclasses.dataclass
class Environment:
    """The variables, and what could not be copied (one line each, for the user)."""

    variables: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


def expand(value: str, known: Mapping[str, str]) -> str:
    """``$(VAR)`` replaced by a variable defined before, ``$$`` by ``$``; a reference to one that is
    not defined stays as written (as the kubelet does)."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return known[name] if name in known else match.group(0)

    return _REFERENCE.sub(replace, value)


def service_variables(services: list[dict[str, Any]]) -> dict[str, str]:
    """The variables the kubelet gives a pod for these Services (those with a cluster IP)."""
    found: dict[str, str] = {}
    for service in sorted(services, key=lambda s: s["metadata"]["name"]):
        spec = service.get("spec") or {}
        ip, ports = spec.get("clusterIP"), spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = service["metadata"]["name"].upper().replace("-", "_")
        found[f"{name}_SERVICE_HOST"] = ip
        found[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                found[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        first = ports[0]
        found[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            protocol = port.get("protocol", "TCP")
            prefix = f"{name}_PORT_{port['port']}_{protocol.upper()}"
            found[prefix] = f"{protocol.lower()}://{ip}:{port['port']}"
            found[f"{prefix}_PROTO"] = protocol.lower()
            found[f"{prefix}_PORT"] = str(port["port"])
            found[f"{prefix}_ADDR"] = ip
    return found


class _Reader:
    """Reads what the environment refers to, once each, with one clear line for what fails."""

    def __init__(self, cluster: Cluster, namespace: str, ref: str) -> None:
        self.cluster, self.namespace, self.ref = cluster, namespace, ref
        self._found: dict[tuple[str, str], dict[str, str | None] | None] = {}

    async def data(self, kind: str, name: str) -> dict[str, str | None] | None:
        """The data of a ConfigMap or Secret (decoded; None for a value that is not UTF-8 text),
        None if it does not exist."""
        if (kind, name) not in self._found:
            try:
                found = await self.cluster.get(path("configmaps" if kind == "ConfigMap" else "secrets", self.namespace, name))
            except errors.ForbiddenError as exc:
                raise errors.ForbiddenError(f"the environment of {self.ref} takes {kind} {name} of namespace "
                                            f"{self.namespace}, which these credentials may not read", exc.hint) from exc
            self._found[(kind, name)] = None if found is None else self._decoded(kind, name, found)
        return self._found[(kind, name)]

    @staticmethod
    def _decoded(kind: str, name: str, found: dict[str, Any]) -> dict[str, str | None]:
        if kind == "ConfigMap":
            return {k: v for k, v in (found.get("data") or {}).items() if isinstance(v, str)}
        data: dict[str, str | None] = {}
        for key, value in (found.get("data") or {}).items():
            try:
                data[key] = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, TypeError):
                data[key] = None
        return data

    async def key(self, kind: str, selector: Mapping[str, Any]) -> str | None:
        """One key of a ConfigMap or Secret; None where it is optional and missing. A missing one
        that is not optional would keep the pod from starting: an error."""
        name, key = str(selector.get("name", "")), str(selector.get("key", ""))
        data = await self.data(kind, name)
        if data is not None and key in data:
            value = data[key]
            if value is None:
                raise errors.UsageError(f"the key {key} of {kind} {name} (namespace {self.namespace}), which the "
                                        f"environment of {self.ref} takes, is not UTF-8 text: no environment variable "
                                        "can hold it here", "leave --env-from out and pass the others with -e")
            return value
        if selector.get("optional"):
            return None
        raise errors.NotFoundError(f"the environment of {self.ref} takes key {key} of {kind} {name} in namespace "
                                   f"{self.namespace}, which does not exist", "the workload's pods could not start either")


def pod_field(pod: dict[str, Any] | None, namespace: str, field: str) -> str | None:
    """A pod's field (``metadata.name``, ``status.podIP``, ``metadata.labels['x']``...); None where
    it is not known (no running pod)."""
    if field == "metadata.namespace":
        return namespace
    if pod is None:
        return None
    labelled = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", field)
    if labelled:
        return str((pod["metadata"].get(labelled.group(1)) or {}).get(labelled.group(2), ""))
    section, _, name = field.partition(".")
    if field == "status.podIPs":
        return ",".join(i.get("ip", "") for i in (pod.get("status") or {}).get("podIPs") or [])
    value = (pod.get(section) or {}).get(name)
    return str(value) if isinstance(value, str | int) else None


def resource_field(container: dict[str, Any], selector: Mapping[str, Any]) -> str | None:
    """A container's resource field (``limits.cpu``, ``requests.memory`` ...) in its divisor's
    units, rounded up as the kubelet does; None where it is not set (the kubelet would take the
    node's allocatable, which a local container does not have)."""
    kind, _, resource = str(selector.get("resource", "")).partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    if value is None:
        return None
    amount, divisor = _quantity(str(value)), _quantity(str(selector.get("divisor", "1")))
    return str(max(1, math.ceil(amount / divisor))) if amount and divisor else "0"


def limits(container: Mapping[str, Any]) -> tuple[float | None, int | None]:
    """A container spec's CPU and memory limits (CPUs, bytes); None where it sets none."""
    found = (container.get("resources") or {}).get("limits") or {}
    cpu, memory = _quantity(str(found.get("cpu", ""))), _quantity(str(found.get("memory", "")))
    return (cpu or None), (math.ceil(memory) or None)


def _quantity(text: str) -> float:
    match = _QUANTITY.fullmatch(text)
    if not match or match.group(2) not in _SUFFIXES:
        return 0.0
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


async def _value(entry: Mapping[str, Any], known: Mapping[str, str], reader: _Reader, container: dict[str, Any],
                 pod: dict[str, Any] | None, workload: tuple[str, str, str], notes: list[str]) -> str | None:
    """The value of one ``env`` entry; None (with a note) where it cannot be known here."""
    variable, source = str(entry.get("name", "")), entry.get("valueFrom")
    namespace, kind, name = workload
    if source is None:
        return expand(str(entry.get("value", "")), known)
    if "configMapKeyRef" in source:
        return await reader.key("ConfigMap", source["configMapKeyRef"])
    if "secretKeyRef" in source:
        return await reader.key("Secret", source["secretKeyRef"])
    if "fieldRef" in source:
        value = pod_field(pod, namespace, str(source["fieldRef"].get("fieldPath", "")))
        if value is None:
            notes.append(f"{variable} is left out: its value ({source['fieldRef'].get('fieldPath')}) is known to a "
                         f"running pod only, and {kind} {name} has none")
        return value
    if "resourceFieldRef" in source:
        value = resource_field(container, source["resourceFieldRef"])
        if value is None:
            notes.append(f"{variable} is left out: {source['resourceFieldRef'].get('resource')} is not set on the "
                         "container (the kubelet would give the node's allocatable)")
        return value
    notes.append(f"{variable} is left out: gefyra does not know its kind of value")
    return None


@dataclasses.dataclass(frozen=True)
class WorkloadContainer:
    """A container of a workload as its pods get it: its spec, the pod template's spec, and a
    running pod of the workload (None when none runs), whose fields only a pod knows."""

    kind: str
    name: str
    container: dict[str, Any]
    pod_spec: dict[str, Any]
    pod: dict[str, Any] | None


async def workload_container(cluster: Cluster, namespace: str, ref: str) -> WorkloadContainer:
    """The container of ``ref`` (``deploy/NAME[/CONTAINER]``; its only or first container when none
    is named); NotFoundError naming what is missing."""
    kind, name, wanted = parse_workload(ref)
    try:
        workload = await read_workload(cluster, namespace, kind, name)
    except errors.NotFoundError as exc:
        raise errors.NotFoundError(f"{kind} {name} in namespace {namespace} not found",
                                   "name a workload of that namespace (-n)") from exc
    pod_spec = workload.template.get("spec") or {}
    containers = {c["name"]: c for c in pod_spec.get("containers") or []}
    chosen = wanted or next(iter(containers), "")
    if chosen not in containers:
        raise errors.NotFoundError(f"{kind} {name} has no container {chosen!r}", f"its containers: {', '.join(containers)}")
    pods = [p for p in await live_pods(cluster, namespace, kind, name) if p.phase == "Running"]
    pod = await cluster.get(path("pods", namespace, pods[0].name)) if pods else None
    return WorkloadContainer(kind, name, containers[chosen], pod_spec, pod)


async def workload_environment(cluster: Cluster, namespace: str, ref: str) -> Environment:
    """The environment of the container of ``ref`` (see :func:`workload_container`) as its pods get it."""
    chosen = await workload_container(cluster, namespace, ref)
    kind, name, container, pod = chosen.kind, chosen.name, chosen.container, chosen.pod
    reader, result = _Reader(cluster, namespace, ref), Environment()
    variables = result.variables
    if chosen.pod_spec.get("enableServiceLinks", True) is not False:
        variables |= service_variables(await cluster.objects(path("services", namespace)))
    try:  # the kubelet gives every pod the API Service's variables
        kubernetes = await cluster.get(path("services", "default", "kubernetes"))
    except errors.ForbiddenError:
        kubernetes = None
        result.notes.append("the KUBERNETES_SERVICE_* variables are left out: these credentials may not read the "
                            "Service default/kubernetes")
    variables |= {k: v for k, v in service_variables([kubernetes] if kubernetes else []).items()
                  if k.startswith("KUBERNETES_")}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        for kind_name, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field not in source:
                continue
            ref_name = str(source[field].get("name", ""))
            data = await reader.data(kind_name, ref_name)
            if data is None and not source[field].get("optional"):
                raise errors.NotFoundError(f"the environment of {ref} takes {kind_name} {ref_name} in namespace "
                                           f"{namespace}, which does not exist", "the workload's pods could not start either")
            for key, value in (data or {}).items():
                if not _ENV_NAME.fullmatch(prefix + key):
                    result.notes.append(f"{kind_name} {ref_name}: key {key!r} is not a variable name (the kubelet "
                                        "skips it too)")
                elif value is None:
                    result.notes.append(f"{kind_name} {ref_name}: key {key!r} is left out: it is not UTF-8 text")
                else:
                    variables[prefix + key] = value
    for entry in container.get("env") or []:
        variable = str(entry.get("name", ""))
        found = await _value(entry, variables, reader, container, pod, (namespace, kind, name), result.notes)
        if found is not None:
            variables[variable] = found
    result.variables = {k: v for k, v in variables.items() if k not in KEPT}
    return result
