"""What each carrier should run, and what it says it runs. carrier's agent asks the operator's
endpoint for its configuration (a long poll: it asks again at once with the version it runs, and
the answer comes when there is a newer one), so the operator needs no exec rights in any pod.

A carrier is known by its pod's IP and, where one pod runs several carriers (two bridged
containers), by its container: the agent sends the container's name (or, where it cannot read
that, its ID, and the in-place mode tells the board which container each ID is)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import anyio

from gefyra.core.spi.interceptor import HttpAnswer

#: Seconds the endpoint holds a request that has nothing new (carrier's agent waits 35 s).
LONG_POLL = 25.0

#: (pod IP, container name); the name is "" for a pod that runs one carrier only (a router).
Key = tuple[str, str]


class ConfigBoard:
    def __init__(self) -> None:
        self._wanted: dict[Key, tuple[str, bytes]] = {}
        #: Files that go with a configuration, sealed to the asking agent's key in each answer.
        self._files: dict[Key, Mapping[str, bytes]] = {}
        self._applied: dict[Key, str] = {}
        self._changed: dict[Key, anyio.Event] = {}
        #: pod IP -> {running container ID -> container name}, from the pods' status.
        self._containers: dict[str, dict[str, str]] = {}

    def want(self, key: Key, version: str, body: bytes, files: Mapping[str, bytes] | None = None) -> None:
        """The carrier at ``key`` is to run ``body`` (a JSON object), with ``files`` (by name; the
        version must change with them), which reach it only sealed to its key."""
        if self._wanted.get(key, ("", b""))[0] != version:
            self._wanted[key] = (version, body)
            self._files[key] = dict(files or {})
            self._wake(key)

    def forget(self, key: Key) -> None:
        self._wanted.pop(key, None)
        self._files.pop(key, None)
        self._applied.pop(key, None)
        self._wake(key)

    def keys(self) -> list[Key]:
        return list(self._wanted)

    def knows(self, ip: str) -> bool:
        """Whether a configuration waits for a carrier at ``ip``."""
        return any(k[0] == ip for k in self._wanted)

    def applied(self, key: Key) -> str | None:
        """The version the carrier at ``key`` last said it runs (None: it has not asked yet)."""
        return self._applied.get(key)

    def know_containers(self, ip: str, running: Mapping[str, str]) -> None:
        """Which container (by name) each container ID of the pod at ``ip`` is (as the pod's status
        says it, ``containerd://ID``, or bare)."""
        self._containers[ip] = {cid.rpartition("://")[2]: name for cid, name in running.items()}

    def _key(self, ip: str, container: str) -> Key | None:
        """The carrier's key: by its IP alone where the pod runs one carrier, else by the container
        it names (its name, or its ID as the pod's status shows it)."""
        candidates = [k for k in self._wanted if k[0] == ip]
        if len(candidates) == 1:
            return candidates[0]
        name = container if (ip, container) in self._wanted else self._containers.get(ip, {}).get(container)
        return (ip, name) if name is not None and (ip, name) in self._wanted else None

    def _wake(self, key: Key) -> None:
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    async def answer(self, ip: str, container: str, have: str, on_news: Callable[[], None],
                     agent_key: str = "") -> HttpAnswer:
        """The answer to the carrier at ``ip`` (in ``container``: its name or ID, "" if it does not
        say) that runs version ``have``; ``agent_key`` is its public key (:mod:`.sealing`).
        ``on_news`` is called at once when that report is news (the version it was to apply, not
        known to be applied before), before the request is held."""
        key = self._key(ip, container)
        if key is None:
            return HttpAnswer(404)
        wanted = self._wanted[key]
        news = have == wanted[0] and self._applied.get(key) != have
        self._applied[key] = have
        if news:
            on_news()
        with anyio.move_on_after(LONG_POLL):
            while (current := self._wanted.get(key)) is not None and current[0] == have:
                await self._changed.setdefault(key, anyio.Event()).wait()
        current = self._wanted.get(key)
        if current is None:
            return HttpAnswer(404)
        if current[0] == have:
            return HttpAnswer(304)
        files = self._files.get(key)
        if not files:
            return HttpAnswer(200, current[1])
        # Only the operator seals, and only here: the client's commands do not import cryptography.
        from gefyra.plugins.interceptor_nginx import sealing

        recipient = sealing.public_key(agent_key)
        if recipient is None:
            return HttpAnswer(400, b"this configuration has sealed files: send the agent's key\n")
        body = json.loads(current[1])
        body["sealed"] = {name: sealing.seal(recipient, name, data) for name, data in files.items()}
        return HttpAnswer(200, json.dumps(body).encode())
