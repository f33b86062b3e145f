"""gefyra heals by itself: faults of the operator, stowaway, the API server and the client, and a
workload that changes while it is bridged, on the development cluster (Docker as the engine)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.names import STEER_BOUND
from gefyra.core.model.settings import Settings
from tests.e2e import devcluster
from tests.e2e.devcluster import KUBECONFIG, TEST_IMAGE, WORKLOAD_IMAGE, engine, eventually, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import gefyra, ok

pytestmark = pytest.mark.e2e

MEASURED: dict[str, Any] = {}
CARRIER = Settings().image("carrier")


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    """A namespace with a caller pod; gefyra up with local containers 'gfy-f-a' and 'gfy-f-b'."""
    name = unique("gfy-test-faults")
    kubectl("create", "namespace", name)
    devcluster.apply(devcluster.client_pod("caller", name))
    kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
    ok("up")
    for local, message in (("gfy-f-a", "LOCAL-A"), ("gfy-f-b", "LOCAL-B")):
        ok("run", "-i", TEST_IMAGE, "-N", local, "-n", name, "-d", "-e", f"MESSAGE={message}")
    yield name
    gefyra("down")
    kubectl("delete", "namespace", name, "--wait=false", check=False)
    print("\nfault measurements: " + json.dumps(MEASURED))


def tally(ns: str, url: str, count: int, *variants: str) -> dict[str, Any]:
    args = [url, str(count)] + [a for v in variants for a in ("--variant", v)]
    result: dict[str, Any] = json.loads(kubectl("-n", ns, "exec", "caller", "--", "testserver", "tally", *args))
    return result


def servers(result: dict[str, Any], variant: str = "") -> set[str]:
    return set((result["answers"] or {}).get(variant, {}))


DUO = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: duo, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: duo}}}}
  template:
    metadata: {{labels: {{app: duo}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {image}
        imagePullPolicy: IfNotPresent
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
      - name: admin
        image: {image}
        imagePullPolicy: IfNotPresent
        args: [serve, --http, ":8081", --tcp, ":9100", --udp, ":9101"]
        ports: [{{containerPort: 8081}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8081}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: duo, namespace: {ns}}}
spec:
  selector: {{app: duo}}
  ports: [{{name: web, port: 80, targetPort: 8080}}, {{name: admin, port: 81, targetPort: 8081}}]
"""


def test_two_bridges_on_two_containers_of_one_pod(ns: str) -> None:
    devcluster.apply(DUO.format(ns=ns, image=WORKLOAD_IMAGE))
    kubectl("-n", ns, "rollout", "status", "deploy/duo", "--timeout=90s")
    pod = kubectl_json("-n", ns, "get", "pods", "-l", "app=duo")["items"][0]
    ok("bridge", "-N", "gfy-f-a", "-n", ns, "--target", "deploy/duo/web", "-p", "8080:8080", "--in-place")
    ok("bridge", "-N", "gfy-f-b", "-n", ns, "--target", "deploy/duo/admin", "-p", "8081:8080", "--in-place")
    try:
        assert servers(tally(ns, "http://duo:80/", 6)) == {"LOCAL-A"}
        assert servers(tally(ns, "http://duo:81/", 6)) == {"LOCAL-B"}
        now = kubectl_json("-n", ns, "get", "pod", pod["metadata"]["name"])
        assert [c["image"] for c in now["spec"]["containers"]] == [CARRIER] * 2
        annotations = now["metadata"]["annotations"]
        assert annotations["web.bridged.gefyra.dev/original-image"] == WORKLOAD_IMAGE
        assert annotations["admin.bridged.gefyra.dev/original-image"] == WORKLOAD_IMAGE
    finally:
        ok("unbridge", "-N", "gfy-f-a")
        after_one = kubectl_json("-n", ns, "get", "pod", pod["metadata"]["name"])
        assert [c["image"] for c in after_one["spec"]["containers"]] == [WORKLOAD_IMAGE, CARRIER]
        ok("unbridge", "-N", "gfy-f-b")
    after = kubectl_json("-n", ns, "get", "pod", pod["metadata"]["name"])
    assert after["spec"] == pod["spec"]
    annotations = after["metadata"].get("annotations") or {}
    assert not any(k.startswith(("gefyra.dev/", "web.bridged", "admin.bridged")) for k in annotations)
    assert servers(tally(ns, "http://duo:81/", 4)) == {pod["metadata"]["name"]}
    kubectl("-n", ns, "delete", "deploy/duo", "service/duo", "--wait=false")


