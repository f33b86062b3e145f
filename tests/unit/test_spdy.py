"""The port-forward over SPDY, against a small server on loopback that speaks the protocol's side
of a port-forward as this test writes it (the real one is proven end to end: tests/e2e/
test_transports.py carries the tunnel through the development cluster's API server)."""

from __future__ import annotations

import asyncio
import ssl
import struct
import zlib
from collections.abc import Awaitable, Callable

import pytest

from gefyra import errors
from gefyra.core.kube import spdy

Frame = tuple[bool, int, int, bytes]  # control?, type or stream id, flags, payload


async def _read_frame(reader: asyncio.StreamReader) -> Frame:
    first, second = struct.unpack(">II", await reader.readexactly(8))
    payload = await reader.readexactly(second & 0xFFFFFF)
    control = bool(first & 0x80000000)
    return control, (first & 0xFFFF) if control else first, second >> 24, payload


def _headers(block: bytes, inflater: zlib._Decompress) -> dict[str, str]:
    raw = inflater.decompress(block)
    count, at, found = struct.unpack(">I", raw[:4])[0], 4, {}
    for _ in range(count):
        size = struct.unpack(">I", raw[at:at + 4])[0]
        name = raw[at + 4:at + 4 + size].decode()
        at += 4 + size
        size = struct.unpack(">I", raw[at:at + 4])[0]
        found[name] = raw[at + 4:at + 4 + size].decode()
        at += 4 + size
    return found


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, list[dict[str, str]]], Awaitable[None]]


async def _with_server(status: int, handler: Handler, client: Callable[[str], Awaitable[None]]) -> list[str]:
    """Runs ``client`` against a server that answers the upgrade with ``status`` and, after 101,
    reads the two SYN_STREAMs and hands over to ``handler``; returns the request's head lines."""
    heads: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.extend((await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n"))
        extra = "X-Stream-Protocol-Version: portforward.k8s.io\r\n" if status == 101 else ""
        writer.write(f"HTTP/1.1 {status} Whatever\r\n{extra}\r\n".encode())
        if status == 101:
            inflater, streams = zlib.decompressobj(), []
            for _ in range(2):
                control, kind, _flags, payload = await _read_frame(reader)
                assert control and kind == 1
                streams.append(_headers(payload[10:], inflater))
            await handler(reader, writer, streams)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        await client(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    return heads


def _connect(url: str) -> Awaitable[spdy.SpdyPortStream]:
    return spdy.connect(url, ssl.create_default_context(), None, "Bearer t0ken", "ns", "pod-1", 51821, "pod ns/pod-1")


def _data(stream_id: int, data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">II", stream_id, flags << 24 | len(data)) + data


def test_the_upgrade_and_the_streams_are_what_the_kubernetes_side_expects() -> None:
    seen: dict[str, object] = {}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, streams: list[dict[str, str]]) -> None:
        seen["streams"] = streams
        seen["error_closed"] = await _read_frame(reader)  # the error stream's end: nothing goes there
        seen["sent"] = await _read_frame(reader)
        writer.write(_data(3, b"pong"))
        await writer.drain()

    async def client(url: str) -> None:
        async with await _connect(url) as stream:
            await stream.send(b"ping")
            seen["received"] = await stream.receive()

    heads = asyncio.run(_with_server(101, handler, client))
    assert heads[0] == "POST /api/v1/namespaces/ns/pods/pod-1/portforward HTTP/1.1"
    assert {"Upgrade: SPDY/3.1", "X-Stream-Protocol-Version: portforward.k8s.io",
            "Authorization: Bearer t0ken"} <= set(heads)
    assert seen["streams"] == [{"streamtype": "error", "port": "51821", "requestid": "0"},
                               {"streamtype": "data", "port": "51821", "requestid": "0"}]
    assert seen["error_closed"] == (False, 1, 1, b"")
    assert seen["sent"] == (False, 3, 0, b"ping")
    assert seen["received"] == b"pong"


def test_pings_are_answered_and_an_error_stream_message_ends_the_stream() -> None:
    seen: dict[str, object] = {}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, streams: list[dict[str, str]]) -> None:
        await _read_frame(reader)
        writer.write(struct.pack(">HHI", 0x8003, 6, 4) + b"\x00\x00\x00\x02")  # PING 2
        writer.write(_data(3, b"first"))
        await writer.drain()
        seen["ping"] = await _read_frame(reader)
        writer.write(_data(1, b"connection refused"))
        await writer.drain()

    async def client(url: str) -> None:
        async with await _connect(url) as stream:
            seen["first"] = await stream.receive()
            with pytest.raises(errors.ClusterUnreachableError, match="connection refused"):
                await stream.receive()

    asyncio.run(_with_server(101, handler, client))
    assert seen["first"] == b"first"
    assert seen["ping"] == (True, 6, 0, b"\x00\x00\x00\x02")


def test_a_reset_or_a_closed_data_stream_ends_it() -> None:
    for ending in (struct.pack(">HHI", 0x8003, 3, 8) + struct.pack(">II", 3, 5), _data(3, b"", flags=1)):
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, streams: list[dict[str, str]],
                          ending: bytes = ending) -> None:
            writer.write(ending)
            await writer.drain()
            await asyncio.sleep(0.1)

        async def client(url: str) -> None:
            async with await _connect(url) as stream:
                with pytest.raises(errors.ClusterUnreachableError, match="broke"):
                    await stream.receive()

        asyncio.run(_with_server(101, handler, client))


def test_a_refused_upgrade_says_its_status() -> None:
    async def client(url: str) -> None:
        with pytest.raises(spdy.HandshakeRefused) as refused:
            await _connect(url)
        assert refused.value.status == 403

    async def never(*_: object) -> None:
        raise AssertionError("no streams after a refusal")

    asyncio.run(_with_server(403, never, client))


def test_a_credential_with_a_line_break_never_reaches_the_wire() -> None:
    async def client(url: str) -> None:
        with pytest.raises(spdy.HandshakeRefused, match="line break"):
            await spdy.connect(url, ssl.create_default_context(), None, "Bearer x\r\nX-Evil: 1", "ns", "pod-1",
                               51821, "pod ns/pod-1")

    async def never(*_: object) -> None:
        raise AssertionError("no streams")

    heads = asyncio.run(_with_server(101, never, client))
    assert heads == []


def test_a_proxy_between_here_and_the_api_server_means_the_websocket(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPDY is spoken straight to the API server; through a proxy (the kubeconfig's, or the
    environment's as the Kubernetes client takes it) the stream is a WebSocket, which it carries."""
    from kubernetes_asyncio.client import Configuration

    from gefyra.core.kube.portforward import _proxied

    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
                     "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    configuration = Configuration(host="https://10.250.0.2:6443")
    assert not _proxied(configuration)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    assert _proxied(configuration)
    monkeypatch.setenv("NO_PROXY", "10.250.0.2")
    assert not _proxied(configuration)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("NO_PROXY")
    configuration.proxy = "http://proxy.corp:3128"
    assert _proxied(configuration)
