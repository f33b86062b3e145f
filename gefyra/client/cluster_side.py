"""The cluster side as the client installs, reads and removes it: namespace ``gefyra`` with the
CRDs, the rights, the operator and the tunnel's server end (:mod:`gefyra.client.manifests`), the
server end's key pair, and what developers need to know about the cluster's network (a ConfigMap
written at install with the installer's rights)."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import json
from typing import Any

from gefyra import errors
from gefyra.client import manifests, tunnel_endpoint
from gefyra.core.engine.orchestrator import OperationContext
from gefyra.core.engine.waiting import wait_until
from gefyra.core.kube.cluster import METADATA_ONLY, Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model import validation
from gefyra.core.model.crd import parse_client
from gefyra.core.model.names import (
    ANNOTATION_LIFECYCLE,
    ANNOTATION_MANIFESTS,
    ANNOTATION_SHARED,
    CLIENTS,
    CLUSTER_INFO_CONFIGMAP,
    GEFYRA_NAMESPACE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from gefyra.core.model.settings import SHARED_DEFAULTS, Settings
from gefyra.core.model.workload import Pod
from gefyra.core.spi.tunnel import ServerSide, Tunnel

_NAMESPACE_PATH = path("namespaces", name=GEFYRA_NAMESPACE)
_CLUSTER_NETWORK_PATH = path("configmaps", GEFYRA_NAMESPACE, CLUSTER_INFO_CONFIGMAP)


def deployment_path(settings: Settings, tunnel: Tunnel) -> str:
    """The cluster side's Deployment (the operator and the tunnel's server end)."""
    return path("deployments", GEFYRA_NAMESPACE, tunnel.server_side(settings).deployment)


async def installed_shared(cluster: Cluster, settings: Settings, tunnel: Tunnel) -> dict[str, int]:
    """The shared settings the installed cluster side was installed with ({} when it is not
    installed, or older than this record). Read back from the cluster: checked like any input."""
    found = await cluster.get(deployment_path(settings, tunnel))
    text = ((found or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_SHARED)
    try:
        recorded = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    if not isinstance(recorded, dict):
        return {}

    def sound(key: str, value: object) -> bool:
        if key == "port":
            return validation.is_port(value)
        return isinstance(value, int) and not isinstance(value, bool) and 10 <= value <= validation.MAX_SECONDS

    return {k: v for k, v in recorded.items() if k in SHARED_DEFAULTS and sound(k, v)}


async def resolve_shared(cluster: Cluster, settings: Settings, tunnel: Tunnel, *, may_change: bool) -> Settings:
    """``settings`` with the shared settings as installed where not given. Where one is given and
    differs from the installed one, ConflictError, unless ``may_change`` (an install)."""
    installed = await installed_shared(cluster, settings, tunnel)
    conflicts = settings.shared_conflicts(installed)
    if conflicts and not may_change:
        shown = ", ".join(f"--{k.replace('_', '-')} {given} (installed: {was})" for k, (given, was) in conflicts.items())
        raise errors.ConflictError(
            f"{shown}: the cluster side is shared by every client, and these settings of it change only with an "
            "install", "leave the flag out to use the installed value, or ask an admin to run "
            f"`gefyra install --apply {' '.join(f'--{k.replace(chr(95), chr(45))} {g}' for k, (g, _) in conflicts.items())}`")
    return settings.with_shared(installed)


async def installed_lifecycle(cluster: Cluster) -> str | None:
    """How the cluster side was installed (manifests.INSTALLED or WITH_CLIENTS), None if not."""
    namespace = await cluster.get(_NAMESPACE_PATH)
    if namespace is None:
        return None
    return str((namespace["metadata"].get("annotations") or {}).get(ANNOTATION_LIFECYCLE) or manifests.WITH_CLIENTS)


async def other_clients(cluster: Cluster, client_id: str) -> list[str]:
    """Names of the other clients registered in the cluster, not being deleted (none if gefyra is
    not installed)."""
    found = [parse_client(c) for c in await cluster.objects(path(CLIENTS, GEFYRA_NAMESPACE))]
    return [c.name for c in found if c.name != client_id and not c.deleting]


async def install(ctx: OperationContext, lifecycle: str) -> None:
    """Applies every object of the cluster side (after a removal still under way has finished),
    with the server end's key pair and what developers need to know about the cluster."""
    tunnel = ctx.orchestrator.tunnel()
    docs = manifests.cluster_side(ctx.settings, tunnel, lifecycle)

    async def none_terminating() -> bool:
        found = [await ctx.cluster.get(doc) for doc in docs]
        return not any(f and f["metadata"].get("deletionTimestamp") for f in found)

    if not await none_terminating():
        await ctx.progress("cluster-side", "waiting for a previous removal to finish")
    await wait_until(none_terminating, ctx.settings.timeout, errors.ReadinessTimeoutError(
        "gefyra's cluster side is still being removed", "wait for `gefyra down` to finish, then retry"), 0.5)
    for doc in docs:
        await ctx.cluster.apply(doc)
        if doc["kind"] == "Namespace":
            await _ensure_server_key(ctx.cluster, tunnel, tunnel.server_side(ctx.settings).key_secret)
            await ctx.cluster.apply(await _cluster_network_doc(ctx.cluster))


