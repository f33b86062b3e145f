"""No privilege in the cluster: an admin of a hardened cluster labels namespace gefyra
`enforce=restricted` before anything is installed, and up, run, a global bridge, a personal bridge,
unbridge and down all work, with no pod of gefyra's refused. And what the tunnel's user-space server
end carries: UDP to a UDP Service, ping, a TCP connection that idles for 60 s, 50 MB each way intact.

Tests run in order on the one module namespace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import TEST_IMAGE, engine, eventually, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import bridge_globally_then_personally, gefyra, ok

pytestmark = pytest.mark.e2e

LOCAL = "gfy-restricted-local"
#: Bytes sent each way through the tunnel, checksummed at both ends.
BULK = 50_000_000

_UDP_WORKLOAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: udp, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: udp}}}}
  template:
    metadata: {{labels: {{app: udp}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {{name: server, image: {image}, imagePullPolicy: IfNotPresent, args: [serve, --udp, ":5353"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: udp, namespace: {ns}}}
spec:
  selector: {{app: udp}}
  ports: [{{name: udp, port: 53, targetPort: 5353, protocol: UDP}}]
"""


def _labels(namespace: str) -> dict[str, str]:
    found: dict[str, str] = kubectl_json("get", "namespace", namespace)["metadata"].get("labels", {})
    return found


def _refusals() -> list[str]:
    """Events of pods refused in namespace gefyra (admission refuses a ReplicaSet's pods)."""
    events = kubectl_json("-n", "gefyra", "get", "events")["items"]
    return [f"{e['involvedObject']['name']}: {e['message']}" for e in events if e.get("reason") == "FailedCreate"]


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    """The admin's hardened namespace gefyra (nothing of gefyra's installed yet), a workload `web`,
    a UDP Service `udp`, a caller pod; up and a local container."""
    gefyra("down")
    ok("uninstall")
    kubectl("wait", "--for=delete", "namespace/gefyra", "--timeout=90s", check=False)
    kubectl("create", "namespace", "gefyra")
    kubectl("label", "namespace", "gefyra", "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted")
    name = unique("gfy-test-restricted")
    kubectl("create", "namespace", name)
    try:
        devcluster.apply(devcluster.http_workload("web", name, replicas=1))
        devcluster.apply(_UDP_WORKLOAD.format(ns=name, image=devcluster.WORKLOAD_IMAGE))
        devcluster.apply(devcluster.client_pod("caller", name))
        for deployment in ("web", "udp"):
            kubectl("-n", name, "rollout", "status", f"deploy/{deployment}", "--timeout=90s")
        kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
        ok("up")
        ok("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", name, "-d", "-e", "MESSAGE=LOCAL")
        yield name
    finally:
        gefyra("down")
        ok("uninstall")  # the next module installs the cluster side as `up` does
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def local(*command: str) -> str:
    return engine("exec", LOCAL, *command).stdout


def test_the_cluster_side_runs_under_restricted_as_the_admin_labelled_it(ns: str) -> None:
    assert _labels("gefyra")["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = devcluster.stowaway_pod()
    assert all(s["ready"] for s in pod["status"]["containerStatuses"]), pod["status"]
    for container in pod["spec"]["containers"]:
        context = container["securityContext"]
        assert context["capabilities"] == {"drop": ["ALL"]} and context["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert _refusals() == []
    assert local("testserver", "get", "http://web/").startswith("hello from web-")


def test_a_global_and_a_personal_bridge_and_unbridge(ns: str) -> None:
    bridge_globally_then_personally(ns, LOCAL)
    assert _refusals() == []  # the router's pods too


def test_udp_to_a_udp_service_is_answered(ns: str) -> None:
    assert eventually(lambda: local("testserver", "udp-send", f"udp.{ns}:53", "ping"), timeout=15).endswith("echo: ping\n")


def test_ping_of_a_pod_is_answered(ns: str) -> None:
    """cargo pings a pod: stowaway sends the echo from its pod with an unprivileged ICMP socket
    (the pod's ping_group_range), and swaps the answer back."""
    pod_ip = kubectl("-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}")
    cargo = next(c for c in engine("ps", "--format", "{{.Names}}").stdout.split() if c.startswith("gefyra-cargo-"))
    assert " 0% packet loss" in engine("exec", cargo, "ping", "-c", "2", "-W", "3", pod_ip).stdout


def test_a_tcp_connection_idle_for_60_s_keeps_working(ns: str) -> None:
    answers = local("testserver", "tcp-hold", f"web.{ns}:9000", "60").splitlines()
    assert [line.split(" echo: ")[1] for line in answers] == ["before", "after"], answers


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_50_mb_arrive_intact(ns: str, direction: str) -> None:
    if direction == "upload":
        found = dict(part.split("=", 1) for part in local("testserver", "upload", f"http://web.{ns}/upload",
                                                          str(BULK)).split() if "=" in part)
        assert found["received"] == str(BULK) and found["sha256"] == found["sent_sha256"], found
    else:
        url = f"/bytes?n={BULK}"
        here = _fields(local("testserver", "download", f"http://web.{ns}{url}"))
        pod = kubectl("-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
        there = _fields(kubectl("-n", ns, "exec", pod, "--", "testserver", "download", f"http://localhost:8080{url}"))
        assert here == there and here["received"] == str(BULK), (here, there)


def _fields(line: str) -> dict[str, Any]:
    return dict(part.split("=", 1) for part in line.split())


def test_check_reports_the_level_and_that_the_cluster_admits_the_pod(ns: str) -> None:
    found = {c["name"]: c for c in json.loads(gefyra("check", "-o", "json").stdout)}
    line = found["pod-security"]
    assert line["ok"] and "'restricted'" in line["detail"] and "admits" in line["detail"], line
