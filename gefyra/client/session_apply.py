"""`gefyra up -f` / `apply -f` / `down -f`: a session file (:mod:`gefyra.core.model.session_file`)
made real, and applied again with only what changed changed.

A container is recreated only when its spec changed (its request, or its built image): each
carries the session's id and a digest of its spec as labels. A recreated container's bridges are
removed with it and made again (its address may change). The bridges that `apply` made are
recorded in ``<config>/sessions/<id>.json`` (a bridge's request -> its name), so that one no
longer in the file is removed and one still in it is kept. Names in the file that belong to a
container of something else (another session, a `gefyra run`) are refused before anything
changes."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from gefyra import errors
from gefyra.client import files
from gefyra.client.results import BridgeInfo, LocalContainer
from gefyra.core.engine.bus import Event, EventBus, EventKind
from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.model.identity import config_dir
from gefyra.core.model.names import LABEL_CLIENT, LABEL_ROLE
from gefyra.core.model.requests import BridgeRequest, RunRequest
from gefyra.core.model.session_file import SessionFile, parse_session
from gefyra.core.model.settings import Settings


class Operations(Protocol):
    """What applying a session uses of :class:`gefyra.Gefyra` (its public operations)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def orchestrator(self) -> Orchestrator: ...

    @property
    def bus(self) -> EventBus: ...

    async def run(self, request: RunRequest) -> LocalContainer: ...
    async def bridge(self, request: BridgeRequest) -> BridgeInfo: ...
    async def unbridge(self, names: list[str] | None = None, *, namespace: str | None = None) -> list[str]: ...
    async def bridges(self) -> list[BridgeInfo]: ...
    async def rm(self, names: list[str] | None = None) -> list[str]: ...

LABEL_SESSION = "gefyra.dev/session"
LABEL_SPEC = "gefyra.dev/spec"


def read(path: str) -> SessionFile:
    """The session file at ``path``; UsageError if it cannot be read or has a mistake."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.UsageError(f"cannot read the session file {path}: {exc}", "name a readable YAML file with -f") from exc
    return parse_session(text, path)


def session_id(path: str) -> str:
    """A session is its file: the digest of the file's absolute path."""
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


def _directory_of(path: str) -> Path:
    """The directory that a file's build contexts are relative to."""
    return Path(path).resolve().parent


def _state_path(sid: str) -> Path:
    return config_dir() / "sessions" / f"{sid}.json"


def _read_state(sid: str) -> dict[str, str]:
    try:
        found = json.loads(_state_path(sid).read_text())
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
    except (OSError, ValueError):
        return {}


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _bridge_key(request: BridgeRequest) -> str:
    return json.dumps(dataclasses.asdict(request), sort_keys=True)


async def apply(g: Operations, session: SessionFile) -> list[str]:
    """Makes the session's containers and bridges what ``session`` says; returns what it did."""
    sid, done = session_id(session.path), []
    runtime = await g.orchestrator.engine()

    async def progress(line: str) -> None:
        await g.bus.publish(Event(EventKind.PROGRESS, "session", line))

    base = _directory_of(session.path)
    mine = {c.name: c for c in await runtime.list_containers({LABEL_CLIENT: g.settings.client_id, LABEL_ROLE: "run"})}
    for name in session.containers:
        found = mine.get(name) or await runtime.get_container(name)
        if found is not None and found.labels.get(LABEL_SESSION) != sid:
            raise errors.ConflictError(f"a container named {name} exists and is not of this session file",
                                       f"remove it (`gefyra rm {name}`) or rename the container in {session.path}")
    wanted: dict[str, RunRequest] = {}
    for name, container in session.containers.items():
        request = container.request
        labels = {LABEL_SESSION: sid}
        if container.build is not None:
            tag = f"gefyra-session-{sid}-{name}:latest"
            image_id = await runtime.build_image(str(base / container.build), tag, progress)
            request, labels[LABEL_SPEC] = dataclasses.replace(request, image=tag), _digest([request, image_id])
        else:
            labels[LABEL_SPEC] = _digest(request)
        wanted[name] = dataclasses.replace(request, labels=labels)
    ours = {n: c for n, c in mine.items() if c.labels.get(LABEL_SESSION) == sid}
    stale = [n for n, c in ours.items() if n not in wanted or c.labels.get(LABEL_SPEC) != wanted[n].labels[LABEL_SPEC]]
    if stale:
        done += await g.rm(stale)  # their bridges first
    bridges = _read_state(sid)
    live = {b.name for b in await g.bridges()}
    requested = {_bridge_key(b): b for b in session.bridges}
    gone = [name for key, name in bridges.items() if key not in requested and name in live]
    if gone:
        done += [f"bridge {b}" for b in await g.unbridge(gone)]
    bridges = {key: name for key, name in bridges.items() if key in requested and name in live}
    for name, request in wanted.items():
        if name in ours and name not in stale:
            continue
        await g.run(request)
        done.append(f"container {name}")
    files.write_json(_state_path(sid), bridges)  # what was removed above
    for key, wanted_bridge in requested.items():
        if key not in bridges:
            made = await g.bridge(wanted_bridge)
            bridges[key] = made.name
            done.append(f"bridge {made.name}")
            files.write_json(_state_path(sid), bridges)  # each bridge as soon as it stands
    return done


async def remove(g: Operations, path: str) -> list[str]:
    """Removes the session of the file ``path``: its containers (their bridges first) and its record."""
    sid = session_id(path)
    runtime = await g.orchestrator.engine()
    ours = [c.name for c in await runtime.list_containers({LABEL_CLIENT: g.settings.client_id, LABEL_ROLE: "run",
                                                          LABEL_SESSION: sid})]
    removed = await g.rm(ours) if ours else []
    _state_path(sid).unlink(missing_ok=True)
    return removed


def forget_all() -> bool:
    """Removes every session record here (`down` removed what they name); False if there was none."""
    records = list((config_dir() / "sessions").glob("*.json"))
    for record in records:
        record.unlink(missing_ok=True)
    return bool(records)
