"""The kubeconfig, read the way kubectl reads it, before anything connects: which file(s), which
context, its namespace and server. Every way it can be unusable (missing, empty, not YAML, no
current context, a context that names no cluster) is one clear :class:`gefyra.errors.ConfigError`.

kubectl's rules: every file of ``--kubeconfig`` or ``$KUBECONFIG`` (a list separated by ``:``) is
merged, the first file that sets a name winning; a listed file that does not exist is skipped
unless it is the only one; without either, ``~/.kube/config``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import yaml

from gefyra import errors

_HINT = "pass --kubeconfig FILE (and --context NAME) of a cluster you can reach, as kubectl takes them"


@dataclasses.dataclass(frozen=True)
class KubeContext:
    name: str
    #: The context's namespace (None: the context names none; kubectl then uses "default").
    namespace: str | None
    #: The API server's address, as the context's cluster gives it.
    server: str
    files: tuple[str, ...]


def files(path: str | None) -> list[Path]:
    """The kubeconfig files kubectl would read, in order (``path`` may be a list like $KUBECONFIG)."""
    listed = [p for p in (path or os.environ.get("KUBECONFIG", "")).split(os.pathsep) if p]
    return [Path(p).expanduser() for p in listed] or [Path.home() / ".kube" / "config"]


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise errors.ConfigError(f"the kubeconfig {path} does not exist", _HINT) from exc
    except OSError as exc:
        raise errors.ConfigError(f"cannot read the kubeconfig {path}: {exc.strerror}", _HINT) from exc
    try:
        data = yaml.safe_load(text.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise errors.ConfigError(f"the kubeconfig {path} is not YAML", _HINT) from exc
    if data is None:
        raise errors.ConfigError(f"the kubeconfig {path} is empty", _HINT)
    if not isinstance(data, dict):
        raise errors.ConfigError(f"the kubeconfig {path} is not a kubeconfig (no mapping at its top)", _HINT)
    return data


def _named(entries: Any, key: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get(key), dict):
            found.setdefault(entry["name"], entry[key])
    return found


def read(path: str | None = None, context: str | None = None) -> KubeContext:
    """The context ``context`` (None: the current one) of the kubeconfig ``path`` (None: kubectl's
    default files)."""
    chosen = files(path)
    existing = [p for p in chosen if len(chosen) == 1 or p.exists()]
    if not existing:
        shown = ", ".join(str(p) for p in chosen)
        raise errors.ConfigError(f"no kubeconfig found (looked for {shown})", _HINT)
    contexts: dict[str, dict[str, Any]] = {}
    clusters: dict[str, dict[str, Any]] = {}
    current = ""
    for file in existing:
        data = _load(file)
        for name, value in _named(data.get("contexts"), "context").items():
            contexts.setdefault(name, value)
        for name, value in _named(data.get("clusters"), "cluster").items():
            clusters.setdefault(name, value)
        current = current or str(data.get("current-context") or "")
    where = ", ".join(str(p) for p in existing)
    name = context or current
    if not name:
        raise errors.ConfigError(f"the kubeconfig {where} sets no current context",
                                 "pass --context NAME, or run `kubectl config use-context NAME`")
    if name not in contexts:
        raise errors.ConfigError(f"the kubeconfig {where} has no context {name!r}",
                                 f"its contexts: {', '.join(sorted(contexts)) or 'none'}")
    cluster = clusters.get(str(contexts[name].get("cluster", "")))
    if cluster is None or not isinstance(cluster.get("server"), str) or not cluster["server"]:
        raise errors.ConfigError(f"the context {name!r} of the kubeconfig {where} names no cluster with a server",
                                 "fix the kubeconfig or choose another --context")
    namespace = contexts[name].get("namespace")
    return KubeContext(name, namespace if isinstance(namespace, str) and namespace else None, cluster["server"],
                       tuple(str(p) for p in existing))
