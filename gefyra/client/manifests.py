"""The cluster side's manifests (manifests/ in the source tree, packaged as gefyra/manifests)."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import string
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gefyra._version import __version__
from gefyra.core.model.names import ANNOTATION_MANIFESTS, TUNNEL_SERVER_ADDRESS
from gefyra.core.model.settings import Settings

_FILES = ("crds.yaml", "gefyra.yaml")


def _directory() -> Path:
    packaged = Path(str(resources.files("gefyra"))) / "manifests"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "manifests"  # editable install / source tree


#: The cluster side's lifecycles (the Namespace's annotation ANNOTATION_LIFECYCLE).
INSTALLED = "install"
WITH_CLIENTS = "with-clients"


def cluster_side(settings: Settings, lifecycle: str = WITH_CLIENTS) -> list[dict[str, Any]]:
    """All objects of the cluster side, rendered for ``settings``, in apply order. The stowaway
    Deployment carries a digest of them all (lifecycle aside), so that `up` can tell whether the
    installed cluster side is the wanted one by reading that one object."""
    values = {
        "stowaway_image": settings.image("stowaway"),
        "operator_image": settings.image("operator"),
        "carrier_image": settings.image("carrier"),
        "version": __version__,
        "tunnel_server_address": f"{TUNNEL_SERVER_ADDRESS}/16",
        "tunnel_mtu": str(settings.tunnel_mtu),
        "port": str(settings.port),
        "client_timeout": str(settings.client_timeout),
    }
    return copy.deepcopy(_rendered(tuple(sorted(values.items())), lifecycle))


@functools.lru_cache(maxsize=8)
def _rendered(values: tuple[tuple[str, str], ...], lifecycle: str) -> list[dict[str, Any]]:
    """Rendering is the slow part (about 60 ms of YAML), and `up` asks several times."""
    documents = _render(dict(values), lifecycle)
    digest = hashlib.sha256(json.dumps(_render(dict(values), ""), sort_keys=True).encode()).hexdigest()[:20]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    deployment["metadata"].setdefault("annotations", {})[ANNOTATION_MANIFESTS] = digest
    return documents


def _render(values: dict[str, str], lifecycle: str) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for name in _FILES:
        text = string.Template((_directory() / name).read_text()).substitute(values, lifecycle=lifecycle)
        documents.extend(doc for doc in yaml.load_all(text, Loader=_LOADER) if doc)
    return documents


#: libyaml's loader where PyYAML has it (several times faster).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
