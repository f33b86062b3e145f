"""The contract between the client and the operator: GefyraClient and GefyraBridge read in one
function each (every field checked: what comes back from the cluster is untrusted) and written in
one; the rule of which bridges may share a port, once; status patches that fix what was there."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from gefyra.core.model import crd
from gefyra.core.model.conditions import READY, Condition, with_condition
from gefyra.core.model.crd import BridgeSpec, BridgeStatus, BridgeTarget, PortClaim, PortPair
from gefyra.core.model.routing import Match, Target

GOOD_TARGET = {"namespace": "shop", "kind": "deployment", "name": "web", "container": "server"}


def _bridge(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"client": "dev-a", "owner": "alice", "localContainer": "web-local", "target": GOOD_TARGET,
                            "ports": [{"remote": 8080, "local": 8000}]}
    body.update(spec)
    return {"metadata": {"name": "b1", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": body}


def test_a_well_formed_bridge_reads_as_written() -> None:
    spec = BridgeSpec("dev-a", "alice", "web-local", BridgeTarget("shop", "deployment", "web", "server"),
                      (PortPair(8080, 8000), PortPair(9000, 9001)), (Match("header-exact", "a", "x-dev"),), "nginx")
    body = crd.bridge_body("b1", spec)
    assert body["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "gefyra", "gefyra.dev/client": "dev-a"}
    found = crd.parse_bridge(body)
    assert found.name == "b1" and found.spec == spec and found.problem is None
    assert str(found.spec.target) == "deployment/web/server" and found.spec.target.workload == Target("shop", "deployment", "web")


def test_a_mirror_and_its_protocol_read_as_written_and_a_bad_protocol_is_the_problem() -> None:
    spec = BridgeSpec("dev-a", "alice", "web-local", BridgeTarget("shop", "deployment", "web", "server"),
                      (PortPair(8080, 8000),), mirror=True, protocol="grpc")
    found = crd.parse_bridge(crd.bridge_body("b1", spec))
    assert found.spec == spec and found.spec.personal and found.problem is None
    bad = crd.parse_bridge(_bridge(protocol="h3", match=[{"kind": "path-prefix", "value": "/"}]))
    assert bad.spec.protocol == "" and "spec.protocol 'h3' is not one of http, h2c, grpc" in str(bad.problem)


@pytest.mark.parametrize(("target", "reason"), [
    ({"namespace": "kube-system", "kind": "deployment", "name": "coredns", "container": "coredns"}, "kube-system"),
    ({"namespace": "gefyra", "kind": "deployment", "name": "x", "container": "x"}, "namespace gefyra"),
    ({"namespace": "a;b", "kind": "deployment", "name": "x", "container": "x"}, "not a Kubernetes name"),
    ({"namespace": "a", "kind": "daemonset", "name": "x", "container": "x"}, "kind must be"),
    ({"namespace": "a", "kind": "deployment", "name": "x\ny", "container": "x"}, "not a Kubernetes name"),
    ({"namespace": "a", "kind": "deployment", "name": 5, "container": "x"}, "not a Kubernetes name"),
    (None, "missing"),
    ("deploy/x", "missing"),
])
def test_targets_that_are_refused(target: Any, reason: str) -> None:
    found = crd.parse_bridge(_bridge(target=target))
    assert found.spec.target is None and found.problem is not None and reason in found.problem


@pytest.mark.parametrize(("ports", "reason"), [
    ([], "names no port"),
    ("8080", "names no port"),
    ([{"remote": 0, "local": 1}], "remote port that is not 1-65535"),
    ([{"remote": True, "local": 1}], "remote port that is not 1-65535"),
    ([{"remote": "80", "local": 1}], "remote port that is not 1-65535"),
    ([{"remote": 80, "local": 70000}], "local port that is not 1-65535"),
    (["x"], "remote port"),
])
def test_ports_that_are_refused(ports: Any, reason: str) -> None:
    found = crd.parse_bridge(_bridge(ports=ports))
    assert found.problem is not None and reason in found.problem and found.spec.ports == ()


def test_conditions_are_read_back_checked() -> None:
    good = crd.parse_bridge(_bridge(match=[{"kind": "header-exact", "header": "x-dev", "value": "a"}]))
    assert good.spec.matches == (Match("header-exact", "a", "x-dev"),) and good.problem is None
    for bad in ([{"kind": "header-exact", "header": "x-dev", "value": "a\nb"}], "x", [{"kind": "nope", "value": "/"}],
                [{"kind": "path-prefix", "value": "/"}] * 9):
        assert (crd.parse_bridge(_bridge(match=bad)).problem or "").startswith("spec.match"), bad


def test_the_first_problem_is_the_targets() -> None:
    assert "spec.target" in (crd.parse_bridge(_bridge(target=None, ports=[])).problem or "")


@pytest.mark.parametrize(("status", "expected"), [
    ({"proxyPorts": {"8080": 20001}}, {8080: 20001}),
    ({"proxyPorts": {"8080": 80}}, {}),  # not a port of the server end
    ({"proxyPorts": {"8080": "x"}}, {}),
    ({"proxyPorts": {"80a": 20001}}, {}),
    ({"proxyPorts": {"٨٠": 20001}}, {}),  # digits, but not ASCII ones
    ({"proxyPorts": ["8080"]}, {}),
    ({}, {}),
])
def test_proxy_ports_are_read_back_checked(status: dict[str, Any], expected: dict[int, int]) -> None:
    found = crd.parse_bridge({**_bridge(), "status": status})
    assert found.status.proxy_ports == expected
    assert found.proxy_ports() == expected  # the bridge's port is 8080


def test_proxy_ports_for_other_ports_than_the_bridges_count_as_none() -> None:
    found = crd.parse_bridge({**_bridge(), "status": {"proxyPorts": {"9000": 20001}}})
    assert found.status.proxy_ports == {9000: 20001} and found.proxy_ports() == {}


def test_a_status_patch_replaces_and_removes_what_was_there() -> None:
    found = crd.parse_bridge({**_bridge(), "status": {"proxyPorts": {"9000": 80}, "phase": "Pending", "junk": 1}})
    wanted = BridgeStatus(phase="Pending", proxy_ports={8080: 20001})
    assert crd.status_patch(found.status_json, wanted) == {
        "status": {"junk": None, "proxyPorts": {"9000": None, "8080": 20001}}}
    assert crd.status_patch(wanted.to_json(), wanted) == {}


def test_unset_status_fields_are_left_out_of_what_is_written() -> None:
    # The CRD's patterns refuse "" for podNamespace and the like.
    assert BridgeStatus(phase="Active").to_json() == {"phase": "Active"}


def test_conditions_keep_their_transition_time_while_their_status_stays() -> None:
    first = with_condition((), READY, False, "TakingOver")
    before = Condition(READY, "False", "TakingOver", "", "2020-01-01T00:00:00Z")
    assert first[0].last_transition_time
    assert with_condition((before,), READY, False, "Still")[0].last_transition_time == "2020-01-01T00:00:00Z"
    assert with_condition((before,), READY, True, "Forwarding")[0].last_transition_time != "2020-01-01T00:00:00Z"
    found = crd.parse_bridge({**_bridge(), "status": {"conditions": [first[0].to_json(), {"type": 5}, "x"]}})
    assert found.status.conditions == first and found.condition(READY) is None


def test_a_bridge_is_unsteered_until_its_client_says_so() -> None:
    made = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = _bridge()
    body["metadata"]["creationTimestamp"] = made
    assert 39 < crd.parse_bridge(body).unsteered_for() < 60
    body["metadata"]["annotations"] = {"gefyra.dev/steered": "true"}
    assert crd.parse_bridge(body).unsteered_for() == 0


def test_a_client_reads_as_written() -> None:
    body = crd.client_body("dev-a", "KEY", "alice")
    body["status"] = {"address": "198.18.0.2", "phase": "Active", "serverPublicKey": 7}
    found = crd.parse_client(body)
    assert (found.name, found.public_key, found.owner) == ("dev-a", "KEY", "alice")
    assert found.status == crd.ClientStatus("198.18.0.2", "", "Active")  # a key that is not text is none


def test_a_global_bridge_and_personal_ones_refuse_each_other() -> None:
    def claim(name: str, personal: bool, port: int = 8080, container: str = "server") -> PortClaim:
        return PortClaim(name, container, frozenset({port}), personal)

    assert crd.conflict(claim("b", True), [claim("a", True)]) is None
    assert "bridged globally by a" in (crd.conflict(claim("b", True), [claim("a", False)]) or "")
    assert "has personal bridges" in (crd.conflict(claim("b", False), [claim("a", True)]) or "")
    assert crd.conflict(claim("b", False), [claim("a", False, port=9000)]) is None
    assert crd.conflict(claim("b", False), [claim("a", False, container="admin")]) is None


def test_claims_count_the_bridges_on_the_same_workload_that_stay() -> None:
    personal = crd.parse_bridge(_bridge(match=[{"kind": "path-prefix", "value": "/"}]))
    other = crd.parse_bridge(_bridge(target={**GOOD_TARGET, "name": "api"}))
    bad = crd.parse_bridge(_bridge(ports=[]))
    claims = crd.claims_on([personal, other, bad], Target("shop", "deployment", "web"))
    assert claims == [PortClaim("b1", "server", frozenset({8080}), True)]


#: The objects of the end-to-end bad-input table (tests/e2e/test_bad_inputs.py) that the API
#: server's schema refuses, or the operator reports Invalid: the parser refuses each on its own,
#: with the reason the operator writes on the object.
BAD_BRIDGES = [
    ("bridge-port-zero", {"ports": [{"remote": 0, "local": 8080}]}, "spec.ports has a remote port that is not 1-65535: 0"),
    ("bridge-port-too-big", {"ports": [{"remote": 70000, "local": 8080}]},
     "spec.ports has a remote port that is not 1-65535: 70000"),
    ("bridge-target-name-quote", {"target": {**GOOD_TARGET, "name": "web'x"}},
     "spec.target.name is not a Kubernetes name: \"web'x\""),
    ("bridge-target-kube-system", {"target": {"namespace": "kube-system", "kind": "deployment", "name": "coredns",
                                              "container": "coredns"}},
     "gefyra does not bridge workloads in namespace kube-system"),
]


@pytest.mark.parametrize(("spec", "reason"), [(s, r) for _, s, r in BAD_BRIDGES], ids=[i for i, _, _ in BAD_BRIDGES])
def test_the_bad_input_tables_bridges_are_refused_with_their_reason(spec: dict[str, Any], reason: str) -> None:
    assert crd.parse_bridge(_bridge(**spec)).problem == reason


@pytest.mark.parametrize("address", ["10.0.0.5", "198.18.0.9,0.0.0.0/0", "198.18.0.9\nPostUp = id", "198.18.0.1", ""])
def test_the_bad_input_tables_client_addresses_are_not_taken(address: str) -> None:
    from gefyra.operator.clients import Clients
    from gefyra.plugins.wireguard import WireGuardTunnel

    tunnel = WireGuardTunnel()
    clients = Clients(None, "gefyra", tunnel, tunnel.server(), 60, 3600)  # type: ignore[arg-type]  # no cluster needed
    assert not clients._valid_address(address)
    assert clients._valid_address("198.18.0.9")


class _Server:
    """The tunnel's server end as the client reconciler sees it: peers and their received bytes."""

    def __init__(self) -> None:
        self.peers_: dict[str, str] = {}
        self.received_: dict[str, int] = {}

    def is_public_key(self, text: str) -> bool:
        return len(text) == 44

    async def peers(self) -> dict[str, str]:
        return dict(self.peers_)

    async def set_peer(self, public_key: str, address: str) -> None:
        self.peers_[public_key] = address
        self.received_.setdefault(public_key, 0)

    async def remove_peer(self, public_key: str) -> None:
        self.peers_.pop(public_key)

    async def received(self) -> dict[str, int]:
        return {k: v for k, v in self.received_.items() if k in self.peers_}


