"""The relay through the Kubernetes API: its copying, its connections, its arguments, and the transport setting."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from gefyra import errors
from gefyra.client import api_relay
from gefyra.core.model.settings import Settings


class _FakeStream:
    """A port-forward's stream in memory: what the relay sends, and what the pod would send."""

    protocol = "fake"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.to_local_send, self._to_local = anyio.create_memory_object_stream[bytes](10)

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    async def receive(self) -> bytes:
        try:
            return await self._to_local.receive()
        except anyio.EndOfStream:
            raise errors.ClusterUnreachableError("the stream to the pod ended") from None


class _Pair:
    """Both ends of a TCP connection on loopback: the relay's (reader, writer) and the local end's."""

    async def __aenter__(self) -> _Pair:
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.get_running_loop().create_future()
        server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.local_reader, self.local_writer = await asyncio.open_connection("127.0.0.1", port)
        self.reader, self.writer = await accepted
        server.close()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for writer in (self.writer, self.local_writer):
            writer.close()


@pytest.mark.anyio
async def test_pump_copies_bytes_both_ways_until_the_local_end_closes() -> None:
    stream = _FakeStream()
    async with _Pair() as pair, anyio.create_task_group() as group:
        group.start_soon(api_relay.pump, pair.reader, pair.writer, stream)
        pair.local_writer.write(b"\x00\x03abc")
        await stream.to_local_send.send(b"\x00\x02ok")
        assert await pair.local_reader.readexactly(4) == b"\x00\x02ok"
        with anyio.fail_after(5):
            while b"".join(stream.sent) != b"\x00\x03abc":
                await anyio.sleep(0.01)
        pair.local_writer.close()  # pump returns: nothing left to carry


@pytest.mark.anyio
async def test_pump_raises_the_streams_own_error_when_it_ends() -> None:
    stream = _FakeStream()
    await stream.to_local_send.aclose()
    async with _Pair() as pair:
        with pytest.raises(errors.ClusterUnreachableError, match="ended"):
            await api_relay.pump(pair.reader, pair.writer, stream)


@pytest.mark.anyio
async def test_pump_ends_when_the_local_end_went_quiet() -> None:
    async with _Pair() as pair:
        pair.local_writer.write(b"\x00\x01x")  # something, then nothing
        with anyio.fail_after(5):
            await api_relay.pump(pair.reader, pair.writer, _FakeStream(), idle=0.3)


@pytest.mark.anyio
async def test_only_the_local_ends_connections_are_carried_and_a_new_one_replaces_the_last(
        monkeypatch: pytest.MonkeyPatch) -> None:
    carried: list[str] = []

    async def carry(config: api_relay.RelayConfig, reader: object, writer: object) -> None:
        carried.append("started")
        try:
            await anyio.sleep_forever()
        finally:
            carried.append("ended")

    monkeypatch.setattr(api_relay, "_carry", carry)
    config = api_relay.RelayConfig(None, None, "gefyra", "app=x", 51821, "127.0.0.1", "127.0.0.2")
    server = await asyncio.start_server(api_relay._LocalEnd(config).serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        stranger, _ = await asyncio.open_connection("127.0.0.1", port)  # from 127.0.0.1, not the peer
        with anyio.fail_after(5):
            assert await stranger.read() == b""
        assert carried == []
        first, _ = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        with anyio.fail_after(5):
            while carried != ["started"]:
                await anyio.sleep(0.01)
        await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        with anyio.fail_after(5):
            while sorted(carried) != ["ended", "started", "started"]:
                await anyio.sleep(0.01)
            assert await first.read() == b""  # the one replaced is closed


def test_the_process_gets_back_the_config_it_was_started_with(tmp_path: object) -> None:
    config = api_relay.RelayConfig(kubeconfig="/home/me/.kube/config", context="dev", namespace="gefyra",
                                   selector="app=gefyra-stowaway", port=51821, listen="172.18.0.1", peer="172.18.0.2")
    parsed, state = api_relay._parse(["--state", "/tmp/x.json", *config.arguments()])
    assert parsed == config and str(state) == "/tmp/x.json"
    bare = api_relay.RelayConfig(None, None, "gefyra", "app=x", 51821, "172.18.0.1", "172.18.0.2")
    assert api_relay._parse(["--state", "s", *bare.arguments()])[0] == bare


def test_the_relay_is_given_addresses_only() -> None:
    config = api_relay.RelayConfig(None, None, "gefyra", "app=x", 51821, "gateway.local", "172.18.0.2")
    with pytest.raises(errors.GefyraError, match="needs IP addresses"):
        api_relay._check(config)


def test_no_relay_runs_for_a_client_without_one() -> None:
    assert api_relay.running("gfy-unit-no-such-client") is None


@pytest.mark.parametrize("transport", ["auto", "udp", "api"])
def test_the_transports(transport: str) -> None:
    assert Settings(transport=transport).transport == transport


def test_an_unknown_transport_is_refused_naming_the_ones_there_are() -> None:
    with pytest.raises(errors.UsageError) as refused:
        Settings(transport="tcp")
    assert "Settings.transport 'tcp' is not a transport" in refused.value.what
    assert refused.value.hint == "use one of auto, udp, api"
