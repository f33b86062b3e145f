"""One port of a pod through the Kubernetes API over SPDY/3.1, the protocol that `kubectl
port-forward` speaks: the request is upgraded to SPDY, and the port's bytes travel in SPDY data
frames of a stream opened for it (beside an error stream, as the API asks).

Why beside the WebSocket (:mod:`gefyra.core.kube.portforward`): a WebSocket client must mask every
byte it sends, and the container runtime's WebSocket server unmasks them one at a time (measured
here: more than half a core for the tunnel's bytes), where its SPDY server copies a data frame as
it is. SPDY's own flow control is not used by the Kubernetes side (its SPDY library keeps no
windows), so none is kept here either.

Only what a port-forward needs: the client's SYN_STREAMs with their header blocks compressed
(zlib, one context for the connection, flushed per block; the protocol's dictionary is optional
for a sender), the server's data, replies, resets and pings; the server's compressed header blocks
are skipped, never read."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import zlib
from types import TracebackType
from urllib.parse import urlsplit

from gefyra import errors

_VERSION = 3
_SYN_STREAM, _RST_STREAM, _PING, _GOAWAY = 1, 3, 6, 7
_FLAG_FIN = 0x01
#: The client's streams: the port's errors (opened first, as kubectl does) and its data.
_ERROR_STREAM, _DATA_STREAM = 1, 3
#: Bytes of a data frame at most (its length field has 24 bits; large frames spare per-frame work).
_MAX_FRAME = 1 << 20
_PROTOCOL = "portforward.k8s.io"
#: Bytes that the connection's reader buffers (also the handshake's answer at most).
_READ_LIMIT = 1 << 20


class HandshakeRefused(Exception):
    """The API server answered the upgrade with ``status`` (not 101)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | _VERSION, kind, flags << 24 | len(payload)) + payload


def _data(stream_id: int, data: bytes | memoryview, flags: int = 0) -> bytes:
    return struct.pack(">II", stream_id, flags << 24 | len(data)) + data


class _HeaderCompressor:
    """The connection's header compression context (SPDY compresses every header block of a
    connection with one zlib stream, each block flushed)."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj()

    def block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            n, v = name.encode(), value.encode()
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._zlib.compress(raw) + self._zlib.flush(zlib.Z_SYNC_FLUSH)


class SpdyPortStream:
    """A byte stream to one port of a pod (the interface of :class:`~gefyra.core.kube.portforward.
    PortStream`): :meth:`receive` returns the next bytes the pod sent and raises
    :class:`~gefyra.errors.ClusterUnreachableError` when the stream ends or the pod's side reports
    an error."""

    protocol = "spdy"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, what: str) -> None:
        self._reader = reader
        self._writer = writer
        self._what = what

    def _broken(self, why: object) -> errors.ClusterUnreachableError:
        return errors.ClusterUnreachableError(f"the stream to {self._what} broke: {why}")

    async def send(self, data: bytes) -> None:
        try:
            view = memoryview(data)  # slices without copies: the frame is the one copy
            for at in range(0, len(data), _MAX_FRAME):
                self._writer.write(_data(_DATA_STREAM, view[at:at + _MAX_FRAME]))
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise self._broken(exc) from exc

    async def receive(self) -> bytes:
        try:
            while True:
                first, second = struct.unpack(">II", await self._reader.readexactly(8))
                flags, length = second >> 24, second & 0xFFFFFF
                payload = await self._reader.readexactly(length)
                if first & 0x80000000:
                    self._control((first >> 16) & 0x7FFF, first & 0xFFFF, payload)
                    continue
                stream_id = first & 0x7FFFFFFF
                if stream_id == _ERROR_STREAM and payload:
                    raise errors.ClusterUnreachableError(
                        f"the stream to {self._what} failed: {payload[:300].decode(errors='replace')}")
                if stream_id == _DATA_STREAM:
                    if payload:
                        return payload
                    if flags & _FLAG_FIN:
                        raise self._broken("the pod's side closed it")
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise self._broken(exc) from exc

    def _control(self, version: int, kind: int, payload: bytes) -> None:
        if version != _VERSION:
            raise self._broken(f"SPDY version {version}")
        if kind == _PING:  # answered with the same id, as the protocol asks
            self._writer.write(_control(_PING, 0, payload[:4]))
        elif kind == _RST_STREAM and len(payload) >= 8:
            stream_id, status = struct.unpack(">II", payload[:8])
            if stream_id & 0x7FFFFFFF in (_ERROR_STREAM, _DATA_STREAM):
                raise self._broken(f"reset by the server (status {status})")
        elif kind == _GOAWAY:
            raise self._broken("the server went away")
        # SYN_REPLY, SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do for a port-forward.

    async def __aenter__(self) -> SpdyPortStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1)


async def _upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, target: str,
                   headers: dict[str, str]) -> None:
    if any(c in text for text in (host, target, *headers.values()) for c in "\r\n"):
        # From the kubeconfig (or a credential plugin): never let a value add lines of its own.
        raise HandshakeRefused(0, "a line break in the server's address or the credentials")
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}", "Connection: Upgrade", "Upgrade: SPDY/3.1",
             f"X-Stream-Protocol-Version: {_PROTOCOL}", "Content-Length: 0", "User-Agent: gefyra",
             *(f"{name}: {value}" for name, value in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise HandshakeRefused(0, "an answer too long") from exc
    status_line, *fields = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    answered = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields if f)}
    if status != 101:
        raise HandshakeRefused(status, parts[2] if len(parts) > 2 else "")
    if answered.get("x-stream-protocol-version") != _PROTOCOL:
        raise HandshakeRefused(status, f"no {_PROTOCOL} stream protocol")


async def connect(server: str, tls: ssl.SSLContext, server_hostname: str | None, authorization: str | None,
                  namespace: str, pod: str, port: int, what: str) -> SpdyPortStream:
    """A SPDY stream to ``port`` of ``pod`` through the API server at ``server`` (its URL),
    authenticated with an ``authorization`` header or the TLS context's client certificate.
    Raises :class:`HandshakeRefused` when the server does not upgrade."""
    url = urlsplit(server)
    host = url.hostname or ""
    default_port = 443 if url.scheme == "https" else 80
    prefix = url.path.rstrip("/")
    reader, writer = await asyncio.open_connection(
        host, url.port or default_port, ssl=tls if url.scheme == "https" else None,
        server_hostname=(server_hostname or host) if url.scheme == "https" else None, limit=_READ_LIMIT)
    try:
        netloc = url.netloc.rpartition("@")[2]
        await _upgrade(reader, writer, netloc, f"{prefix}/api/v1/namespaces/{namespace}/pods/{pod}/portforward",
                       {"Authorization": authorization} if authorization else {})
        compressor = _HeaderCompressor()
        for stream_id, kind in ((_ERROR_STREAM, "error"), (_DATA_STREAM, "data")):
            block = compressor.block({"streamtype": kind, "port": str(port), "requestid": "0"})
            writer.write(_control(_SYN_STREAM, 0, struct.pack(">IIH", stream_id, 0, 0) + block))
        writer.write(_data(_ERROR_STREAM, b"", _FLAG_FIN))  # nothing is ever sent on the error stream
        await writer.drain()
    except BaseException:
        writer.close()
        raise
    return SpdyPortStream(reader, writer, what)
