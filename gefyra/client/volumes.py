"""`run --volumes-from`: the files that a workload's container gets from its ConfigMap, Secret,
downward API and projected volumes, read through the API, written on this machine and mounted
read-only at the same paths in the local container; kept in step while it runs, as the kubelet
keeps them (a helper process, :mod:`gefyra.client.volume_keeper`, reads them again every few
seconds).

Where they live: ``<config>/volumes/<container>/`` (mode 0700: no other user of this machine reads
a Secret's copy), one directory per volume. A volume's directory is written as the kubelet writes
one: the files in a directory of their own, ``..data`` a symlink to it, and each top-level name a
symlink into ``..data``; an update writes a new directory and swaps ``..data`` at once, so that a
program never reads half a change. `rm` and `down` remove the directory (and its keeper).

What a volume refers to (mount paths, keys, item paths, modes) comes from the cluster: it is
checked before it names a file here or a mount there."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import posixpath
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gefyra import errors
from gefyra.client import processes
from gefyra.client.environment import WorkloadContainer, pod_field, resource_field, workload_container
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model import validation
from gefyra.core.model.identity import config_dir

#: The kubelet's default mode of a volume's files.
_DEFAULT_MODE = 0o644
#: A path inside a volume or a container: printable, no ':' (it separates a bind mount's parts).
_SAFE_PATH = re.compile(r"[^\x00-\x1f\x7f:]{1,1024}")


@dataclasses.dataclass(frozen=True)
class VolumeFile:
    path: str
    data: bytes
    mode: int = _DEFAULT_MODE


@dataclasses.dataclass(frozen=True)
class Mount:
    """A volume mounted in the container: at ``path``, all of it or its ``sub_path``."""

    volume: str
    path: str
    sub_path: str = ""


@dataclasses.dataclass
class VolumeCopy:
    """The files of each volume that the container mounts, its mounts, and what was not copied."""

    files: dict[str, list[VolumeFile]] = dataclasses.field(default_factory=dict)
    mounts: list[Mount] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def directory(container: str) -> Path:
    """Where the copies of the local container ``container`` live."""
    return config_dir() / "volumes" / validation.dns_label(container, "container", "container name")


def _relative(text: Any, what: str) -> str:
    """A relative path inside a volume (an item's path, a subPath): no '..', not absolute."""
    if not isinstance(text, str) or not _SAFE_PATH.fullmatch(text) or text.startswith("/") \
            or ".." in text.split("/") or posixpath.normpath(text) != text.rstrip("/"):
        raise errors.GefyraError(f"{what} {validation.shown(text)} is not a relative path inside a volume")
    return text


def _absolute(text: Any, what: str) -> str:
    if not isinstance(text, str) or not _SAFE_PATH.fullmatch(text) or not text.startswith("/") \
            or ".." in text.split("/"):
        raise errors.GefyraError(f"{what} {validation.shown(text)} is not an absolute path without ':' or '..'")
    return text


def _mode(value: Any, default: int) -> int:
    return value & 0o777 if isinstance(value, int) and not isinstance(value, bool) else default


class _Sources:
    """Reads ConfigMaps and Secrets once each."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self._found: dict[tuple[str, str], dict[str, bytes] | None] = {}

    async def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        if (kind, name) not in self._found:
            try:
                found = await self.cluster.get(path("configmaps" if kind == "configMap" else "secrets", self.namespace,
                                                    name))
            except errors.ForbiddenError as exc:
                raise errors.ForbiddenError(f"the volumes take the {kind} {name} of namespace {self.namespace}, which "
                                            "these credentials may not read", exc.hint) from exc
            self._found[(kind, name)] = None if found is None else _decoded(kind, found)
        return self._found[(kind, name)]


def _decoded(kind: str, found: Mapping[str, Any]) -> dict[str, bytes]:
    data: dict[str, bytes] = {}
    encoded = dict(found.get("binaryData") or {}) if kind == "configMap" else dict(found.get("data") or {})
    if kind == "configMap":
        data = {k: v.encode() for k, v in (found.get("data") or {}).items() if isinstance(v, str)}
    for key, value in encoded.items():
        try:
            data[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            continue
    return data


async def _keyed(sources: _Sources, kind: str, source: Mapping[str, Any], default: int, volume: str
                 ) -> list[VolumeFile]:
    """A ConfigMap's or Secret's keys as files (all, or its items)."""
    name = str(source.get("name" if kind == "configMap" else "secretName", source.get("name", "")))
    data = await sources.data(kind, name)
    if data is None:
        if source.get("optional"):
            return []
        raise errors.NotFoundError(f"volume {volume} takes the {kind} {name}, which does not exist",
                                   "the workload's pods could not start either")
    items = source.get("items")
    if not items:
        return [VolumeFile(_relative(k, f"the key of {kind} {name}"), v, default) for k, v in sorted(data.items())]
    found = []
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if source.get("optional"):
                continue
            raise errors.NotFoundError(f"volume {volume} takes key {key!r} of the {kind} {name}, which it does not have")
        found.append(VolumeFile(_relative(item.get("path"), f"an item of volume {volume}"), data[key],
                                _mode(item.get("mode"), default)))
    return found


def _map_text(values: Mapping[str, Any]) -> bytes:
    """Labels or annotations as the downward API writes them: ``key="value"`` lines, sorted."""
    return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items())).encode()


def _downward(chosen: WorkloadContainer, namespace: str, source: Mapping[str, Any], default: int, volume: str,
              notes: list[str]) -> list[VolumeFile]:
    found = []
    for item in source.get("items") or []:
        target = _relative(item.get("path"), f"an item of volume {volume}")
        value: str | bytes | None = None
        if "fieldRef" in item:
            field = str(item["fieldRef"].get("fieldPath", ""))
            if field in ("metadata.labels", "metadata.annotations"):
                value = _map_text(((chosen.pod or {}).get("metadata") or {}).get(field.split(".")[1]) or {}) \
                    if chosen.pod else None
            else:
                value = pod_field(chosen.pod, namespace, field)
        elif "resourceFieldRef" in item:
            value = resource_field(chosen.container, item["resourceFieldRef"])
        if value is None:
            notes.append(f"volume {volume}: {target} is left out (only a running pod of the workload knows it)")
            continue
        found.append(VolumeFile(target, value if isinstance(value, bytes) else value.encode(),
                                _mode(item.get("mode"), default)))
    return found


async def workload_volumes(cluster: Cluster, namespace: str, ref: str) -> VolumeCopy:
    """The files of the volumes that the container of ``ref`` mounts (ConfigMap, Secret, downward
    API, projected), with their mounts; other kinds of volume are named in the notes."""
    chosen = await workload_container(cluster, namespace, ref)
    volumes = {str(v.get("name")): v for v in chosen.pod_spec.get("volumes") or [] if isinstance(v, dict)}
    sources, copy = _Sources(cluster, namespace), VolumeCopy()
    for mount in chosen.container.get("volumeMounts") or []:
        name = str(mount.get("name", ""))
        volume = volumes.get(name)
        if volume is None or not validation.is_dns_label(name):
            continue
        if name not in copy.files:
            files = await _volume_files(sources, chosen, namespace, volume, name, copy.notes)
            if files is None:
                copy.notes.append(f"volume {name} ({_kind(volume)}) is not copied: only ConfigMap, Secret, downward API "
                                  "and projected volumes are")
                continue
            copy.files[name] = files
        copy.mounts.append(Mount(name, _absolute(mount.get("mountPath"), f"the mount path of volume {name}"),
                                 _relative(mount["subPath"], f"the subPath of volume {name}") if mount.get("subPath")
                                 else ""))
    return copy


def _kind(volume: Mapping[str, Any]) -> str:
    return next((k for k in volume if k != "name"), "unknown")


async def _volume_files(sources: _Sources, chosen: WorkloadContainer, namespace: str, volume: Mapping[str, Any], name: str,
                        notes: list[str]) -> list[VolumeFile] | None:
    kind = _kind(volume)
    spec = volume.get(kind) or {}
    default = _mode(spec.get("defaultMode"), _DEFAULT_MODE)
    if kind in ("configMap", "secret"):
        return await _keyed(sources, kind, spec, default, name)
    if kind == "downwardAPI":
        return _downward(chosen, namespace, spec, default, name, notes)
    if kind != "projected":
        return None
    files: list[VolumeFile] = []
    for source in spec.get("sources") or []:
        for part, detail in source.items():
            if part in ("configMap", "secret"):
                files += await _keyed(sources, part, detail, default, name)
            elif part == "downwardAPI":
                files += _downward(chosen, namespace, detail, default, name, notes)
            else:
                notes.append(f"volume {name}: its {part} source is not copied (a credential of the cluster's own)")
    return files


def write(target: Path, files: list[VolumeFile]) -> bool:
    """``files`` as the content of the volume directory ``target`` (see the module); False when
    it has them already."""
    target.mkdir(parents=True, exist_ok=True)
    current = target / "..data"
    if current.is_dir() and _content(current) == {f.path: (f.data, f.mode | 0o400) for f in files}:
        return False
    stamp = target / f"..{time.time_ns()}"
    for file in files:
        destination = stamp / file.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(file.data)
        os.chmod(destination, file.mode | 0o400)
    stamp.mkdir(exist_ok=True)  # a volume without files
    swap = target / "..data_tmp"
    swap.unlink(missing_ok=True)
    os.symlink(stamp.name, swap)
    os.replace(swap, current)
    tops = {f.path.split("/")[0] for f in files}
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            if entry.name not in ("..data", stamp.name) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
        elif entry.is_symlink() and entry.name not in tops:
            entry.unlink()
    for top in tops:
        link = target / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    return True


def _content(data: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(data)): (p.read_bytes(), p.stat().st_mode & 0o777) for p in data.rglob("*") if p.is_file()}


# The copies of one local container, and their keeper.

#: The keeper's module (``python -m``), also how its process is recognised.
KEEPER = "gefyra.client.volume_keeper"


@dataclasses.dataclass(frozen=True)
class KeeperConfig:
    """What the keeper reads again: the cluster (the kubeconfig as the user passed it, never its
    content) and the workload whose volumes it copies."""

    kubeconfig: str | None
    context: str | None
    namespace: str
    ref: str


def volume_directory(container: str, volume: str) -> Path:
    return directory(container) / "v" / volume


async def copy(cluster: Cluster, container: str, namespace: str, ref: str) -> VolumeCopy:
    """The volumes of ``ref`` written for the local container ``container`` (its directory made
    anew); the mounts name their directories with :func:`bind_mounts`."""
    found = await workload_volumes(cluster, namespace, ref)
    base = directory(container)
    await remove(container)
    base.mkdir(parents=True, mode=0o700)
    os.chmod(base, 0o700)
    for name, files in found.files.items():
        write(volume_directory(container, name), files)
    return found


def bind_mounts(container: str, found: VolumeCopy) -> list[str]:
    """``HOST:CONTAINER:ro`` for each mount (a subPath: the file or directory it names, resolved)."""
    mounts = []
    for mount in found.mounts:
        host = volume_directory(container, mount.volume)
        if mount.sub_path:
            host = Path(os.path.realpath(host / mount.sub_path))
        mounts.append(f"{host}:{mount.path}:ro")
    return mounts


def start_keeper(container: str, config: KeeperConfig) -> None:
    """The keeper of ``container``'s copies: it reads them again every few seconds until its
    directory is gone."""
    base = directory(container)
    (base / "keeper.json").write_text(json.dumps(dataclasses.asdict(config)))
    process = processes.spawn(KEEPER, ["--directory", str(base)], base / "keeper.log")
    (base / "keeper.pid").write_text(str(process.pid))


def read_keeper_config(base: Path) -> KeeperConfig | None:
    try:
        return KeeperConfig(**json.loads((base / "keeper.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


async def remove(container: str) -> bool:
    """Ends ``container``'s keeper and removes its copies; False if there were none."""
    base = directory(container)
    if not base.exists():
        return False
    try:
        pid = int((base / "keeper.pid").read_text())
    except (OSError, ValueError):
        pid = 0
    if pid:
        await processes.terminate(pid, KEEPER)  # first: it must not write into what is being removed
    shutil.rmtree(base, ignore_errors=True)
    return True


def copied_containers() -> list[str]:
    """The local containers that have copies here."""
    root = config_dir() / "volumes"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and validation.is_dns_label(p.name)) \
        if root.is_dir() else []