async def remove(cluster: Cluster, settings: Settings, tunnel: Tunnel, timeout: float) -> None:
    """Deletes every object of the cluster side and waits until all of them are gone (a CRD or
    namespace that is still terminating would swallow the next `up`)."""
    docs = manifests.cluster_side(settings, tunnel)
    for doc in reversed(docs):
        await cluster.delete(doc)

    async def all_gone() -> bool:
        return not any([await cluster.exists(doc) for doc in docs])

    await wait_until(all_gone, timeout, errors.ReadinessTimeoutError(
        f"gefyra's cluster side was not deleted within {timeout:.0f}s", "see `kubectl get all -n gefyra`"), 0.5)


async def _ensure_server_key(cluster: Cluster, tunnel: Tunnel, name: str) -> None:
    """Creates the server end's key pair once; an existing one is checked by its metadata only (the
    private key never comes to this machine again)."""
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": name, "namespace": GEFYRA_NAMESPACE, "labels": {LABEL_MANAGED_BY: MANAGED_BY}}}
    if await cluster.get(secret, accept=METADATA_ONLY) is not None:
        return
    keys = tunnel.generate_keys()
    secret["data"] = {"private-key": base64.b64encode(keys.private.encode()).decode(),
                      "public-key": base64.b64encode(keys.public.encode()).decode()}
    try:
        await cluster.create(secret)
    except errors.ConflictError:
        pass  # another machine's `up` made it a moment ago: that one is the key pair


async def _cluster_network_doc(cluster: Cluster) -> dict[str, Any]:
    """What the tunnel routes and where cluster DNS answers, discovered with the installer's rights
    (a developer with gefyra-user rights reads it from this ConfigMap)."""
    nodes = await cluster.objects(path("nodes"))
    data = {"serviceCIDR": await cluster.service_cidr(), "podCIDRs": " ".join(await cluster.pod_cidrs()),
            "dnsIP": await cluster.cluster_dns_ip(), "apiServiceIP": await cluster.kubernetes_service_ip(),
            "nodeAddresses": " ".join(tunnel_endpoint.node_addresses(nodes))}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CLUSTER_INFO_CONFIGMAP, "namespace": GEFYRA_NAMESPACE,
                         "labels": {LABEL_MANAGED_BY: MANAGED_BY}}, "data": data}


@dataclasses.dataclass(frozen=True)
class ClusterNetwork:
    """The cluster-info ConfigMap's values, checked (they come from the cluster: untrusted)."""

    service_cidr: str
    pod_cidrs: list[str]
    dns_ip: str
    api_service_ip: str
    #: Where the nodes are (ExternalIPs first), as the installer saw them: candidates of the
    #: tunnel's endpoint.
    node_addresses: tuple[str, ...] = ()


