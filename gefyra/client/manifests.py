"""The cluster side's manifests: gefyra's own (manifests/ in the source tree, packaged as
gefyra/manifests: namespace, CRDs, rights, the ownership policy, the operator's Deployment) with
the tunnel backend's server end merged in (:meth:`gefyra.core.spi.tunnel.Tunnel.server_side`)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gefyra._version import __version__
from gefyra.core.model.names import ANNOTATION_MANIFESTS, ANNOTATION_SHARED
from gefyra.core.model.settings import ENVIRONMENT, SHARED_DEFAULTS, Settings, image_overrides
from gefyra.core.spi.tunnel import ServerSide, Tunnel

_FILES = ("crds.yaml", "gefyra.yaml")
OPERATOR_CONTAINER = "operator"


def _directory() -> Path:
    packaged = Path(str(resources.files("gefyra"))) / "manifests"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "manifests"  # editable install / source tree


#: The cluster side's lifecycles (the Namespace's annotation ANNOTATION_LIFECYCLE).
INSTALLED = "install"
WITH_CLIENTS = "with-clients"


def cluster_side(settings: Settings, tunnel: Tunnel, lifecycle: str = WITH_CLIENTS) -> list[dict[str, Any]]:
    """All objects of the cluster side, rendered for ``settings``, in apply order. Its Deployment
    carries a digest of them all (lifecycle aside), so that `up` can tell whether the installed
    cluster side is the wanted one by reading that one object, and the shared settings it was
    installed with (unset ones in ``settings`` are taken as their defaults here)."""
    settings = settings.with_shared()
    server = tunnel.server_side(settings)
    values = {
        "operator_image": settings.image("operator"),
        "version": __version__,
        "client_timeout": str(settings.client_timeout),
        "deployment": server.deployment,
        "pod_security": server.pod_security,
        # Never empty: an empty resourceNames would grant every Service of the namespace.
        "server_services": ", ".join(doc["metadata"]["name"] for doc in server.objects
                                     if doc.get("kind") == "Service") or server.deployment,
    }
    key = tuple(sorted(values.items()))
    documents = [*_rendered(key, lifecycle), *_objects(server)]
    _add_server_end(_deployment(documents, server.deployment), server, settings)
    anonymous = [*_rendered(key, ""), *_objects(server)]
    _add_server_end(_deployment(anonymous, server.deployment), server, settings)
    digest = hashlib.sha256(json.dumps(anonymous, sort_keys=True).encode()).hexdigest()[:20]
    annotations = _deployment(documents, server.deployment)["metadata"].setdefault("annotations", {})
    annotations[ANNOTATION_MANIFESTS] = digest
    annotations[ANNOTATION_SHARED] = json.dumps({k: getattr(settings, k) for k in SHARED_DEFAULTS}, sort_keys=True)
    return documents


def deployment(settings: Settings, tunnel: Tunnel) -> dict[str, Any]:
    """The cluster side's Deployment (operator and server end) as wanted now."""
    return _deployment(cluster_side(settings, tunnel), tunnel.server_side(settings).deployment)


def _objects(server: ServerSide) -> list[dict[str, Any]]:
    return [dict(copy.deepcopy(doc)) for doc in server.objects]


def _deployment(documents: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


def _operator_env(settings: Settings) -> list[dict[str, str]]:
    """Where gefyra's images come from, as on this machine: the interceptors run them in pods."""
    env = {"GEFYRA_IMAGE_PREFIX": settings.image_prefix, "GEFYRA_IMAGE_TAG": settings.image_tag}
    if settings.registry:
        env[ENVIRONMENT["registry"]] = settings.registry
    env |= image_overrides()
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _add_server_end(found: dict[str, Any], server: ServerSide, settings: Settings) -> None:
    """The server end's containers (first: `kubectl logs` shows them by default) and volumes in
    the Deployment's pod, and what the operator's container needs of it."""
    pod = found["spec"]["template"]["spec"]
    operator = next(c for c in pod["containers"] if c["name"] == OPERATOR_CONTAINER)
    operator["env"] = [*operator["env"], *_operator_env(settings)]
    operator["volumeMounts"] = [*copy.deepcopy(list(server.operator_mounts)), *operator["volumeMounts"]]
    operator["securityContext"] = _merged(operator["securityContext"], server.operator_security_context)
    pod["securityContext"] = _merged(pod.get("securityContext") or {}, server.pod_security_context)
    pod["containers"] = [*copy.deepcopy(list(server.containers)), *pod["containers"]]
    pod["volumes"] = [*copy.deepcopy(list(server.volumes)), *pod["volumes"]]


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s fields, mappings merged field by field (a list replaces a list)."""
    merged = dict(copy.deepcopy(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _rendered(values: tuple[tuple[str, str], ...], lifecycle: str) -> list[dict[str, Any]]:
    return copy.deepcopy(_render(values, lifecycle))


@functools.lru_cache(maxsize=8)
def _render(values: tuple[tuple[str, str], ...], lifecycle: str) -> list[dict[str, Any]]:
    """Rendering is the slow part (about 60 ms of YAML), and `up` asks several times."""
    documents: list[dict[str, Any]] = []
    for name in _FILES:
        text = string.Template((_directory() / name).read_text()).substitute(dict(values), lifecycle=lifecycle)
        documents.extend(doc for doc in yaml.load_all(text, Loader=LOADER) if doc)
    return documents


#: libyaml's loader where PyYAML has it (several times faster).
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
