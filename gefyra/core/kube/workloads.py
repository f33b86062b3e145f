"""Workloads and their pods, read from the cluster as :mod:`gefyra.core.model.workload` types.
Used by the client (`run --env-from`, `bridge`), the operator and the interceptor plugins."""

from __future__ import annotations

from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path, workload_path
from gefyra.core.model.workload import Pod, Workload, workload_of


async def read_workload(cluster: Cluster, namespace: str, kind: str, name: str) -> Workload:
    """The workload (deployment, statefulset or pod); NotFoundError if it does not exist."""
    found = await cluster.request("GET", workload_path(namespace, kind, name))
    return workload_of(kind, found)


async def live_pods(cluster: Cluster, namespace: str, kind: str, name: str) -> list[Pod]:
    """The workload's pods that are not being deleted (NotFoundError if the workload is gone)."""
    if kind == "pod":
        pods = [Pod.of(await cluster.request("GET", path("pods", namespace, name)))]
    else:
        selector = (await read_workload(cluster, namespace, kind, name)).selector or ""
        pods = [Pod.of(p) for p in await cluster.objects(path("pods", namespace), label_selector=selector)]
    return [p for p in pods if not p.deleting]
