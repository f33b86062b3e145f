"""The tunnel through the Kubernetes API: a process on this machine that carries the tunnel's
datagrams between the local end and the server end's stream port through a pod port-forward
(:meth:`Cluster.port_forward`), for networks where UDP does not reach the cluster's nodes.

Why a process of its own: the stream is opened with the user's kubeconfig, as kubectl opens one
(client certificate, token or exec plugin), so no credential is copied into a container or written
anywhere new, and `up` still returns. `up` starts it (:func:`start`), `down` ends it (:func:`stop`).
It opens its stream when the local end sends here (with ``auto``, it waits as the local end's
fallback while UDP works) and closes it when the local end has sent nothing for a while. When the
stream breaks (the pod replaced, the API server restarted, the laptop asleep), it finds the server
end's pod again and opens another, with the kubeconfig read again (an exec plugin runs again for a
fresh token). WireGuard's datagrams are encrypted end to end:
this process and the API server see only ciphertext.

On the stream every datagram is prefixed with its length (2 bytes, big-endian): what the server end
reads on its stream port (:attr:`ServerSide.stream_port`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from gefyra import errors
from gefyra.client import files, processes
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model import validation
from gefyra.core.model.identity import config_dir
from gefyra.core.model.settings import Settings
from gefyra.core.model.workload import Pod

log = structlog.get_logger(__name__)

#: Datagrams from the local end that may wait for a slow stream before new ones are dropped (as a
#: full socket buffer drops them; WireGuard's inner TCP sends them again).
_QUEUE_LIMIT = 4 << 20
#: Datagrams read from the local end's socket at most per wake-up.
_READ_BURST = 256
#: Bytes of the UDP socket's buffers (each way).
_SOCKET_BUFFER = 4 << 20
#: Seconds without a datagram from the local end after which its stream is closed: it sends
#: another way (UDP works again), and a stream is opened again once it sends here.
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


def frame(datagram: bytes) -> bytes:
    return len(datagram).to_bytes(2, "big") + datagram


class Unframer:
    """Datagrams out of a stream of length-prefixed frames, which arrive in pieces of any size."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._pending += data
        found, at = [], 0
        while len(self._pending) - at >= 2:
            size = int.from_bytes(self._pending[at:at + 2], "big")
            if len(self._pending) - at - 2 < size:
                break
            found.append(bytes(self._pending[at + 2:at + 2 + size]))
            at += 2 + size
        del self._pending[:at]
        return found


# The process.

class _LocalSide:
    """The UDP socket that the local end sends to: datagrams queue (framed) for the stream; those
    from the stream go back to the address the local end last sent from.

    Each time the socket is readable, everything it holds is read (up to a bound, to let the loop
    do its other work), so that a burst of the local end goes into the stream as one message. One
    datagram per message (asyncio's datagram transports read one per wake-up) costs every hop
    behind it (this process, the API server, the kubelet, the runtime, the server end) its
    per-message work for each datagram, and that, not the bytes, bounded the transport's speed."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self._socket = sock
        self._peer = peer
        self._queue = bytearray()
        self._ready = asyncio.Event()
        self._address: tuple[str, int] | None = None
        self.dropped = 0
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._socket.fileno())
        self._socket.close()

    def _read(self) -> None:
        for _ in range(_READ_BURST):
            try:
                data, addr = self._socket.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # an ICMP error queued on the socket: nothing to read
                continue
            if addr[0] != self._peer or not data:
                continue
            self._address = addr
            if len(self._queue) > _QUEUE_LIMIT:
                self.dropped += 1
                continue
            self._queue += frame(data)
        if self._queue:
            self._ready.set()

    async def take(self) -> bytes:
        """Every datagram queued since the last call (waits for one): a burst goes as one message."""
        await self._ready.wait()
        self._ready.clear()
        taken, self._queue = bytes(self._queue), bytearray()
        return taken

    async def wait(self) -> None:
        """Returns once a datagram waits for the stream."""
        await self._ready.wait()

    def send(self, datagram: bytes) -> None:
        """As UDP: a datagram that does not fit into the socket's buffer now is dropped."""
        if self._address is not None:
            with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
                self._socket.sendto(datagram, self._address)


async def _server_pod(cluster: Cluster, config: RelayConfig) -> str:
    for found in await cluster.objects(path("pods", config.namespace), label_selector=config.selector):
        pod = Pod.of(found)
        if pod.ready and not pod.deleting and validation.is_dns_subdomain(pod.name):
            return pod.name
    raise errors.NotFoundError(f"no ready pod of the tunnel's server end ({config.selector} in {config.namespace})")


async def _carry(config: RelayConfig, local: _LocalSide) -> None:
    """One stream, for as long as it lasts (raises when it ends)."""
    settings = Settings(kubeconfig=config.kubeconfig, context=config.context)
    async with Cluster(settings) as cluster:
        pod = await _server_pod(cluster, config)
        async with cluster.port_forward(config.namespace, pod, config.port) as stream:
            log.info("carrying the tunnel through the Kubernetes API", pod=pod, over=stream.protocol)

            failures: list[errors.GefyraError] = []

            async def upstream() -> None:
                """Ends the stream once the local end has sent nothing for _IDLE seconds (it sends a
                keepalive every few seconds while it uses this way)."""
                try:
                    while True:
                        with anyio.move_on_after(_IDLE):
                            await stream.send(await local.take())
                            continue
                        log.info("the local end sends another way: stream closed until it comes back")
                        return
                except errors.GefyraError as exc:
                    failures.append(exc)
                finally:
                    group.cancel_scope.cancel()

            async with anyio.create_task_group() as group:
                group.start_soon(upstream)
                unframer = Unframer()
                try:  # failures end up in `failures`, not in a task group's ExceptionGroup
                    while True:
                        for datagram in unframer.feed(await stream.receive()):
                            local.send(datagram)
                except errors.GefyraError as exc:
                    failures.append(exc)
                finally:
                    group.cancel_scope.cancel()
            if failures:
                raise failures[0]


async def _serve(config: RelayConfig, state: Path) -> None:
    udp = socket.socket(socket.AF_INET6 if ":" in config.listen else socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        # The local end sends in bursts (a 64 KiB write is ~50 datagrams at once) while the loop
        # may be writing to the stream: the default buffer (208 KiB) drops part of a burst. The
        # kernel caps this at net.core.rmem_max/wmem_max.
        udp.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
    udp.bind((config.listen, 0))
    port = udp.getsockname()[1]
    local = _LocalSide(udp, config.peer)
    files.write_json(state, dataclasses.asdict(RelayState(os.getpid(), f"{config.listen}:{port}", config)))
    log.info("relay listening", endpoint=f"{config.listen}:{port}")
    async with anyio.create_task_group() as group:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    group.cancel_scope.cancel()
                    return

        group.start_soon(stop_on_signal)
        failures = 0
        while True:
            await local.wait()  # a stream only while the local end sends this way
            started = anyio.current_time()
            try:
                await _carry(config, local)
                failures = 0
                continue
            except errors.GefyraError as exc:
                log.warning("the stream through the Kubernetes API ended", why=exc.what)
            except Exception as exc:  # noqa: BLE001 - the relay outlives any one stream's failure
                log.warning("the stream through the Kubernetes API failed", why=repr(exc)[:300])
            if anyio.current_time() - started > 10:
                failures = 0  # it worked for a while: try again at once
            await anyio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
            failures += 1
    local.close()


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
