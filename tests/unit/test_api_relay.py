"""The relay through the Kubernetes API: its framing, its arguments, and the transport setting."""

from __future__ import annotations

import pytest

from gefyra import errors
from gefyra.client import api_relay
from gefyra.core.model.settings import Settings


def test_frames_survive_any_split_of_the_stream() -> None:
    datagrams = [b"", b"a", b"x" * 1400, bytes(range(256)) * 3, b"\x00\x01"]
    stream = b"".join(api_relay.frame(d) for d in datagrams)
    for piece in (1, 2, 3, 7, 1402, len(stream)):
        unframer, found = api_relay.Unframer(), []
        for at in range(0, len(stream), piece):
            found += unframer.feed(stream[at:at + piece])
        assert found == datagrams, piece


def test_a_frame_is_its_length_then_the_datagram() -> None:
    assert api_relay.frame(b"abc") == b"\x00\x03abc"
    assert api_relay.frame(b"x" * 300)[:2] == b"\x01\x2c"


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
