"""gefyra on a cluster of two nodes (the development cluster's second node, hack/devcluster/node.sh):
the bridged workload's pods on both nodes, stowaway on one node and the tunnel's endpoint on the
other (kube-proxy forwards the NodePort between them), router pods where the scheduler puts them,
and a NodePort with ``externalTrafficPolicy: Local``, which only stowaway's node answers.

The module adds the second node if the cluster has one node (`make test`), and removes it again at
its end: the other modules' tests reach pods through node 1's containerd. Tests run in order."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import REPO, TEST_IMAGE, assert_equal, engine, eventually, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import bridge_globally_then_personally, caller_get, gefyra, ok

pytestmark = pytest.mark.e2e

NODE_SCRIPT = REPO / "hack" / "devcluster" / "node.sh"
SECOND_NODE = "gefyra-dev-2"
#: Another machine of the same developer team: a second client of the same cluster side.
SECOND_CLIENT = {"GEFYRA_CLIENT_ID": "gfy-multi-b"}
MEASURED: dict[str, Any] = {}


def _nodes() -> dict[str, dict[str, Any]]:
    return {n["metadata"]["name"]: n for n in kubectl_json("get", "nodes")["items"]}


def _address(node: dict[str, Any]) -> str:
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def _node_script(*args: str) -> None:
    done = subprocess.run(["bash", str(NODE_SCRIPT), *args], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"node.sh {' '.join(args)}: {done.stderr}"


@pytest.fixture(scope="module")
def second_node() -> Iterator[None]:
    """The second node, added here unless it runs already (and then removed here)."""
    added = SECOND_NODE not in _nodes()
    if added:
        _node_script("add", "2")
    yield
    if added:
        _node_script("remove", "2")


@pytest.fixture(scope="module")
def two_nodes(second_node: None, runtime: str) -> Iterator[dict[str, str]]:
    """Node name -> address of both nodes."""
    gefyra("down")
    yield {name: _address(node) for name, node in _nodes().items()}
    gefyra("down", env=SECOND_CLIENT)
    gefyra("down")


@pytest.fixture(scope="module")
def ns(two_nodes: dict[str, str]) -> Iterator[str]:
    name = unique("gfy-test-mn")
    kubectl("create", "namespace", name)
    devcluster.apply(devcluster.client_pod("caller", name))
    devcluster.apply(devcluster.http_workload("web", name, replicas=4, spread=True))
    kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=90s")
    kubectl("-n", name, "rollout", "status", "deploy/web", "--timeout=90s")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _pods(ns: str, app: str) -> dict[str, str]:
    """Pod name -> node of the running pods of ``app``."""
    pods = kubectl_json("-n", ns, "get", "pods", "-l", f"app={app}")["items"]
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def test_two_ready_nodes_whose_pods_reach_each_other(two_nodes: dict[str, str], ns: str) -> None:
    assert set(two_nodes) == {"gefyra-dev", SECOND_NODE}
    assert all(devcluster.kubectl("get", "node", n, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True"
               for n in two_nodes)
    pods = _pods(ns, "web")
    assert set(pods.values()) == set(two_nodes), pods
    # The caller reaches each pod through the Service, on its own node and on the other.
    answered: set[str] = set()

    def every_pod_answers() -> None:
        answered.add(caller_get(ns).split()[2])
        assert answered == set(pods), answered

    eventually(every_pod_answers, timeout=30, interval=0.1)


def test_up_through_the_node_that_does_not_run_stowaway(two_nodes: dict[str, str], ns: str) -> None:
    """The endpoint is node 1 (the API server's host); stowaway is made to start on node 2, so the
    tunnel's datagrams reach it through kube-proxy's forwarding between the nodes."""
    kubectl("cordon", "gefyra-dev")
    try:
        ok("up")
    finally:
        kubectl("uncordon", "gefyra-dev")
    stowaway = devcluster.stowaway_pod()
    assert stowaway["spec"]["nodeName"] == SECOND_NODE
    cargo = json.loads(ok("status", "-o", "json").stdout)["cargo"]
    assert cargo["transport"] == "udp" and cargo["endpoint"] == f"{two_nodes['gefyra-dev']}:31820", cargo

    # A local container reaches the Service by name, and through it pods on both nodes.
    ok("run", "-i", TEST_IMAGE, "-N", "gfy-mn-local", "-n", ns, "-d", "-e", "MESSAGE=LOCAL")
    pods = _pods(ns, "web")
    answered: set[str] = set()

    def both_nodes_answer() -> None:
        out = engine("exec", "gfy-mn-local", "testserver", "get", "http://web/", "--timeout", "3s").stdout
        answered.add(out.split()[2])
        assert {pods[p] for p in answered if p in pods} == set(two_nodes), answered

    eventually(both_nodes_answer, timeout=30, interval=0.1)


def test_bridges_of_a_workload_on_both_nodes(ns: str) -> None:
    """Globally, then personally: the router's pods stand wherever the scheduler puts them, and
    answers come from the local container; the cluster's pods on both nodes answer again after."""
    routers: dict[str, str] = {}

    def note_routers() -> None:
        found = {p["metadata"]["name"]: p["spec"].get("nodeName", "")
                 for p in kubectl_json("-n", "gefyra", "get", "pods")["items"] if "router" in p["metadata"]["name"]}
        assert found
        routers.update(found)

    bridge_globally_then_personally(ns, "gfy-mn-local", while_bridged=note_routers)
    MEASURED["router pods' nodes"] = sorted(set(routers.values()))
    assert set(_pods(ns, "web").values()) == {"gefyra-dev", SECOND_NODE}


def test_a_node_port_with_external_traffic_policy_local(two_nodes: dict[str, str], ns: str) -> None:
    """An admin sets the NodePort's externalTrafficPolicy to Local: node 1 no longer answers on it.
    A second client's `up` then sends to stowaway's node, over UDP, and reaches the cluster."""
    kubectl("-n", "gefyra", "patch", "service", "gefyra-stowaway", "-p", '{"spec":{"externalTrafficPolicy":"Local"}}')
    try:
        up = ok("up", "--transport", "udp", env=SECOND_CLIENT)
        assert f"{two_nodes[SECOND_NODE]}:31820 (externalTrafficPolicy Local" in up.stderr, up.stderr
        cargo = json.loads(ok("status", "-o", "json", env=SECOND_CLIENT).stdout)["cargo"]
        assert cargo["transport"] == "udp" and cargo["endpoint"] == f"{two_nodes[SECOND_NODE]}:31820", cargo
        ok("run", "-i", TEST_IMAGE, "-N", "gfy-mn-local-b", "-n", ns, "-d", env=SECOND_CLIENT)
        eventually(lambda: assert_equal(
            engine("exec", "gfy-mn-local-b", "testserver", "get", "http://web/", "--timeout", "3s").stdout[:14],
            "hello from web"), timeout=20)
    finally:
        kubectl("-n", "gefyra", "patch", "service", "gefyra-stowaway", "-p", '{"spec":{"externalTrafficPolicy":"Cluster"}}')
        gefyra("down", env=SECOND_CLIENT)


def test_the_transport_through_the_api_reaches_stowaway_on_the_other_node(ns: str) -> None:
    """The API server (on node 1) opens the port-forward through node 2's kubelet, which serves
    with node 2's own certificate."""
    assert devcluster.stowaway_pod()["spec"]["nodeName"] == SECOND_NODE
    try:
        ok("up", "--transport", "api", env=SECOND_CLIENT)
        assert json.loads(ok("status", "-o", "json", env=SECOND_CLIENT).stdout)["cargo"]["transport"] == "api"
        ok("run", "-i", TEST_IMAGE, "-N", "gfy-mn-local-api", "-n", ns, "-d", env=SECOND_CLIENT)
        eventually(lambda: assert_equal(
            engine("exec", "gfy-mn-local-api", "testserver", "get", "http://web/", "--timeout", "3s").stdout[:14],
            "hello from web"), timeout=20)
    finally:
        gefyra("down", env=SECOND_CLIENT)
