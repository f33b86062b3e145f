"""The rough edges a new user found, each pinned where no cluster is needed."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from click.testing import CliRunner

from gefyra import errors
from gefyra.cli import main
from gefyra.core.model import validation
from gefyra.core.model.requests import BridgeRequest
from gefyra.core.model.routing import Match
from gefyra.core.model.workload import ContainerStatus, restart_back_off


@pytest.mark.parametrize(("text", "seconds"), [("30", 30.0), ("30s", 30.0), ("2m", 120.0), ("1m30s", 90.0),
                                                ("500ms", 0.5), ("1h", 3600.0)])
def test_timeouts_as_kubectl_takes_them(text: str, seconds: float) -> None:
    assert validation.seconds(text, "--timeout") == seconds


def test_published_ports_may_name_an_address() -> None:
    assert validation.published_ports(["127.0.0.1:8080:80", "9090:90/udp"], "-p") == {
        "80/tcp": "127.0.0.1:8080", "90/udp": 9090}
    with pytest.raises(errors.UsageError, match="not an IPv4 address"):
        validation.published_ports(["localhost:8080:80"], "-p")


def test_dash_it_is_explained() -> None:
    result = CliRunner().invoke(main, ["run", "-it", "-N", "x", "--", "sh"])
    assert result.exit_code == 2 and "-it reads as -i t" in result.output


def test_help_is_a_command_too() -> None:
    assert "Connect this machine" in CliRunner().invoke(main, ["help", "up"]).output
    assert "Commands:" in CliRunner().invoke(main, ["help"]).output
    nothing = CliRunner().invoke(main, ["help", "nope"])
    assert nothing.exit_code == 2 and "no command 'nope'" in nothing.output


def test_unbridge_takes_a_namespace() -> None:
    result = CliRunner().invoke(main, ["unbridge", "-n", "Not Valid", "--all"])
    assert result.exit_code == 2 and "namespace" in result.output


def test_a_personal_bridge_cannot_be_in_place() -> None:
    with pytest.raises(errors.UsageError, match="cannot be in place"):
        BridgeRequest("app", "deploy/api", {80: 80}, matches=[Match("path-prefix", "/")], in_place=True).validate()


def test_a_mirror_cannot_be_in_place() -> None:
    with pytest.raises(errors.UsageError, match="a mirror cannot be in place"):
        BridgeRequest("app", "deploy/api", {80: 80}, mirror=True, in_place=True).validate()


@pytest.mark.parametrize(("fields", "named"), [
    ({"protocol": "h3", "mirror": True}, "'h3' is not a protocol"),
    ({"protocol": "grpc"}, "only personal bridges and mirrors route by protocol"),
])
def test_a_protocol_is_one_of_the_known_ones_and_only_for_personal_routing(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(errors.UsageError, match=named):
        BridgeRequest("app", "deploy/api", {80: 80}, **fields).validate()


def test_the_clis_copies_of_the_routing_names_are_the_models() -> None:
    from gefyra import cli
    from gefyra.core.model import routing

    assert (cli.MATCH_KINDS, cli.PROTOCOLS) == (routing.MATCH_KINDS, routing.PROTOCOLS)


def test_kubelets_back_off_is_estimated_from_recent_restarts() -> None:
    now = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC)
    ended = (now - datetime.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    long_ago = (now - datetime.timedelta(seconds=900)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert restart_back_off(ContainerStatus("c", restarts=0), now.timestamp()) == 0
    assert restart_back_off(ContainerStatus("c", restarts=1, last_finished=ended), now.timestamp()) == 10
    assert restart_back_off(ContainerStatus("c", restarts=3, last_finished=ended), now.timestamp()) == 40
    assert restart_back_off(ContainerStatus("c", restarts=9, last_finished=ended), now.timestamp()) == 300
    assert restart_back_off(ContainerStatus("c", restarts=9, last_finished=long_ago), now.timestamp()) == 0
