"""The development cluster is a real node: Services, DNS, NodePorts, pod networking, controllers."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import eventually, kubectl

pytestmark = pytest.mark.e2e


@pytest.fixture
def web(make_namespace: Callable[[str], str]) -> tuple[str, str]:
    """A 2-replica HTTP Deployment + Service 'web' in a fresh namespace and a client pod in another."""
    ns_a, ns_b = make_namespace("devcl-a"), make_namespace("devcl-b")
    devcluster.apply(devcluster.http_workload("web", ns_a))
    devcluster.apply(devcluster.client_pod("client", ns_a))
    devcluster.apply(devcluster.client_pod("client", ns_b))
    kubectl("-n", ns_a, "rollout", "status", "deploy/web", "--timeout=90s")
    for ns in (ns_a, ns_b):
        kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s")
    return ns_a, ns_b


def get_from(namespace: str, url: str) -> str:
    return kubectl("-n", namespace, "exec", "client", "--", "testserver", "get", url)


def test_service_by_cluster_ip_and_every_dns_form(web: tuple[str, str]) -> None:
    ns_a, ns_b = web
    cluster_ip = kubectl("-n", ns_a, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
    pods = set(kubectl("-n", ns_a, "get", "pods", "-l", "app=web", "-o", "name").split())
    assert len(pods) == 2

    # kube-proxy programs a new Service a moment after its pods are Ready (measured: up to ~1 s).
    eventually(lambda: get_from(ns_b, f"http://{cluster_ip}/"), timeout=10)
    for url in (f"http://{cluster_ip}/", f"http://web.{ns_a}/", f"http://web.{ns_a}.svc.cluster.local/"):
        assert get_from(ns_b, url).startswith("hello from web-"), url
    assert get_from(ns_a, "http://web/").startswith("hello from web-")

    # Many requests through the ClusterIP reach both replicas.
    answered_by = {get_from(ns_b, f"http://web.{ns_a}/").split()[2] for _ in range(20)}
    assert answered_by == {p.removeprefix("pod/") for p in pods}


def test_pods_reach_each_other_across_namespaces(web: tuple[str, str]) -> None:
    ns_a, ns_b = web
    for pod_ip in kubectl("-n", ns_a, "get", "pods", "-l", "app=web",
                          "-o", "jsonpath={.items[*].status.podIP}").split():
        assert get_from(ns_b, f"http://{pod_ip}:8080/").startswith("hello from web-")


def test_nodeports_tcp_and_udp_from_a_docker_container(make_namespace: Callable[[str], str]) -> None:
    ns = make_namespace("devcl-np")
    devcluster.apply(devcluster.http_workload("echo", ns, replicas=1))
    devcluster.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: echo-np, namespace: {ns}}}
spec:
  type: NodePort
  selector: {{app: echo}}
  ports:
  - {{name: tcp, port: 9000, protocol: TCP}}
  - {{name: udp, port: 9001, protocol: UDP}}
""")
    kubectl("-n", ns, "rollout", "status", "deploy/echo", "--timeout=90s")
    ports = kubectl("-n", ns, "get", "svc", "echo-np", "-o",
                    "jsonpath={.spec.ports[0].nodePort} {.spec.ports[1].nodePort}").split()
    node = devcluster.node_ip()

    def send(mode: str, port: str) -> str:
        out = subprocess.run(["docker", "run", "--rm", devcluster.TEST_IMAGE, mode, f"{node}:{port}", "ping"],
                             capture_output=True, text=True, timeout=60).stdout
        assert "echo: ping" in out, out
        return out

    assert "echo: ping" in eventually(lambda: send("tcp-send", ports[0]), timeout=30)
    assert "echo: ping" in eventually(lambda: send("udp-send", ports[1]), timeout=30)


def test_deleted_pod_is_replaced(web: tuple[str, str]) -> None:
    ns_a, _ = web
    victim = kubectl("-n", ns_a, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
    kubectl("-n", ns_a, "delete", "pod", victim, "--wait=false")

    def replaced() -> None:
        pods = devcluster.kubectl_json("-n", ns_a, "get", "pods", "-l", "app=web")["items"]
        ready = [
            p["metadata"]["name"] for p in pods
            if p["metadata"].get("deletionTimestamp") is None
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        assert len(ready) == 2 and victim not in ready, ready

    eventually(replaced, timeout=60)
    assert get_from(ns_a, "http://web/").startswith("hello from web-")
