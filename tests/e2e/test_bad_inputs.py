"""Bad input at every boundary, one table: through the CLI, and through objects made with kubectl
(the API server's schema or the operator must refuse them). Each row: refused with one clear line
or an Invalid condition, nothing in the cluster or the engine changed, the operator never
restarted, and a bridge made before still answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import TEST_IMAGE, engine, eventually, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import gefyra, ok

pytestmark = pytest.mark.e2e

LOCAL = "gfy-bad-local"
#: A well-formed WireGuard public key that no client uses.
SPARE_KEY = "mBfZ0M4bXxKoTeZ4Q7p+6Y9U7Qd0sFJ8pE7Bq6aVmXk="


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    """gefyra up, the test server `web` bridged to a local container, a `caller` pod."""
    gefyra("down")
    name = unique("gfy-test-bad")
    kubectl("create", "namespace", name)
    devcluster.apply(devcluster.http_workload("web", name, replicas=1))
    devcluster.apply(devcluster.client_pod("caller", name))
    kubectl("-n", name, "rollout", "status", "deploy/web", "--timeout=90s")
    kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
    ok("up")
    ok("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", name, "-d", "-e", "MESSAGE=LOCAL")
    ok("bridge", "-N", LOCAL, "-n", name, "--target", "deploy/web", "-p", "8080:8080")
    yield name
    gefyra("down")
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _state() -> dict[str, Any]:
    """What a refused input must not change."""
    def names(kind: str) -> list[str]:
        return sorted(i["metadata"]["name"] for i in kubectl_json("-n", "gefyra", "get", kind)["items"])

    return {"clients": names("gefyraclients"), "bridges": names("gefyrabridges"),
            "containers": sorted(engine("ps", "-a", "--format", "{{.Names}}").stdout.split()),
            "networks": sorted(engine("network", "ls", "--format", "{{.Name}}").stdout.split())}


def _operator_restarts() -> int:
    pod = kubectl_json("-n", "gefyra", "get", "pods", "-l", "app.kubernetes.io/name=gefyra-stowaway")["items"][0]
    return sum(s["restartCount"] for s in pod["status"]["containerStatuses"])


def _client(name: str, key: str) -> dict[str, Any]:
    return {"apiVersion": "gefyra.dev/v1alpha1", "kind": "GefyraClient",
            "metadata": {"name": name, "namespace": "gefyra"}, "spec": {"publicKey": key}}


def _bridge(name: str, ns: str, *, target: dict[str, Any] | None = None, remote: Any = 8080) -> dict[str, Any]:
    client = json.loads(gefyra("status", "-o", "json").stdout)["client"]
    return {"apiVersion": "gefyra.dev/v1alpha1", "kind": "GefyraBridge",
            "metadata": {"name": name, "namespace": "gefyra"},
            "spec": {"client": client, "localContainer": LOCAL,
                     "target": target or {"namespace": ns, "kind": "deployment", "name": "web", "container": "server"},
                     "ports": [{"remote": remote, "local": 8080}]}}


def _own_key() -> str:
    client = json.loads(gefyra("status", "-o", "json").stdout)["client"]
    return str(kubectl_json("-n", "gefyra", "get", "gefyraclient", client)["spec"]["publicKey"])


# (id, kind, what): kind "cli" -> gefyra arguments ("{ns}" is the test namespace); "refused" -> an
# object the API server must refuse; "invalid" -> an object the operator must report Invalid (its
# status says why); "address" -> a client whose status.address the API server must refuse.
ROWS: list[tuple[str, str, Any]] = [
    ("cli-port-zero", "cli", ["bridge", "-N", LOCAL, "-n", "{ns}", "--target", "deploy/web", "-p", "0:1"]),
    ("cli-port-too-big", "cli", ["bridge", "-N", LOCAL, "-n", "{ns}", "--target", "deploy/web", "-p", "70000:1"]),
    ("cli-port-superscript", "cli", ["bridge", "-N", LOCAL, "-n", "{ns}", "--target", "deploy/web", "-p", "²:8080"]),
    ("cli-port-text", "cli", ["bridge", "-N", LOCAL, "-n", "{ns}", "--target", "deploy/web", "-p", "http:8080"]),
    ("cli-name-slash", "cli", ["run", "-i", TEST_IMAGE, "-N", "a/b", "-n", "{ns}", "-d"]),
    ("cli-name-semicolon", "cli", ["run", "-i", TEST_IMAGE, "-N", "a;reboot", "-n", "{ns}", "-d"]),
    ("cli-name-quote", "cli", ["run", "-i", TEST_IMAGE, "-N", "x'y", "-n", "{ns}", "-d"]),
    ("cli-namespace-space", "cli", ["run", "-i", TEST_IMAGE, "-N", "ok-name", "-n", "kube system", "-d"]),
    ("cli-target-semicolon", "cli", ["bridge", "-N", LOCAL, "-n", "{ns}", "--target", "deploy/web;x", "-p", "8080:8080"]),
    ("cli-target-quote", "cli", ["bridge", "-N", LOCAL, "-n", "{ns}", "--target", "deploy/'web'", "-p", "8080:8080"]),
    ("cli-service-cidr-quote", "cli", ["up", "--service-cidr", '10.96.0.0/12"; id']),
    ("cli-pod-cidr-comma", "cli", ["up", "--pod-cidr", "10.244.0.0/24,0.0.0.0/0"]),
    ("cli-run-port-zero", "cli", ["run", "-i", TEST_IMAGE, "-N", "ok-name", "-n", "{ns}", "-d", "-p", "0:80"]),
    ("cli-env-name", "cli", ["run", "-i", TEST_IMAGE, "-N", "ok-name", "-n", "{ns}", "-d", "-e", "1X=2"]),
    ("client-empty-key", "refused", lambda ns: _client(unique("gfy-bad"), "")),
    ("client-short-key", "refused", lambda ns: _client(unique("gfy-bad"), "abc=")),
    ("client-key-newline", "refused", lambda ns: _client(unique("gfy-bad"), SPARE_KEY[:-1] + "\n=")),
    ("client-duplicate-key", "client-invalid", lambda ns: _client(unique("gfy-bad"), _own_key())),
    ("client-address-outside", "address", "10.0.0.5"),
    ("client-address-comma", "address", "198.18.0.9,0.0.0.0/0"),
    ("client-address-newline", "address", "198.18.0.9\nPostUp = id"),
    ("bridge-port-zero", "refused", lambda ns: _bridge(unique("gfy-bad"), ns, remote=0)),
    ("bridge-port-too-big", "refused", lambda ns: _bridge(unique("gfy-bad"), ns, remote=70000)),
    ("bridge-target-name-quote", "refused", lambda ns: _bridge(unique("gfy-bad"), ns, target={
        "namespace": ns, "kind": "deployment", "name": "web'x", "container": "server"})),
    ("bridge-target-kube-system", "invalid", lambda ns: _bridge(unique("gfy-bad"), ns, target={
        "namespace": "kube-system", "kind": "deployment", "name": "coredns", "container": "coredns"})),
    ("bridge-target-missing-container", "invalid", lambda ns: _bridge(unique("gfy-bad"), ns, target={
        "namespace": ns, "kind": "deployment", "name": "web", "container": "nope"})),
    ("bridge-undeclared-port", "invalid", lambda ns: _bridge(unique("gfy-bad"), ns, remote=7777)),
]


@pytest.mark.parametrize(("kind", "what"), [(k, w) for _, k, w in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_refused_and_changes_nothing(ns: str, kind: str, what: Any) -> None:
    before, restarts = _state(), _operator_restarts()
    made: str | None = None
    if kind == "cli":
        result = gefyra(*(a.replace("{ns}", ns) for a in what))
        assert result.returncode == 2, (result.returncode, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    elif kind == "refused":
        refused = devcluster.kubectl_result("create", "-f", "-", stdin=json.dumps(what(ns)))
        assert refused.returncode != 0 and "Invalid value" in refused.stderr, refused.stderr
    elif kind == "address":
        made = unique("gfy-bad")
        kubectl("create", "-f", "-", stdin=json.dumps(_client(made, SPARE_KEY)))
        patched = devcluster.kubectl_result("-n", "gefyra", "patch", "gefyraclient", made, "--subresource=status",
                                            "--type=merge", "-p", json.dumps({"status": {"address": what}}))
        assert patched.returncode != 0 and "Invalid value" in patched.stderr, patched.stderr
    else:
        doc = what(ns)
        made = doc["metadata"]["name"]
        kubectl("create", "-f", "-", stdin=json.dumps(doc))
        plural = "gefyraclient" if kind == "client-invalid" else "gefyrabridge"

        def reported() -> None:
            status = kubectl_json("-n", "gefyra", "get", plural, made).get("status") or {}
            assert status.get("phase") == "Invalid" and status.get("message"), status

        eventually(reported, timeout=15)
    if made is not None:
        plural = "gefyrabridge" if kind == "invalid" else "gefyraclient"
        kubectl("-n", "gefyra", "delete", plural, made, "--timeout=30s")
    assert _state() == before
    assert _operator_restarts() == restarts == 0
    answer = kubectl("-n", ns, "exec", "caller", "--", "testserver", "get", "http://web/")
    assert answer.startswith("hello from LOCAL")
