"""The contract of a tunnel plugin (:class:`gefyra.core.spi.tunnel.Tunnel`), client side and the
checks of its server side that need no cluster (the end-to-end suite proves the rest).

A plugin's own test module subclasses :class:`TunnelContract` and provides ``tunnel`` and a
connected container ``runtime`` that has the tunnel's local image."""

from __future__ import annotations

import uuid

import pytest

from gefyra import errors
from gefyra.core.model.settings import Settings
from gefyra.core.spi.dns import DnsSetup
from gefyra.core.spi.runtime import ContainerRuntime
from gefyra.core.spi.tunnel import LocalEnd, Tunnel


def _end(tunnel: Tunnel, name: str, network: str, **overrides: object) -> LocalEnd:
    server = tunnel.generate_keys()
    values: dict[str, object] = dict(
        name=name, network=network, labels={"gefyra.dev/contract": "1"}, keys=tunnel.generate_keys(),
        address="198.18.0.77", server_public_key=server.public, endpoint="192.0.2.1:31820",
        routes=["198.18.0.1/32", "10.96.0.0/12"], mtu=1340,
        dns=DnsSetup(files={"hosts": b"127.0.0.1 contract\n"}, command=("sleep", "infinity")))
    values.update(overrides)
    return LocalEnd(**values)  # type: ignore[arg-type]


class TunnelContract:
    pytestmark = pytest.mark.anyio  # inherited by the plugins\' subclasses

    def test_keys_are_fresh_valid_and_never_printed(self, tunnel: Tunnel) -> None:
        first, second = tunnel.generate_keys(), tunnel.generate_keys()
        assert first.public != second.public and first.private != second.private
        assert first.private not in repr(first) and first.private not in str([first])
        server = tunnel.server()
        assert server.is_public_key(first.public)
        for bad in ("", "x", first.public[:-2], first.public + "\n", first.public.replace("=", ";"), " " + first.public):
            assert not server.is_public_key(bad), bad

    async def test_local_end_starts_steers_and_cleans_up(self, tunnel: Tunnel, runtime: ContainerRuntime) -> None:
        settings, name, network = Settings(), f"gfy-contract-end-{uuid.uuid4().hex[:6]}", f"gfy-contract-{uuid.uuid4().hex[:6]}"
        await runtime.ensure_network(network, {"gefyra.dev/contract": "1"})
        try:
            end = _end(tunnel, name, network)
            await tunnel.start_local_end(runtime, settings, end)
            info = await runtime.get_container(name)
            assert info is not None and info.running
            # Nothing secret where the engine shows it.
            assert end.keys.private not in str(info.labels) and end.keys.private not in str(info)
            await tunnel.steer(runtime, name, {20001: ("172.30.0.9", 8080)})
            await tunnel.steer(runtime, name, {20001: ("172.30.0.9", 8081)})  # steering a port again replaces it
            assert await tunnel.steered_connections(runtime, name, [20001, 20002]) == {20001: 0, 20002: 0}
            assert await tunnel.connects(runtime, name, [("198.18.0.1", 9), ("10.96.0.1", 443)]) == [False, False]
            await tunnel.unsteer(runtime, name, [20001])
            await tunnel.unsteer(runtime, name, [20001])  # twice: harmless
            assert await tunnel.latest_handshake(runtime, name) is None  # no server end: no handshake
        finally:
            await runtime.remove_container(name)
            await runtime.remove_network(network)

    @pytest.mark.parametrize("bad", [
        {"address": "198.18.0.77\nPostUp = touch /x"},
        {"endpoint": "host:port"},
        {"endpoint": "192.0.2.1:31820\nPrivateKey = x"},
        {"routes": ["10.96.0.0/12, 0.0.0.0/0\n"]},
        {"server_public_key": "not-a-key"},
    ])
    async def test_bad_values_are_refused_before_anything_is_made(
            self, tunnel: Tunnel, runtime: ContainerRuntime, bad: dict[str, object]) -> None:
        name = f"gfy-contract-bad-{uuid.uuid4().hex[:6]}"
        with pytest.raises(errors.GefyraError):
            await tunnel.start_local_end(runtime, Settings(), _end(tunnel, name, "unused", **bad))
        assert await runtime.get_container(name) is None