def deploy(ns: str, name: str, replicas: int = 2) -> list[str]:
    """The test server as a Deployment with a Service; its pods' names once all of them serve."""
    devcluster.apply(devcluster.http_workload(name, ns, replicas=replicas))
    kubectl("-n", ns, "rollout", "status", f"deploy/{name}", "--timeout=90s")

    def all_serve() -> list[str]:
        pods = sorted(p["metadata"]["name"] for p in kubectl_json("-n", ns, "get", "pods", "-l", f"app={name}")["items"]
                      if not p["metadata"].get("deletionTimestamp"))
        assert servers(tally(ns, f"http://{name}/", 6 * replicas)) == set(pods)
        return pods

    # Up to 90 s: right after the tests that restart the API server, the cluster's DNS and kube-proxy
    # may take that long to see a new Service (their watches back off while it is away); seen once.
    result: list[str] = eventually(all_serve, timeout=90)
    return result


def traffic_both_ways(ns: str, local: str, outside: str, bridged: str, answer: str) -> Callable[[], None]:
    """A check: the local container ``local`` reaches the Service ``outside``, and requests to the
    bridged Service ``bridged`` are answered by ``answer``."""
    def check() -> None:
        out = engine("exec", local, "testserver", "get", f"http://{outside}/", "--timeout", "2s").stdout
        assert out.startswith(f"hello from {outside}-"), out
        assert servers(tally(ns, f"http://{bridged}/", 4)) == {answer}
    return check


