"""Workload references (``deploy/NAME[/CONTAINER]``, ``pod/...``, ``sts/...``) and their pods.
Used by the CLI side (`run --env-from`, `bridge`) and by the operator alike."""

from __future__ import annotations

from kubernetes_asyncio import client

from gefyra import errors
from gefyra.core.model.validation import WORKLOAD_ALIASES as _KINDS


def parse_workload(ref: str) -> tuple[str, str, str | None]:
    """``deploy/NAME[/CONTAINER]`` (also ``pod/``, ``sts/``) -> (kind, name, container or None)."""
    parts = ref.split("/")
    if len(parts) not in (2, 3) or parts[0] not in _KINDS or not parts[1] or (len(parts) == 3 and not parts[2]):
        raise errors.UsageError(f"cannot read the workload {ref!r}",
                                "write it as deploy/NAME[/CONTAINER], pod/NAME[/CONTAINER] or sts/NAME[/CONTAINER]")
    return _KINDS[parts[0]], parts[1], parts[2] if len(parts) == 3 else None


def container_status(pod: client.V1Pod, name: str) -> client.V1ContainerStatus | None:
    """The status of the container ``name`` of ``pod``, None while the pod has none for it."""
    return next((s for s in pod.status.container_statuses or [] if s.name == name), None)


def undeclared_port(container: client.V1Container, ports: list[int]) -> str | None:
    """Why ``container`` cannot be bridged on ``ports`` (one it does not declare), or None."""
    declared = {p.container_port for p in container.ports or []}
    unknown = sorted(set(ports) - declared)
    if unknown:
        return (f"container {container.name} declares no port {unknown[0]} "
                f"(its ports: {', '.join(map(str, sorted(declared))) or 'none'})")
    return None


async def pod_spec_and_selector(api: client.ApiClient, namespace: str, kind: str, name: str
                                ) -> tuple[client.V1PodSpec, str | None]:
    """The pod spec of the workload and the label selector of its pods (None for a bare pod).
    Raises the kubernetes_asyncio ApiException (404) if the workload does not exist."""
    if kind == "pod":
        pod = await client.CoreV1Api(api).read_namespaced_pod(name, namespace)
        return pod.spec, None
    apps = client.AppsV1Api(api)
    reader = apps.read_namespaced_deployment if kind == "deployment" else apps.read_namespaced_stateful_set
    workload = await reader(name, namespace)
    return workload.spec.template.spec, label_selector(workload.spec.selector)


def label_selector(selector: client.V1LabelSelector) -> str:
    """A workload's whole selector (matchLabels and matchExpressions) as a label selector query.
    Raises UsageError for an operator Kubernetes does not define."""
    terms = [f"{k}={v}" for k, v in (selector.match_labels or {}).items()]
    for expression in selector.match_expressions or []:
        key, operator, values = expression.key, expression.operator, ",".join(expression.values or [])
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


async def live_pods(api: client.ApiClient, namespace: str, kind: str, name: str) -> list[client.V1Pod]:
    """The workload's pods that are not being deleted."""
    core = client.CoreV1Api(api)
    if kind == "pod":
        pods = [await core.read_namespaced_pod(name, namespace)]
    else:
        _, selector = await pod_spec_and_selector(api, namespace, kind, name)
        pods = (await core.list_namespaced_pod(namespace, label_selector=selector or "")).items
    return [p for p in pods if not p.metadata.deletion_timestamp]
