"""The tunnel through the Kubernetes API: a process on this machine that carries the tunnel's
datagrams between the local end and the server end's stream port through a pod port-forward
(:meth:`Cluster.port_forward`), for networks where UDP does not reach the cluster's nodes.

Why a process of its own: the stream is opened with the user's kubeconfig, as kubectl opens one
(client certificate, token or exec plugin), so no credential is copied into a container or written
anywhere new, and `up` still returns. `up` starts it (:func:`start`), `down` ends it (:func:`stop`).
The local end connects here over TCP when it sends this way (with ``auto``, the relay waits as
its fallback while UDP works), its datagrams already framed as the server end reads them on its
stream port (:attr:`ServerSide.stream_port`: each prefixed with its length, 2 bytes big-endian).
So for each connection the relay opens one stream and only copies bytes both ways: no work per
datagram here (reading each datagram from a UDP socket cost a third of this process's CPU, and
capped the transport's speed). The stream is closed when the local end has sent nothing for a
while. When it breaks (the pod replaced, the API server restarted, the laptop asleep), the
connection ends with it and the local end dials again; the relay finds the server end's pod
again and opens another, with the kubeconfig read again (an exec plugin runs again for a fresh
token). WireGuard's datagrams are encrypted end to end: this process and the API server see only
ciphertext."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from gefyra import errors
from gefyra.client import files, processes
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.kube.portforward import PortStream
from gefyra.core.model import validation
from gefyra.core.model.identity import config_dir
from gefyra.core.model.settings import Settings
from gefyra.core.model.workload import Pod

log = structlog.get_logger(__name__)

#: Bytes read from the local end's connection at most at once: a burst goes into the stream as
#: one message (every hop behind this process pays per message).
_READ_SIZE = 256 << 10
#: Seconds without a byte from the local end after which its connection and stream are closed: it
#: sends another way (UDP works again), and dials again once it sends here.
_IDLE = 30.0
#: Seconds between attempts to open the stream again, growing to the last.
_BACKOFF = (0.2, 0.5, 1.0, 2.0, 3.0)
#: The module that the process runs (``python -m``), also how a relay's process is recognised.
_MODULE = "gefyra.client.api_relay"
#: Seconds `start` waits for the process to listen.
_START_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class RelayConfig:
    """What the process needs: where the cluster is (the kubeconfig as the user passed it, never
    its content), which pods are the server end, and the two addresses it joins."""

    kubeconfig: str | None
    context: str | None
    namespace: str
    #: A label selector of the server end's pods.
    selector: str
    #: The server end's stream port in its pod.
    port: int
    #: The address here that the local end reaches (its container network's gateway).
    listen: str
    #: The local end's address: datagrams from any other are dropped.
    peer: str

    def arguments(self) -> list[str]:
        given = [("--kubeconfig", self.kubeconfig), ("--context", self.context)]
        return [*(a for flag, value in given if value for a in (flag, value)), "--namespace", self.namespace,
                "--selector", self.selector, "--port", str(self.port), "--listen", self.listen, "--peer", self.peer]


@dataclasses.dataclass(frozen=True)
class RelayState:
    """A running relay, as it recorded itself."""

    pid: int
    #: HOST:PORT at which the local end reaches it.
    endpoint: str
    config: RelayConfig


# The process.

async def _server_pod(cluster: Cluster, config: RelayConfig) -> str:
    for found in await cluster.objects(path("pods", config.namespace), label_selector=config.selector):
        pod = Pod.of(found)
        if pod.ready and not pod.deleting and validation.is_dns_subdomain(pod.name):
            return pod.name
    raise errors.NotFoundError(f"no ready pod of the tunnel's server end ({config.selector} in {config.namespace})")


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: PortStream,
               idle: float = _IDLE) -> None:
    """Copies bytes both ways between the local end's connection and the stream until either
    ends, or until the local end has sent nothing for ``idle`` seconds (it sends a keepalive every
    few seconds while it uses this way). Returns when the local end ended or went quiet; raises
    the stream's :class:`~gefyra.errors.GefyraError` when the stream ended.

    Every packet of the tunnel crosses here, so each crossing is kept to the least work: asyncio's
    own streams (a read of bytes that are there does not yield to the loop; anyio's streams yield
    once per call) and no timer per read (the idle check looks at the time of the last read)."""
    failures: list[errors.GefyraError] = []
    last_read = time.monotonic()

    async def upstream() -> None:
        nonlocal last_read
        while data := await reader.read(_READ_SIZE):
            last_read = time.monotonic()
            await stream.send(data)
        log.info("the local end closed its connection")

    async def downstream() -> None:
        while True:
            writer.write(await stream.receive())
            await writer.drain()

    async def until_either_ends(copy: Callable[[], Awaitable[None]]) -> None:
        try:  # failures end up in `failures`, not in a task group's ExceptionGroup
            await copy()
        except errors.GefyraError as exc:
            failures.append(exc)
        except OSError:
            log.info("the local end's connection broke")
        finally:
            group.cancel_scope.cancel()

    async def end_when_idle() -> None:
        while (quiet := time.monotonic() - last_read) < idle:
            await anyio.sleep(idle - quiet)
        log.info("the local end sends another way: its stream is closed until it comes back")
        group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(until_either_ends, upstream)
        group.start_soon(end_when_idle)
        await until_either_ends(downstream)
    if failures:
        raise failures[0]


async def _carry(config: RelayConfig, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One connection of the local end, until it or its stream ends. While the stream cannot be
    opened, nothing of the connection has been read: it is tried again after a growing pause, on
    the same connection (the local end's datagrams wait in it, as in a full socket buffer). Once
    bytes moved, the stream's end ends the connection too: a datagram may have been cut in two, and
    the local end dials anew, its frames starting afresh on both sides."""
    settings = Settings(kubeconfig=config.kubeconfig, context=config.context)
    for attempt in itertools.count():
        opened = False
        try:
            async with Cluster(settings) as cluster:  # the kubeconfig read again: an exec plugin runs again
                pod = await _server_pod(cluster, config)
                async with cluster.port_forward(config.namespace, pod, config.port) as stream:
                    opened = True
                    log.info("carrying the tunnel through the Kubernetes API", pod=pod, over=stream.protocol)
                    await pump(reader, writer, stream)
                    return
        except errors.GefyraError as exc:
            why = exc.what
        except Exception as exc:  # noqa: BLE001 - the relay outlives any one stream's failure
            why = repr(exc)[:300]
        if opened:
            log.warning("the stream through the Kubernetes API ended", why=why)
            return
        log.warning("cannot open the stream through the Kubernetes API", why=why)
        await anyio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])