def cli(*args: str) -> subprocess.Popen[str]:
    """`gefyra ARGS` started in the background."""
    return subprocess.Popen([sys.executable, "-m", "gefyra", "--kubeconfig", str(KUBECONFIG), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def bridge_objects() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json("-n", "gefyra", "get", "gefyrabridges")["items"]
    return items


def operator_back(restarts: int) -> float:
    """Waits until the operator container restarted (after a kill) and is ready; returns when."""
    def back() -> None:
        state = devcluster.container_state(devcluster.stowaway_pod(), "operator")
        assert state["restartCount"] > restarts and state.get("ready"), state

    eventually(back, timeout=60, interval=0.2)
    return time.monotonic()


def images(ns: str, app: str) -> dict[str, list[str]]:
    return {p["metadata"]["name"]: [c["image"] for c in p["spec"]["containers"]]
            for p in kubectl_json("-n", ns, "get", "pods", "-l", f"app={app}")["items"]}


def test_operator_killed_while_a_bridge_is_made_and_while_it_is_removed(ns: str) -> None:
    pods = deploy(ns, "kil")
    before = images(ns, "kil")
    making = cli("bridge", "-N", "gfy-f-a", "-n", ns, "--target", "deploy/kil", "-p", "8080:8080", "--in-place")
    eventually(lambda: assert_(bridge_objects()), timeout=30, interval=0.1)
    restarts = devcluster.container_state(devcluster.stowaway_pod(), "operator")["restartCount"]
    devcluster.kill_container(devcluster.stowaway_pod(), "operator")
    back = operator_back(restarts)
    _, err = making.communicate(timeout=180)
    assert making.returncode == 0, err
    eventually(lambda: assert_(servers(tally(ns, "http://kil/", 10)) == {"LOCAL-A"}), timeout=30)
    MEASURED["bridge Ready after the operator's restart (s)"] = round(time.monotonic() - back, 1)
    pod = kubectl_json("-n", ns, "get", "pods", "-l", "app=kil")["items"][0]
    assert pod["metadata"]["annotations"]["server.bridged.gefyra.dev/original-image"] == WORKLOAD_IMAGE

    removing = cli("unbridge", "--all")
    eventually(lambda: assert_(any(b["metadata"].get("deletionTimestamp") for b in bridge_objects())),
               timeout=30, interval=0.1)
    restarts = devcluster.container_state(devcluster.stowaway_pod(), "operator")["restartCount"]
    devcluster.kill_container(devcluster.stowaway_pod(), "operator")
    back = operator_back(restarts)
    _, err = removing.communicate(timeout=180)
    assert removing.returncode == 0, err
    eventually(lambda: assert_(servers(tally(ns, "http://kil/", 10)) == set(pods)), timeout=30)
    MEASURED["workload restored after the operator's restart (s)"] = round(time.monotonic() - back, 1)
    assert images(ns, "kil") == before


def test_the_tunnel_heals_after_the_stowaway_pod_is_deleted(ns: str) -> None:
    deploy(ns, "heal", replicas=1)
    deploy(ns, "backend", replicas=1)
    ok("bridge", "-N", "gfy-f-b", "-n", ns, "--target", "deploy/heal", "-p", "8080:8080")
    try:
        both_ways = traffic_both_ways(ns, "gfy-f-a", "backend", "heal", "LOCAL-B")
        both_ways()
        deleted = time.monotonic()
        kubectl("-n", "gefyra", "delete", "pod", devcluster.stowaway_pod()["metadata"]["name"], "--wait=false")
        eventually(both_ways, timeout=60, interval=0.5)
        MEASURED["both directions again after stowaway's pod was deleted (s)"] = round(time.monotonic() - deleted, 1)
        assert time.monotonic() - deleted < 45
    finally:
        ok("unbridge", "--all")


def test_the_operator_outlives_a_restart_of_the_api_server(ns: str) -> None:
    pods = deploy(ns, "api", replicas=1)
    restarts = devcluster.container_state(devcluster.stowaway_pod(), "operator")["restartCount"]
    started = time.monotonic()
    devcluster.restart_apiserver()
    MEASURED["kube-apiserver restart (s)"] = round(time.monotonic() - started, 1)
    ok("bridge", "-N", "gfy-f-a", "-n", ns, "--target", "deploy/api", "-p", "8080:8080")
    try:
        assert servers(tally(ns, "http://api/", 10)) == {"LOCAL-A"}
    finally:
        ok("unbridge", "--all")
    assert servers(tally(ns, "http://api/", 6)) == set(pods)
    assert devcluster.container_state(devcluster.stowaway_pod(), "operator")["restartCount"] == restarts


def test_a_client_connection_outlives_a_restart_of_the_api_server() -> None:
    """Requests of a connected client while kube-apiserver is killed and started again: each one
    is answered (tried again while the server is away), none is reported as an error."""
    async def main() -> tuple[int, float]:
        answered, longest = 0, 0.0
        async with Cluster(Settings(kubeconfig=str(KUBECONFIG))) as cluster, anyio.create_task_group() as tg:
            restarted = anyio.Event()

            async def restart() -> None:
                await anyio.to_thread.run_sync(devcluster.restart_apiserver)
                restarted.set()

            tg.start_soon(restart)
            while not restarted.is_set():
                started = anyio.current_time()
                await cluster.request("GET", "/api/v1/namespaces/default")
                answered, longest = answered + 1, max(longest, anyio.current_time() - started)
                await anyio.sleep(0.05)
        return answered, longest

    answered, longest = anyio.run(main)
    MEASURED["client request across an API server restart: longest (s)"] = round(longest, 1)
    assert answered > 0 and longest > 0.5, (answered, longest)  # at least one request met the restart


def test_a_bridge_whose_client_was_killed_on_the_way_is_restored(ns: str) -> None:
    """The client dies between creating the bridge and steering it: within the bound the operator
    removes the bridge and the workload answers as before; it never keeps answering nothing."""
    pods = deploy(ns, "orphan")
    making = cli("bridge", "-N", "gfy-f-a", "-n", ns, "--target", "deploy/orphan", "-p", "8080:8080")
    eventually(lambda: assert_(bridge_objects()), timeout=30, interval=0.05)
    making.kill()
    killed = time.monotonic()
    making.communicate()

    def settled() -> None:
        """Bridged and steered (the client got that far), or the bridge gone and the pods restored."""
        left = bridge_objects()
        steered = bool(left) and all((b["metadata"].get("annotations") or {}).get("gefyra.dev/steered") for b in left)
        assert steered or not left, left
        found = tally(ns, "http://orphan/", 10)
        assert found["failed"] == 0 and servers(found) == ({"LOCAL-A"} if steered else set(pods)), found

    eventually(settled, timeout=STEER_BOUND + 30, interval=1)
    MEASURED["client killed while bridging: settled after (s)"] = round(time.monotonic() - killed, 1)
    time.sleep(3)
    settled()  # and it stays so
    ok("unbridge", "--all")
    assert servers(tally(ns, "http://orphan/", 10)) == set(pods)


def assert_(condition: object) -> None:
    assert condition


def test_new_and_replaced_pods_of_a_bridged_deployment_run_carrier_within_seconds(ns: str) -> None:
    deploy(ns, "grow", replicas=1)
    ok("bridge", "-N", "gfy-f-a", "-n", ns, "--target", "deploy/grow", "-p", "8080:8080", "--in-place")
    try:
        def bridged_pods(count: int, without: str = "") -> list[str]:
            pods: list[str] = json.loads(ok("list", "-o", "json").stdout)["bridges"][0]["pods"]
            assert len(pods) == count and without not in pods, pods
            return pods

        for change in ("scale 1 -> 3", "pod deleted"):
            started = time.monotonic()
            if change == "scale 1 -> 3":
                kubectl("-n", ns, "scale", "deploy/grow", "--replicas=3")
                eventually(lambda: bridged_pods(3), timeout=60, interval=0.2)
            else:
                victim = bridged_pods(3)[0]
                kubectl("-n", ns, "delete", "pod", victim, "--wait=false")
                eventually(lambda gone=victim: bridged_pods(3, without=gone), timeout=60, interval=0.2)
            MEASURED[f"{change}: until every pod runs carrier (s)"] = round(time.monotonic() - started, 1)
            time.sleep(max(0.0, 10 - (time.monotonic() - started)))
            found = tally(ns, "http://grow/", 90)
            assert found["failed"] == 0 and servers(found) == {"LOCAL-A"}, found
    finally:
        ok("unbridge", "--all")


def test_down_finishes_and_gives_the_workloads_back_when_the_operator_is_gone(ns: str) -> None:
    pods = deploy(ns, "lone")
    before = {"images": images(ns, "lone"), "service": kubectl_json("-n", ns, "get", "service", "lone")["spec"]}
    ok("bridge", "-N", "gfy-f-a", "-n", ns, "--target", "deploy/lone", "-p", "8080:8080", "--in-place")
    ok("bridge", "-N", "gfy-f-b", "-n", ns, "--target", "deploy/lone", "-p", "9000:9000", "--match-path-prefix", "/")
    kubectl("-n", "gefyra", "scale", "deploy/gefyra-stowaway", "--replicas=0")
    eventually(lambda: assert_(not kubectl_json("-n", "gefyra", "get", "pods", "-l",
                                                "app.kubernetes.io/name=gefyra-stowaway")["items"]), timeout=60)
    started = time.monotonic()
    result = gefyra("down")
    MEASURED["down without an operator (s)"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.stderr
    assert "cluster side" in result.stdout
    assert kubectl("get", "namespace", "gefyra", "--ignore-not-found") == ""
    assert eventually(lambda: assert_(images(ns, "lone") == before["images"]) or True, timeout=30)
    assert kubectl_json("-n", ns, "get", "service", "lone")["spec"] == before["service"]
    assert not kubectl_json("-n", ns, "get", "endpointslices", "-l", "app.kubernetes.io/managed-by=gefyra")["items"]
    eventually(lambda: assert_(servers(tally(ns, "http://lone/", 10)) == set(pods)), timeout=30)
    ok("up")  # for the module's other tests
    for local, message in (("gfy-f-a", "LOCAL-A"), ("gfy-f-b", "LOCAL-B")):
        ok("run", "-i", TEST_IMAGE, "-N", local, "-n", ns, "-d", "-e", f"MESSAGE={message}")


def test_a_restarted_cargo_carries_bridges_and_outbound_traffic_again(ns: str) -> None:
    deploy(ns, "again", replicas=1)
    deploy(ns, "outside", replicas=1)
    ok("bridge", "-N", "gfy-f-a", "-n", ns, "--target", "deploy/again", "-p", "8080:8080")
    try:
        both_ways = traffic_both_ways(ns, "gfy-f-b", "outside", "again", "LOCAL-A")
        both_ways()
        cargo = json.loads(ok("status", "-o", "json").stdout)["cargo"]["name"]
        started = time.monotonic()
        engine("restart", cargo)
        eventually(both_ways, timeout=60, interval=0.5)
        MEASURED["both directions again after cargo restarted (s)"] = round(time.monotonic() - started, 1)
    finally:
        ok("unbridge", "--all")


def test_run_containers_keep_resolving_and_reaching_the_cluster_when_up_makes_cargo_anew(ns: str) -> None:
    deploy(ns, "named", replicas=1)

    def reaches() -> None:
        out = engine("exec", "gfy-f-b", "testserver", "get", "http://named/", "--timeout", "2s").stdout
        assert out.startswith("hello from named-"), out

    reaches()
    cargo = json.loads(ok("status", "-o", "json").stdout)["cargo"]["name"]
    address = engine("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cargo).stdout.strip()
    engine("rm", "-f", cargo)
    ok("up")  # a new cargo, with a new key: the same address on gefyra's network
    assert engine("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                  cargo).stdout.strip() == address
    eventually(reaches, timeout=20)
