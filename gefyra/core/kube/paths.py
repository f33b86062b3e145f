"""Every REST path gefyra uses, from one table of the resources it touches: their API group,
version, plural and whether they live in a namespace. Nothing else in gefyra writes a path."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from gefyra.core.model.names import CRD_GROUP, CRD_VERSION


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


_RESOURCES: Final = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("", "v1", "nodes", "Node", namespaced=False),
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "events", "Event"),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("apps", "v1", "statefulsets", "StatefulSet"),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy",
             namespaced=False),
    Resource("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
             "ValidatingAdmissionPolicyBinding", namespaced=False),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False),
    Resource("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", namespaced=False),
    Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False),
    Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", namespaced=False),
    Resource(CRD_GROUP, CRD_VERSION, "gefyraclients", "GefyraClient"),
    Resource(CRD_GROUP, CRD_VERSION, "gefyrabridges", "GefyraBridge"),
)
RESOURCES: Final = {r.plural: r for r in _RESOURCES}
_BY_KIND: Final = {(r.api_version, r.kind): r for r in _RESOURCES}
#: The workload kinds gefyra bridges (model.workload's kinds), by their plural.
WORKLOAD_PLURALS: Final = {"deployment": "deployments", "statefulset": "statefulsets", "pod": "pods"}


def path(plural: str, namespace: str | None = None, name: str = "", subresource: str = "") -> str:
    """The path of a collection (no ``name``), of one object, or of its ``subresource``. A
    namespaced resource without ``namespace`` is the collection across all namespaces."""
    resource = RESOURCES[plural]
    prefix = f"/apis/{resource.api_version}" if resource.group else f"/api/{resource.version}"
    scope = f"/namespaces/{namespace}" if resource.namespaced and namespace is not None else ""
    return prefix + scope + f"/{plural}" + (f"/{name}" if name else "") + (f"/{subresource}" if subresource else "")


def object_path(doc: Mapping[str, Any]) -> str:
    """The path of the object that ``doc`` (a manifest) describes."""
    resource = _BY_KIND[(doc["apiVersion"], doc["kind"])]
    meta = doc["metadata"]
    return path(resource.plural, meta.get("namespace") if resource.namespaced else None, meta["name"])


def collection_path(doc: Mapping[str, Any]) -> str:
    """The path where an object like ``doc`` is created (POST)."""
    resource = _BY_KIND[(doc["apiVersion"], doc["kind"])]
    return path(resource.plural, doc["metadata"].get("namespace") if resource.namespaced else None)


def workload_path(namespace: str, kind: str, name: str) -> str:
    """A workload by its kind as gefyra names it (deployment, statefulset, pod)."""
    return path(WORKLOAD_PLURALS[kind], namespace, name)
