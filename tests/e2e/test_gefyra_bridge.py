"""gefyra bridge / unbridge on the development cluster: traffic for a workload reaches the local
container, and the workload is exactly as before afterwards. Tests run in order on one `up`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import TEST_IMAGE, engine, eventually, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import gefyra, ok, snapshot

pytestmark = pytest.mark.e2e

MEASURED: dict[str, str] = {}


@pytest.fixture(scope="module")
def baseline(runtime: str) -> dict[str, list[str]]:
    gefyra("down")
    return snapshot()


@pytest.fixture(scope="module")
def ns(baseline: dict[str, list[str]]) -> Iterator[str]:
    """A namespace with a caller pod, and gefyra up with a local container 'gfy-br-local'."""
    name = unique("gfy-test-br")
    kubectl("create", "namespace", name)
    devcluster.apply(devcluster.client_pod("caller", name))
    kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
    ok("up")
    ok("run", "-i", TEST_IMAGE, "-N", "gfy-br-local", "-n", name, "-d", "-e", "MESSAGE=LOCAL")
    yield name
    gefyra("down")
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def deploy(ns: str, name: str, kind: str = "deployment", replicas: int = 2) -> None:
    devcluster.apply(devcluster.http_workload(name, ns, replicas=replicas, kind=kind))
    if kind == "pod":
        kubectl("-n", ns, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s")
    else:
        kubectl("-n", ns, "rollout", "status", f"{ 'deploy' if kind == 'deployment' else 'sts'}/{name}", "--timeout=90s")
    # kube-proxy puts ready pods behind the Service a moment after they are Ready.
    expected = 1 if kind == "pod" else replicas

    def all_serve() -> None:
        assert len(answers(ns, f"http://{name}/", 4 * expected)) == expected

    eventually(all_serve, timeout=20)


def call(ns: str, *command: str) -> str:
    return kubectl("-n", ns, "exec", "caller", "--", "testserver", *command)


def pod_specs(ns: str, app: str) -> dict[str, Any]:
    pods = kubectl_json("-n", ns, "get", "pods", "-l", f"app={app}")["items"]
    return {p["metadata"]["name"]: p["spec"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def answers(ns: str, url: str, count: int) -> set[str]:
    return {call(ns, "get", url).split()[2] for _ in range(count)}


def test_http_deployment_bridged_and_restored(ns: str) -> None:
    deploy(ns, "web")
    specs_before = pod_specs(ns, "web")
    assert answers(ns, "http://web/", 10) == set(specs_before)
    before = call(ns, "latency", "http://web/", "200")

    started = time.monotonic()
    result = json.loads(ok("bridge", "-N", "gfy-br-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080",
                           "-o", "json").stdout)
    assert call(ns, "get", "http://web/").startswith("hello from LOCAL")
    MEASURED["bridge to first bridged answer"] = f"{time.monotonic() - started:.1f} s"
    # Many requests through the Service: every answer is local; the workload's pods are untouched.
    bridge = json.loads(ok("list", "-o", "json").stdout)["bridges"][0]
    assert bridge["name"] == result["name"] and bridge["mode"] == "router"
    assert answers(ns, "http://web/", 20) == {"LOCAL"}
    assert pod_specs(ns, "web") == specs_before
    through = call(ns, "latency", "http://web/", "200")
    MEASURED["latency original"], MEASURED["latency bridged"] = before.strip(), through.strip()
    assert kubectl("-n", ns, "get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}") == "2"

    started = time.monotonic()
    ok("unbridge", "-N", "gfy-br-local")
    MEASURED["unbridge to original answering"] = f"{time.monotonic() - started:.1f} s"
    assert answers(ns, "http://web/", 10) == set(specs_before)
    assert pod_specs(ns, "web") == specs_before
    annotations = [p["metadata"].get("annotations", {}) for p in kubectl_json("-n", ns, "get", "pods", "-l", "app=web")["items"]]
    assert not any(k.startswith("gefyra.dev/") for a in annotations for k in a)


def test_tcp_echo_bridged_while_probes_keep_the_pod_ready(ns: str) -> None:
    deploy(ns, "echo", replicas=1)
    ok("bridge", "-N", "gfy-br-local", "-n", ns, "--target", "deploy/echo/server", "-p", "9000:9000", "--in-place")
    try:
        # kube-proxy may take a moment to put the restarted pod back behind the Service.
        assert eventually(lambda: call(ns, "tcp-send", "echo:9000", "ping"), timeout=10) == "LOCAL echo: ping\n"
        # Port 8080 is not bridged: carrier answers its readiness probe itself.
        time.sleep(3)
        assert kubectl("-n", ns, "get", "deploy", "echo", "-o", "jsonpath={.status.readyReplicas}") == "1"
    finally:
        ok("unbridge", "--all")
    assert eventually(lambda: call(ns, "tcp-send", "echo:9000", "ping"), timeout=10).startswith("echo-")


def test_replaced_and_added_pods_are_bridged(ns: str) -> None:
    ok("bridge", "-N", "gfy-br-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080", "--in-place")
    try:
        victim = sorted(pod_specs(ns, "web"))[0]
        kubectl("-n", ns, "delete", "pod", victim, "--wait=false")

        def rebridged() -> None:
            bridges = json.loads(ok("list", "-o", "json").stdout)["bridges"]
            assert len(bridges[0]["pods"]) == 2 and victim not in bridges[0]["pods"], bridges

        eventually(rebridged, timeout=30)
        assert answers(ns, "http://web/", 20) == {"LOCAL"}

        # Scaling up: the new replica is bridged too.
        kubectl("-n", ns, "scale", "deploy/web", "--replicas=3")

        def three_bridged() -> None:
            assert len(json.loads(ok("list", "-o", "json").stdout)["bridges"][0]["pods"]) == 3

        eventually(three_bridged, timeout=30)
        assert answers(ns, "http://web/", 20) == {"LOCAL"}
    finally:
        ok("unbridge", "--all")
        kubectl("-n", ns, "scale", "deploy/web", "--replicas=2")
        kubectl("-n", ns, "rollout", "status", "deploy/web", "--timeout=60s")


@pytest.mark.parametrize(("kind", "ref"), [("pod", "pod/{name}"), ("statefulset", "sts/{name}/server")])
def test_pod_and_statefulset_targets(ns: str, kind: str, ref: str) -> None:
    name = f"t-{kind[:3]}"
    deploy(ns, name, kind=kind, replicas=1)
    ok("bridge", "-N", "gfy-br-local", "-n", ns, "--target", ref.format(name=name), "-p", "8080:8080")
    try:
        assert eventually(lambda: call(ns, "get", f"http://{name}/"), timeout=10).startswith("hello from LOCAL")
    finally:
        ok("unbridge", "--all")
    assert eventually(lambda: call(ns, "get", f"http://{name}/"), timeout=10).startswith(f"hello from {name}")


@pytest.mark.parametrize(("case", "exit_code", "fragment"), [
    ("unknown target", 8, "deployment nope"),
    ("unknown container", 8, "has no container 'nope'"),
    ("unknown port", 8, "declares no port 1234"),
    ("already bridged", 7, "is already bridged"),
    ("local container not running", 8, "local container gfy-nothing is not running"),
    ("not on gefyra's network", 2, "is not a container of `gefyra run`"),
])
def test_bad_bridge_requests_change_nothing(ns: str, case: str, exit_code: int, fragment: str) -> None:
    outsider = "gfy-br-outsider"
    engine("run", "-d", "--name", outsider, TEST_IMAGE, check=False)
    args = {
        "unknown target": ["--target", "deploy/nope", "-p", "8080:8080"],
        "unknown container": ["--target", "deploy/web/nope", "-p", "8080:8080"],
        "unknown port": ["--target", "deploy/web", "-p", "1234:8080"],
        "already bridged": ["--target", "deploy/web", "-p", "8080:8080"],
        "local container not running": ["--target", "deploy/web", "-p", "8080:8080"],
        "not on gefyra's network": ["--target", "deploy/web", "-p", "8080:8080"],
    }[case]
    local = {"local container not running": "gfy-nothing", "not on gefyra's network": outsider}.get(case, "gfy-br-local")
    if case == "already bridged":
        ok("bridge", "-N", "gfy-br-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
    try:
        specs = pod_specs(ns, "web")
        bridges = json.loads(ok("list", "-o", "json").stdout)["bridges"]
        result = gefyra("bridge", "-N", local, "-n", ns, *args)
        errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:", "Traceback"))]
        assert result.returncode == exit_code, result.stderr
        assert len(errors) == 1 and fragment in errors[0], result.stderr
        assert pod_specs(ns, "web") == specs
        assert json.loads(ok("list", "-o", "json").stdout)["bridges"] == bridges
    finally:
        ok("unbridge", "--all")
        engine("rm", "-f", outsider, check=False)


def test_a_selector_of_match_expressions_bridges_only_its_own_pods(ns: str) -> None:
    """A Deployment that selects with matchExpressions only, beside other pods of its namespace."""
    manifest = devcluster.http_workload("picky", ns, replicas=1).replace(
        "selector: {matchLabels: {app: picky}}",
        "selector: {matchExpressions: [{key: app, operator: In, values: [picky]}, {key: track, operator: DoesNotExist}]}")
    devcluster.apply(manifest)
    bystander = devcluster.http_workload("bystander", ns, replicas=1, kind="pod").split("---")[0]
    devcluster.apply(bystander.replace("labels: {app: bystander}", "labels: {app: picky, track: canary}"))
    kubectl("-n", ns, "rollout", "status", "deploy/picky", "--timeout=90s")
    kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/bystander", "--timeout=60s")
    before = kubectl_json("-n", ns, "get", "pod", "bystander")["spec"]
    ok("bridge", "-N", "gfy-br-local", "-n", ns, "--target", "deploy/picky", "-p", "8080:8080", "--in-place")
    try:
        bridge = json.loads(ok("list", "-o", "json").stdout)["bridges"][0]
        assert [p for p in bridge["pods"] if not p.startswith("picky-")] == [] and len(bridge["pods"]) == 1
        after = kubectl_json("-n", ns, "get", "pod", "bystander")
        assert after["spec"] == before  # same app label, another track: not the Deployment's
        assert not any(k.startswith("gefyra.dev/") for k in after["metadata"].get("annotations") or {})
    finally:
        ok("unbridge", "--all")
        kubectl("-n", ns, "delete", "deploy/picky", "pod/bystander", "service/picky", "--wait=false")


def test_vanished_client_gives_its_bridges_back(ns: str, runtime: str) -> None:
    """A client that stops answering (its cargo is gone, no `down`) is silent for the operator after
    --client-timeout: its bridged workloads answer again from their own containers, while its
    registration and bridges stay (Silent, Suspended) for its return until the client expiry."""
    specs = pod_specs(ns, "web")
    ok("down")
    ok("up", "--client-timeout", "15")
    ok("run", "-i", TEST_IMAGE, "-N", "gfy-br-local", "-n", ns, "-d", "-e", "MESSAGE=LOCAL")
    ok("bridge", "-N", "gfy-br-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
    assert answers(ns, "http://web/", 5) == {"LOCAL"}
    cargo = json.loads(ok("status", "-o", "json").stdout)["cargo"]["name"]
    engine("rm", "-f", cargo)

    def restored() -> None:
        assert answers(ns, "http://web/", 6) == set(specs)

    eventually(restored, timeout=90, interval=2)
    assert pod_specs(ns, "web") == specs
    assert json.loads(ok("status", "-o", "json").stdout)["cluster"]["client"]["phase"] == "Silent"
    [bridge] = json.loads(ok("list", "-o", "json").stdout)["bridges"]
    ready = {c["type"]: c for c in bridge["conditions"]}["Ready"]
    assert bridge["phase"] == "Suspended" and ready["reason"] == "ClientSilent", bridge
    ok("down")  # the local leftovers of the vanished client
    ok("up")
    ok("run", "-i", TEST_IMAGE, "-N", "gfy-br-local", "-n", ns, "-d", "-e", "MESSAGE=LOCAL")


def test_down_with_active_bridges_restores_workloads_and_leaves_no_trace(ns: str, baseline: dict[str, list[str]]) -> None:
    specs = pod_specs(ns, "web")
    ok("bridge", "-N", "gfy-br-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
    assert answers(ns, "http://web/", 5) == {"LOCAL"}
    removed = ok("down").stdout
    assert "bridge " in removed and "cluster side" in removed
    assert answers(ns, "http://web/", 10) == set(specs)
    assert pod_specs(ns, "web") == specs
    assert snapshot() == baseline
    result = gefyra("bridge", "-N", "gfy-br-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
    assert result.returncode == 6 and "run `gefyra up` first" in result.stderr
    print("\nbridge measurements: " + "; ".join(f"{k}: {v}" for k, v in MEASURED.items()))
