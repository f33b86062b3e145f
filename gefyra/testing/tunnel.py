"""The contract of a tunnel plugin (:class:`gefyra.core.spi.tunnel.Tunnel`): keys, the local end
on a real container engine, and the server side it brings into the cluster (checked as
manifests; the end-to-end suite proves the rest).

A plugin's own test module subclasses :class:`TunnelContract` and provides two fixtures:
``tunnel`` and a connected container ``runtime`` that has the tunnel's local image."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

import pytest

from gefyra import errors
from gefyra.core.model import validation
from gefyra.core.model.settings import Settings
from gefyra.core.spi.dns import DnsSetup
from gefyra.core.spi.runtime import ContainerRuntime
from gefyra.core.spi.tunnel import LocalEnd, Tunnel

#: The Pod Security levels, most permissive first.
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")


def _client_address(tunnel: Tunnel) -> str:
    hosts = ipaddress.ip_network(tunnel.network).hosts()
    return next(str(h) for h in hosts if str(h) != tunnel.server_address)


def _end(tunnel: Tunnel, name: str, network: str, **overrides: Any) -> LocalEnd:
    server = tunnel.generate_keys()
    values: dict[str, Any] = dict(
        name=name, network=network, labels={"gefyra.dev/contract": "1"}, keys=tunnel.generate_keys(),
        address=_client_address(tunnel), server_public_key=server.public, endpoint="192.0.2.1:31820",
        routes=[f"{tunnel.server_address}/32", "10.96.0.0/12"], mtu=1340,
        dns=DnsSetup(files={"hosts": b"127.0.0.1 contract\n"}, command=("sleep", "infinity")))
    values.update(overrides)
    return LocalEnd(**values)


class TunnelContract:
    pytestmark = pytest.mark.anyio  # inherited by the plugins' subclasses

    def test_keys_are_fresh_valid_and_never_printed(self, tunnel: Tunnel) -> None:
        first, second = tunnel.generate_keys(), tunnel.generate_keys()
        assert first.public != second.public and first.private != second.private
        assert first.private not in repr(first) and first.private not in str([first])
        server = tunnel.server()
        assert server.is_public_key(first.public)
        for bad in ("", "x", first.public[:-2], first.public + "\n", first.public.replace("=", ";"), " " + first.public):
            assert not server.is_public_key(bad), bad

    def test_its_addresses_and_names_are_sound(self, tunnel: Tunnel) -> None:
        network = ipaddress.ip_network(tunnel.network)
        assert ipaddress.ip_address(tunnel.server_address) in network
        settings = Settings(client_id="contract")
        assert validation.is_dns_label(tunnel.local_name(settings))
        assert tunnel.local_name(settings) != tunnel.local_name(Settings(client_id="other"))

    def test_its_server_side_asks_for_no_more_than_it_says(self, tunnel: Tunnel) -> None:
        side = tunnel.server_side(Settings(client_id="contract"))
        assert validation.is_dns_label(side.deployment) and validation.is_dns_label(side.key_secret)
        assert side.pod_security in POD_SECURITY_LEVELS
        assert side.containers, "the server end runs in at least one container"
        for container in side.containers:
            context = container.get("securityContext") or {}
            assert context.get("privileged") is not True, "no privileged containers"
            assert context.get("capabilities", {}).get("drop") == ["ALL"], "every capability dropped, some added back"
            assert container.get("resources", {}).get("limits"), "limits, so that one client cannot starve the node"
            if side.pod_security == "restricted":
                assert not context.get("capabilities", {}).get("add"), "restricted admits no added capability"
                assert context.get("runAsUser") != 0 and context.get("runAsNonRoot") is not False, "restricted: no root"
        if side.pod_security == "restricted":
            operator = side.operator_security_context
            assert not operator.get("capabilities", {}).get("add") and operator.get("runAsUser") != 0, \
                "restricted: the operator's container gets no capability and no root either"
        mounts = {m["name"] for c in side.containers for m in c.get("volumeMounts") or []}
        mounts |= {m["name"] for m in side.operator_mounts}
        assert mounts <= {v["name"] for v in side.volumes}, "every mount has its volume"

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
            assert await tunnel.connects(runtime, name, [(tunnel.server_address, 9), ("10.96.0.1", 443)]) == [False, False]
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
            self, tunnel: Tunnel, runtime: ContainerRuntime, bad: dict[str, Any]) -> None:
        name = f"gfy-contract-bad-{uuid.uuid4().hex[:6]}"
        with pytest.raises(errors.GefyraError):
            await tunnel.start_local_end(runtime, Settings(), _end(tunnel, name, "unused", **bad))
        assert await runtime.get_container(name) is None
