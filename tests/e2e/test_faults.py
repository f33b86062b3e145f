"""gefyra heals by itself: faults of the operator, stowaway, the API server and the client, and a
workload that changes while it is bridged, on the development cluster (Docker as the engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import TEST_IMAGE, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import gefyra, ok

pytestmark = pytest.mark.e2e

MEASURED: dict[str, Any] = {}


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
        imagePullPolicy: Never
        ports: [{{containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
      - name: admin
        image: {image}
        imagePullPolicy: Never
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
    devcluster.apply(DUO.format(ns=ns, image=TEST_IMAGE))
    kubectl("-n", ns, "rollout", "status", "deploy/duo", "--timeout=90s")
    pod = kubectl_json("-n", ns, "get", "pods", "-l", "app=duo")["items"][0]
    ok("bridge", "-N", "gfy-f-a", "-n", ns, "--target", "deploy/duo/web", "-p", "8080:8080")
    ok("bridge", "-N", "gfy-f-b", "-n", ns, "--target", "deploy/duo/admin", "-p", "8081:8080")
    try:
        assert servers(tally(ns, "http://duo:80/", 6)) == {"LOCAL-A"}
        assert servers(tally(ns, "http://duo:81/", 6)) == {"LOCAL-B"}
        now = kubectl_json("-n", ns, "get", "pod", pod["metadata"]["name"])
        assert [c["image"] for c in now["spec"]["containers"]] == ["gefyra/carrier:dev"] * 2
        annotations = now["metadata"]["annotations"]
        assert annotations["web.bridged.gefyra.dev/original-image"] == TEST_IMAGE
        assert annotations["admin.bridged.gefyra.dev/original-image"] == TEST_IMAGE
    finally:
        ok("unbridge", "-N", "gfy-f-a")
        after_one = kubectl_json("-n", ns, "get", "pod", pod["metadata"]["name"])
        assert [c["image"] for c in after_one["spec"]["containers"]] == [TEST_IMAGE, "gefyra/carrier:dev"]
        ok("unbridge", "-N", "gfy-f-b")
    after = kubectl_json("-n", ns, "get", "pod", pod["metadata"]["name"])
    assert after["spec"] == pod["spec"]
    annotations = after["metadata"].get("annotations") or {}
    assert not any(k.startswith(("gefyra.dev/", "web.bridged", "admin.bridged")) for k in annotations)
    assert servers(tally(ns, "http://duo:81/", 4)) == {pod["metadata"]["name"]}
    kubectl("-n", ns, "delete", "deploy/duo", "service/duo", "--wait=false")
