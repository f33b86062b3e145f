"""The tunnel endpoint's choice, case by case (gefyra.client.tunnel_endpoint)."""

from __future__ import annotations

import pytest

from gefyra.client.tunnel_endpoint import Known, choose, node_addresses

HOST_GATEWAY_NAME = "host.docker.internal"

NODES = ("172.18.0.2",)


@pytest.mark.parametrize(("known", "given", "host", "why"), [
    (Known("10.250.0.2", ("10.250.0.2",)), None, "10.250.0.2", "is a node"),
    (Known("10.250.0.2"), None, "10.250.0.2", "nodes unknown"),
    (Known("127.0.0.1", NODES, context="kind-dev"), None, "172.18.0.2", "loopback"),  # kind, k3d
    (Known("localhost", NODES), None, "172.18.0.2", "loopback"),
    (Known("0:0:0:0:0:0:0:1", NODES), None, "172.18.0.2", "loopback"),
    (Known("api.example.com", ("203.0.113.7", "10.0.0.4")), None, "203.0.113.7", "not a node"),  # a load balancer
    (Known("127.0.0.1", NODES, vm_gateway=HOST_GATEWAY_NAME), None, HOST_GATEWAY_NAME, "host gateway"),
    (Known("10.250.0.2", ("10.250.0.2",), vm_gateway=HOST_GATEWAY_NAME), None, HOST_GATEWAY_NAME, "a VM"),
    (Known("192.168.49.2", ("192.168.49.2",), context="minikube"), None, "192.168.49.2", "minikube"),
    (Known("127.0.0.1", ("192.168.49.2",), context="minikube"), None, "192.168.49.2", "minikube"),
    (Known("127.0.0.1"), None, "127.0.0.1", "nodes unknown"),
    (Known("127.0.0.1", NODES, vm_gateway=HOST_GATEWAY_NAME), "10.1.2.3", "10.1.2.3", "--host"),
    # externalTrafficPolicy Local: only the server end's node answers on the NodePort
    (Known("10.250.0.2", ("10.250.0.2", "10.250.0.3"), serving_nodes=("10.250.0.3",)), None, "10.250.0.3", "Local"),
    (Known("10.250.0.2", ("10.250.0.2", "10.250.0.3"), serving_nodes=("10.250.0.3", "10.250.0.2")), None,
     "10.250.0.2", "Local"),
    (Known("10.250.0.2", ("10.250.0.2",), serving_nodes=("10.250.0.3",)), "10.9.9.9", "10.9.9.9", "--host"),
])
def test_the_endpoint_is_chosen_where_containers_reach_the_nodes(known: Known, given: str | None, host: str,
                                                                   why: str) -> None:
    chosen = choose(known, given)
    assert chosen.host == host and why in chosen.why, chosen


def test_node_addresses_come_external_first_from_ready_nodes_only() -> None:
    def node(ready: bool, *addresses: tuple[str, str]) -> dict[str, object]:
        return {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                           "addresses": [{"type": t, "address": a} for t, a in addresses]}}

    nodes = [node(True, ("InternalIP", "10.0.0.4"), ("Hostname", "n1"), ("ExternalIP", "203.0.113.7")),
             node(False, ("InternalIP", "10.0.0.5")),
             node(True, ("InternalIP", "fd00::4"), ("InternalIP", "not-an-ip"), ("InternalIP", "10.0.0.6"))]
    assert node_addresses(nodes) == ["203.0.113.7", "10.0.0.4", "10.0.0.6"]