class _LocalEnd:
    """Serves the local end's connections, one at a time: a new one replaces the one before (the
    local end dials again when it found its stream gone, perhaps before this side noticed)."""

    def __init__(self, config: RelayConfig) -> None:
        self._config = config
        self._current: anyio.CancelScope | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            address = writer.get_extra_info("peername")
            if not isinstance(address, tuple) or address[0] != self._config.peer:
                return  # only the local end's own connections
            if self._current is not None:
                self._current.cancel()
            with anyio.CancelScope() as scope:
                self._current = scope
                try:
                    await _carry(self._config, reader, writer)
                finally:
                    if self._current is scope:
                        self._current = None
        finally:
            writer.close()


async def _serve(config: RelayConfig, state: Path) -> None:
    local_end = _LocalEnd(config)
    server = await asyncio.start_server(local_end.serve, config.listen, 0, limit=_READ_SIZE)
    port = server.sockets[0].getsockname()[1]
    files.write_json(state, dataclasses.asdict(RelayState(os.getpid(), f"{config.listen}:{port}", config)))
    log.info("relay listening", endpoint=f"{config.listen}:{port}")
    async with server:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                return


def _parse(argv: Sequence[str]) -> tuple[RelayConfig, Path]:
    parser = argparse.ArgumentParser(prog="gefyra-api-relay", description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--kubeconfig")
    parser.add_argument("--context")
    for name in ("--namespace", "--selector", "--listen", "--peer"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    config = RelayConfig(args.kubeconfig, args.context, args.namespace, args.selector, args.port, args.listen, args.peer)
    return config, args.state


def main(argv: Sequence[str] | None = None) -> None:
    config, state = _parse(sys.argv[1:] if argv is None else argv)
    try:
        anyio.run(_serve, config, state)
    finally:
        recorded = _read_state(state)
        if recorded is not None and recorded.pid == os.getpid():  # not a successor's
            with contextlib.suppress(OSError):
                state.unlink()


# The client's side: start, find and stop the process.

def _state_path(client_id: str) -> Path:
    return config_dir() / "relays" / f"{client_id}.json"


def log_path(client_id: str) -> Path:
    return config_dir() / "relays" / f"{client_id}.log"


def _read_state(state: Path) -> RelayState | None:
    try:
        data: dict[str, Any] = json.loads(state.read_text())
        return RelayState(int(data["pid"]), str(data["endpoint"]), RelayConfig(**data["config"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running(client_id: str) -> RelayState | None:
    """This client's relay, if it runs."""
    found = _read_state(_state_path(client_id))
    return found if found is not None and processes.alive(found.pid, _MODULE) else None


def _check(config: RelayConfig) -> None:
    for address in (config.listen, config.peer):
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise errors.GefyraError(f"the API relay needs IP addresses, not {validation.shown(address)}") from exc


async def start(client_id: str, config: RelayConfig) -> RelayState:
    """This client's relay with ``config``: the one running, or a new one (one with another config
    is stopped first). Returns once it listens."""
    _check(config)
    found = running(client_id)
    if found is not None and found.config == config:
        return found
    await stop(client_id)
    state, logfile = _state_path(client_id), log_path(client_id)
    process = processes.spawn(_MODULE, ["--state", str(state), *config.arguments()], logfile)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        found = _read_state(state)
        if found is not None and found.pid == process.pid:
            return found
        if process.poll() is not None:
            break
        await anyio.sleep(0.05)
    last = (logfile.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
    process.kill()
    raise errors.GefyraError(f"the tunnel's relay through the Kubernetes API did not start: {last[:300]}",
                             f"see {logfile}")


async def stop(client_id: str, *, keep_log: bool = False) -> bool:
    """Ends this client's relay and removes its files (its log stays with ``keep_log``, for a
    failure that points at it); False if none ran."""
    state = _state_path(client_id)
    found = _read_state(state)
    with contextlib.suppress(OSError):
        state.unlink()
    if not keep_log:
        with contextlib.suppress(OSError):
            log_path(client_id).unlink()
    return found is not None and await processes.terminate(found.pid, _MODULE)


if __name__ == "__main__":
    main()