async def cluster_network(cluster: Cluster) -> ClusterNetwork:
    found = await cluster.get(_CLUSTER_NETWORK_PATH)
    data = (found or {}).get("data") or {}
    try:
        return ClusterNetwork(service_cidr=str(ipaddress.ip_network(data["serviceCIDR"])),
                              pod_cidrs=[str(ipaddress.ip_network(c)) for c in data.get("podCIDRs", "").split()],
                              dns_ip=str(ipaddress.ip_address(data["dnsIP"])),
                              api_service_ip=str(ipaddress.ip_address(data["apiServiceIP"])),
                              node_addresses=tuple(str(ipaddress.ip_address(a))
                                                   for a in data.get("nodeAddresses", "").split()))
    except (KeyError, ValueError, TypeError) as exc:
        raise errors.GefyraError(f"the ConfigMap {GEFYRA_NAMESPACE}/{CLUSTER_INFO_CONFIGMAP} is missing or malformed "
                                 f"({type(exc).__name__}: {str(exc)[:80]})",
                                 "an admin reinstalls the cluster side: `gefyra install --apply`") from exc


async def nodes_serving_node_port(cluster: Cluster, server: ServerSide) -> tuple[str, ...]:
    """The addresses of the nodes that run the server end's pod, when its NodePort Service answers
    on those nodes only (``externalTrafficPolicy: Local``, which an admin may set on it: `up`
    leaves that field alone); () when every node answers, or when these credentials may not read
    the Service (a cluster side installed before gefyra-user could)."""
    for doc in server.objects:
        spec = doc.get("spec") or {}
        if doc.get("kind") != "Service" or spec.get("type") not in ("NodePort", "LoadBalancer"):
            continue
        try:
            found = await cluster.get(doc)
        except errors.ForbiddenError:
            return ()
        if found is None or (found.get("spec") or {}).get("externalTrafficPolicy") != "Local":
            continue
        selector = ",".join(f"{key}={value}" for key, value in sorted(spec["selector"].items()))
        pods = [Pod.of(p) for p in await cluster.objects(path("pods", doc["metadata"]["namespace"]),
                                                         label_selector=selector)]
        found_at = (_address(p.host_ip) for p in pods if p.ready and not p.deleting)
        return tuple(dict.fromkeys(a for a in found_at if a))
    return ()


def _address(text: str) -> str | None:
    """``text`` as an IP address (a pod's hostIP comes from the cluster: untrusted), or None."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def is_current(found: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """The installed Deployment is the wanted one: its digest of the cluster side is the same (the
    one object a developer with gefyra-user rights reads), and it is not being deleted."""
    digest = wanted["metadata"]["annotations"][ANNOTATION_MANIFESTS]
    return (found is not None and not found["metadata"].get("deletionTimestamp")
            and (found["metadata"].get("annotations") or {}).get(ANNOTATION_MANIFESTS) == digest)


def is_ready(found: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """The Deployment is the wanted one and has a ready pod of its current spec."""
    status = (found or {}).get("status") or {}
    return (found is not None and is_current(found, wanted)
            and status.get("observedGeneration") == found["metadata"]["generation"]
            and status.get("availableReplicas", 0) >= 1 and status.get("updatedReplicas", 0) >= 1)


async def operator_running(cluster: Cluster, settings: Settings, tunnel: Tunnel) -> bool:
    """The cluster side's Deployment exists and has a ready pod."""
    found = await cluster.get(deployment_path(settings, tunnel))
    return (found is not None and not found["metadata"].get("deletionTimestamp")
            and (found.get("status") or {}).get("availableReplicas", 0) > 0)


async def why_not_starting(cluster: Cluster, deployment: dict[str, Any] | None, name: str) -> str | None:
    """Why the Deployment's pod cannot come up (refused by admission, an image not pullable), or
    None while it may still."""
    for condition in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message", ""))[:300]
    pods = await cluster.objects(path("pods", GEFYRA_NAMESPACE), label_selector=f"app.kubernetes.io/name={name}")
    return next((s.cannot_start for p in map(Pod.of, pods) for s in p.statuses if s.cannot_start), None)