class _Cluster:
    """GefyraClients in memory: status patches merged, deletions applied."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects_ = {o["metadata"]["name"]: o for o in objects}

    async def objects(self, _path: str) -> list[dict[str, Any]]:
        return list(self.objects_.values())

    async def request(self, _method: str, path: str, patch: dict[str, Any], **_: Any) -> None:
        status = self.objects_[path.split("/")[-2]].setdefault("status", {})
        status.update(patch["status"])  # a merge patch: None removes a field
        for field in [k for k, v in status.items() if v is None]:
            del status[field]

    async def delete(self, path: str, **_: Any) -> None:
        self.objects_.pop(path.split("/")[-1])


def test_a_silent_client_stays_with_its_address_until_its_expiry(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """Silent after the timeout (its bridges suspended, its peer and address kept), Active again when
    its peer receives again, gone only after the expiry."""
    import anyio

    from gefyra.operator import clients as module
    from gefyra.plugins.wireguard import WireGuardTunnel

    key, server_key = "a" * 43 + "=", "b" * 43 + "="
    (tmp_path / "public-key").write_text(server_key)
    monkeypatch.setattr(module, "SERVER_PUBLIC_KEY", tmp_path / "public-key")
    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    cluster, server = _Cluster(crd.client_body("laptop", key)), _Server()
    clients = module.Clients(cluster, "gefyra", WireGuardTunnel(), server, 60, 3600)  # type: ignore[arg-type]

    def at(seconds: float) -> module.Roster:
        now[0] = 1000.0 + seconds
        return anyio.run(clients.sync)

    assert list(at(0).active) == ["laptop"]
    address = cluster.objects_["laptop"]["status"]["address"]
    server.received_[key] = 500
    assert list(at(10).active) == ["laptop"]
    roster = at(71)  # nothing received for 61 s
    assert roster.active == {} and roster.silent == {"laptop"}
    assert cluster.objects_["laptop"]["status"]["phase"] == "Silent" and server.peers_ == {key: address}
    server.received_[key] = 600  # it speaks again
    roster = at(80)
    assert list(roster.active) == ["laptop"] and roster.silent == set()
    status = cluster.objects_["laptop"]["status"]
    assert status["phase"] == "Active" and status["address"] == address and not status.get("message"), status
    assert at(3000).silent == {"laptop"}
    roster = at(3700)  # silent for 3620 s: past the expiry
    assert roster.active == {} and roster.silent == set() and cluster.objects_ == {}


def test_a_client_whose_status_is_refused_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    import anyio

    from gefyra import errors
    from gefyra.operator import clients as module
    from gefyra.plugins.wireguard import WireGuardTunnel

    (tmp_path / "public-key").write_text("b" * 43 + "=")
    monkeypatch.setattr(module, "SERVER_PUBLIC_KEY", tmp_path / "public-key")

    class Refusing(_Cluster):
        async def request(self, method: str, path: str, patch: dict[str, Any], **kwargs: Any) -> None:
            if "/broken/" in path:
                raise errors.GefyraError("the cluster refused PATCH: the object does not validate")
            await super().request(method, path, patch, **kwargs)

    broken, fine = crd.client_body("broken", "c" * 43 + "="), crd.client_body("fine", "d" * 43 + "=")
    broken["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"  # the older one: it comes first
    fine["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    cluster, server = Refusing(broken, fine), _Server()
    roster = anyio.run(module.Clients(cluster, "gefyra", WireGuardTunnel(), server, 60, 3600).sync)  # type: ignore[arg-type]
    assert list(roster.active) == ["fine"] and cluster.objects_["fine"]["status"]["phase"] == "Active"
    assert list(server.peers_) == ["d" * 43 + "="]
