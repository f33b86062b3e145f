"""The plugin seams on the development cluster: a third-party interceptor plugin (installed through
the `gefyra` entry-point group here and in the operator image) carries a bridge, and both the client
and the operator provably went through it; the operator judges kubectl-made bridges with the
interceptor and reports the outcome as conditions; `bridge` and `down` show their steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import REPO, TEST_IMAGE, eventually, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import gefyra, ok

pytestmark = pytest.mark.e2e

PLUGIN = REPO / "tests" / "plugins" / "recording_interceptor"
OPERATOR_RECORDS = "/tmp/gefyra-recording.jsonl"  # the plugin's default file, in the operator container


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The plugin installed into a directory of its own, found by gefyra through the entry points."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PLUGIN)], check=True)
    records = tmp_path_factory.mktemp("records") / "client.jsonl"
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]),
            "GEFYRA_RECORDING_FILE": str(records)}


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    """A namespace with a caller pod and a 2-replica web Deployment, gefyra up, a local container."""
    gefyra("down")
    name = unique("gfy-test-plug")
    kubectl("create", "namespace", name)
    devcluster.apply(devcluster.client_pod("caller", name))
    devcluster.apply(devcluster.http_workload("web", name, replicas=2))
    kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
    kubectl("-n", name, "rollout", "status", "deploy/web", "--timeout=90s")
    ok("up")
    ok("run", "-i", TEST_IMAGE, "-N", "gfy-plug-local", "-n", name, "-d", "-e", "MESSAGE=LOCAL")
    yield name
    gefyra("down")
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def answers(ns: str, count: int) -> set[str]:
    return {kubectl("-n", ns, "exec", "caller", "--", "testserver", "get", "http://web/").split()[2]
            for _ in range(count)}


def pod_specs(ns: str) -> dict[str, Any]:
    pods = kubectl_json("-n", ns, "get", "pods", "-l", "app=web")["items"]
    return {p["metadata"]["name"]: p["spec"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def operator_pod() -> tuple[str, int]:
    pod = kubectl_json("-n", "gefyra", "get", "pods", "-l", "app.kubernetes.io/name=gefyra-stowaway")["items"][0]
    restarts = sum(c["restartCount"] for c in pod["status"]["containerStatuses"])
    return pod["metadata"]["name"], restarts


def records(lines: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines.splitlines() if line.strip()]


def test_a_third_party_interceptor_carries_a_bridge_through_client_and_operator(ns: str, plugin_env: dict[str, str]) -> None:
    pods = sorted(pod_specs(ns))
    result = ok("bridge", "-N", "gfy-plug-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080",
                "--interceptor", "recording", "-o", "json", env=plugin_env)
    try:
        bridge = json.loads(result.stdout)
        assert bridge["interceptor"] == "recording"
        assert {c["type"]: c["status"] for c in bridge["conditions"]}["Ready"] == "True"
        # kube-proxy puts the pods back behind the Service up to a second after they are Ready.
        assert eventually(lambda: answers(ns, 10), timeout=10) == {"LOCAL"}
    finally:
        ok("unbridge", "--all", env=plugin_env)
    assert eventually(lambda: answers(ns, 10), timeout=10) == set(pods)

    client = records(Path(plugin_env["GEFYRA_RECORDING_FILE"]).read_text())
    assert [r["method"] for r in client] == ["validate"] and client[0]["container"] == "server"
    pod, _ = operator_pod()
    operator = records(kubectl("-n", "gefyra", "exec", pod, "-c", "operator", "--", "cat", OPERATOR_RECORDS))
    calls = [r for r in operator if r["method"] == "intercept" and r["target"].startswith(f"deployment/web in namespace {ns}")]
    assert any(r["method"] == "validate" for r in operator), operator
    # Level-based: called with the bridge until it is ready on both pods, then without it until
    # the workload is given back.
    carried = [r for r in calls if r["routes"] == [bridge["name"]]]
    assert any(r["ready"][bridge["name"]] and r["pods"][bridge["name"]] for r in carried), calls
    assert calls[-1]["routes"] == [] and calls[-1]["settled"], calls[-1]
    # An interceptor no plugin provides: one clear line, nothing made.
    plain = gefyra("bridge", "-N", "gfy-plug-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080",
                   "--interceptor", "nope")
    assert plain.returncode == 2 and "no plugin provides the interceptor 'nope'" in plain.stderr


def _bridge_doc(name: str, ns: str, container: str, port: int) -> str:
    client = json.loads(ok("status", "-o", "json").stdout)["client"]
    return json.dumps({
        "apiVersion": "gefyra.dev/v1alpha1", "kind": "GefyraBridge",
        "metadata": {"name": name, "namespace": "gefyra"},
        "spec": {"client": client, "localContainer": "gfy-plug-local",
                 "target": {"namespace": ns, "kind": "deployment", "name": "web", "container": container},
                 "ports": [{"remote": port, "local": 8080}]}})


@pytest.mark.parametrize(("container", "port", "reason"), [
    ("nope", 8080, "has no container 'nope'"),
    ("server", 4321, "declares no port 4321"),
])
def test_a_kubectl_made_bridge_with_a_bad_target_is_invalid_and_changes_nothing(
        ns: str, container: str, port: int, reason: str) -> None:
    specs = pod_specs(ns)
    _, restarts = operator_pod()
    name = unique("gfy-bad")
    kubectl("apply", "-f", "-", stdin=_bridge_doc(name, ns, container, port))
    try:
        def invalid() -> dict[str, Any]:
            status = kubectl_json("-n", "gefyra", "get", "gefyrabridge", name).get("status") or {}
            found = {c["type"]: c for c in status.get("conditions") or []}
            assert found.get("Invalid", {}).get("status") == "True", status
            return found

        conditions = eventually(invalid, timeout=20)
        assert reason in conditions["Invalid"]["message"]
        assert conditions["Ready"]["status"] == "False"
        assert pod_specs(ns) == specs
        assert answers(ns, 20) == set(specs)  # 20 random picks miss one of two pods 1 time in 500000
        assert operator_pod()[1] == restarts
    finally:
        kubectl("-n", "gefyra", "delete", "gefyrabridge", name, "--wait=true", "--timeout=30s")


def test_bridge_and_down_show_their_steps(ns: str) -> None:
    gefyra("unbridge", "--all")  # whatever an earlier test of this module left
    bridged = ok("bridge", "-N", "gfy-plug-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
    for title in ("check the target workload", "ask the operator for the bridge",
                  "wait until the operator reports the bridge ready"):
        assert f"✓ {title}" in bridged.stderr, bridged.stderr
    down = ok("down")
    for title in ("remove this client's bridges", "remove the local containers", "deregister this machine"):
        assert f"✓ {title}" in down.stderr, down.stderr
    again = ok("down")
    assert "nothing to remove" in again.stdout and "✓" not in again.stderr
