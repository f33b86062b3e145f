"""gefyra up / run / down / status / list on the development cluster with the real Docker engine.

The tests of this module run in order and share one connection: the first brings gefyra up from
nothing, the last takes it down and proves that nothing is left.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import KUBECONFIG, TEST_IMAGE, engine, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import gefyra, ok, snapshot

pytestmark = pytest.mark.e2e

TIMINGS: dict[str, float] = {}


def stowaway_pod() -> tuple[str, int]:
    pod = kubectl_json("-n", "gefyra", "get", "pods", "-l", "app.kubernetes.io/name=gefyra-stowaway")["items"][0]
    restarts = sum(c["restartCount"] for c in pod["status"]["containerStatuses"])
    return pod["metadata"]["uid"], restarts


@pytest.fixture(scope="module")
def baseline(runtime: str) -> dict[str, list[str]]:
    gefyra("down")  # a leftover from an interrupted run must not count
    return snapshot()


@pytest.fixture(scope="module")
def workloads() -> Iterator[tuple[str, str]]:
    """Service 'web' in namespace A (with env GREETING), service 'api' in namespace B."""
    ns_a, ns_b = unique("gfy-test-a"), unique("gfy-test-b")
    for ns in (ns_a, ns_b):
        kubectl("create", "namespace", ns)
    devcluster.apply(devcluster.http_workload("web", ns_a, env={"GREETING": "from-the-cluster"}))
    devcluster.apply(devcluster.http_workload("api", ns_b))
    kubectl("-n", ns_a, "rollout", "status", "deploy/web", "--timeout=90s")
    kubectl("-n", ns_b, "rollout", "status", "deploy/api", "--timeout=90s")
    yield ns_a, ns_b
    for ns in (ns_a, ns_b):
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def local(runtime: str, workloads: tuple[str, str]) -> Iterator[Callable[..., str]]:
    """A container started by `gefyra run` in namespace A; returns a function that runs in it."""
    ns_a, _ = workloads
    started = time.monotonic()
    ok("run", "-i", TEST_IMAGE, "-N", "gfy-local", "-n", ns_a, "-d", "--env-from", "deploy/web", "-e", "EXTRA=1")

    def in_local(*command: str, check: bool = True) -> str:
        result = engine("exec", "gfy-local", *command, check=check)
        return result.stdout

    devcluster.eventually(lambda: in_local("testserver", "get", "http://web/"), timeout=30)
    TIMINGS["run to first answer"] = time.monotonic() - started
    yield in_local
    engine("rm", "-f", "gfy-local", check=False)


def test_up_from_nothing_and_again_changes_nothing(baseline: dict[str, list[str]]) -> None:
    started = time.monotonic()
    ok("up")
    TIMINGS["up (cold cluster side)"] = time.monotonic() - started
    status = json.loads(ok("status", "-o", "json").stdout)
    assert status["connected"] is True and status["cluster"]["client"]["phase"] == "Active"
    assert status["cargo"]["latest_handshake"], "no WireGuard handshake yet"
    pod_before = stowaway_pod()

    started = time.monotonic()
    again = ok("up")
    TIMINGS["up (again)"] = time.monotonic() - started
    for step in ("cluster side", "register", "network", "local end"):
        assert any(step in line and "(already done)" in line for line in again.stderr.splitlines()), again.stderr
    assert stowaway_pod() == pod_before
    assert json.loads(ok("status", "-o", "json").stdout)["cluster"]["client"] == status["cluster"]["client"]


def test_up_twice_at_once_ends_connected_and_undoes_nothing() -> None:
    ok("down")
    command = [sys.executable, "-m", "gefyra", "--kubeconfig", str(KUBECONFIG), "up"]
    both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.communicate(timeout=300)[1], p.returncode)[::-1] for p in both]
    shown = "\n\n".join(f"exit {code}:\n{stderr}" for code, stderr in results)
    assert [code for code, _ in results] == [0, 0], shown
    assert not any("undone" in stderr for _, stderr in results), shown
    status = json.loads(ok("status", "-o", "json").stdout)
    assert status["connected"] and status["cargo"]["state"] == "running"


def test_local_container_resolves_and_reaches_like_a_pod(workloads: tuple[str, str], local: Callable[..., str]) -> None:
    ns_a, ns_b = workloads
    assert local("testserver", "get", "http://web/").startswith("hello from web-")
    assert local("testserver", "get", f"http://api.{ns_b}/").startswith("hello from api-")
    assert local("testserver", "get", f"http://api.{ns_b}.svc.cluster.local/").startswith("hello from api-")
    pod_ip = kubectl("-n", ns_b, "get", "pods", "-l", "app=api", "-o", "jsonpath={.items[0].status.podIP}")
    assert local("testserver", "get", f"http://{pod_ip}:8080/").startswith("hello from api-")
    listed = json.loads(ok("list", "-o", "json").stdout)["containers"]
    assert [(c["name"], c["namespace"], c["state"]) for c in listed] == [("gfy-local", ns_a, "running")]


def test_local_container_reaches_the_host_directly(local: Callable[..., str]) -> None:
    clients: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            clients.append(self.client_address[0])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host says hi\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        info = json.loads(engine("inspect", "gfy-local-gefyra-net").stdout)[0]  # its network namespace's holder
        network = next(iter(info["NetworkSettings"]["Networks"].values()))
        answer = local("testserver", "get", f"http://{network['Gateway']}:{server.server_address[1]}/")
    finally:
        server.shutdown()
    assert answer == "host says hi\n"
    # It came straight from the container's own address, not from the tunnel's.
    assert clients == [network["IPAddress"]]


def test_env_from_copies_the_workload_environment(local: Callable[..., str]) -> None:
    env = dict(line.split("=", 1) for line in local("env").splitlines() if "=" in line)
    assert env["GREETING"] == "from-the-cluster"
    assert env["EXTRA"] == "1"
    assert "WEB_SERVICE_HOST" in env  # the Service variables a pod of the namespace sees


def test_a_second_client_joins_without_disturbing_the_first(local: Callable[..., str]) -> None:
    pod_before = stowaway_pod()
    other = {"GEFYRA_CLIENT_ID": "gfy-second"}
    try:
        ok("up", env=other)
        assert stowaway_pod() == pod_before, "stowaway was restarted for a new client"
        first, second = (json.loads(ok("status", "-o", "json", env=e).stdout) for e in ({}, other))
        assert first["connected"] and second["connected"]
        assert first["cluster"]["client"]["address"] != second["cluster"]["client"]["address"]
        assert local("testserver", "get", "http://web/").startswith("hello from web-")
    finally:
        removed = ok("down", env=other).stdout
    assert "cluster side" not in removed  # the first client still needs it
    assert local("testserver", "get", "http://web/").startswith("hello from web-")


BAD_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: u}}]
current-context: nowhere
"""


@pytest.mark.parametrize(("case", "exit_code", "fragment"), [
    ("unreachable cluster", 4, "does not answer"),
    ("bad kubeconfig", 3, "missing.yaml does not exist"),
    ("unknown context", 3, "has no context 'nope'"),
    ("engine missing", 5, "cannot reach "),
    ("unknown namespace", 8, "namespace nope-"),
    ("unknown workload", 8, "deployment nope"),
    ("malformed workload", 2, "cannot read the workload"),
    ("image missing", 8, "cannot pull "),
    ("name in use", 7, "already exists"),
])
def test_bad_input_gets_one_clear_line_and_changes_nothing(
    tmp_path: Any, workloads: tuple[str, str], local: Callable[..., str], case: str, exit_code: int, fragment: str,
) -> None:
    ns_a, _ = workloads
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(BAD_KUBECONFIG)
    base = ["run", "-i", TEST_IMAGE, "-N", "gfy-bad", "-n", ns_a, "-d"]
    invocations: dict[str, tuple[list[str], dict[str, Any]]] = {
        "unreachable cluster": (["up"], {"kubeconfig": str(unreachable)}),
        "bad kubeconfig": (["up"], {"kubeconfig": str(tmp_path / "missing.yaml")}),
        "unknown context": (["--context", "nope", "up"], {}),
        "engine missing": (["up"], {"env": {"DOCKER_HOST": "unix:///nonexistent/docker.sock",
                                            "GEFYRA_PODMAN_SOCKET": "/nonexistent/podman.sock"}}),
        "unknown namespace": (["run", "-i", TEST_IMAGE, "-N", "gfy-bad", "-n", unique("nope"), "-d"], {}),
        "unknown workload": ([*base, "--env-from", "deploy/nope"], {}),
        "malformed workload": ([*base, "--env-from", "nope"], {}),
        "image missing": (["run", "-i", f"{os.environ['GEFYRA_REGISTRY']}/gefyra/does-not-exist:1", "-N", "gfy-bad",
                           "-n", ns_a, "-d"], {}),
        "name in use": (["run", "-i", TEST_IMAGE, "-N", "gfy-local", "-n", ns_a, "-d"], {}),
    }
    args, kwargs = invocations[case]
    before = snapshot()
    result = gefyra(*args, **kwargs)
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:", "Traceback"))]
    assert result.returncode == exit_code, result.stderr
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert snapshot() == before


def test_down_leaves_no_trace_and_twice_is_harmless(baseline: dict[str, list[str]], local: Callable[..., str]) -> None:
    started = time.monotonic()
    ok("down")
    TIMINGS["down"] = time.monotonic() - started
    assert snapshot() == baseline
    assert ok("down").stdout.strip() == "nothing to remove"
    result = gefyra("run", "-i", TEST_IMAGE, "-N", "gfy-late", "-d")
    assert result.returncode == 6 and "run `gefyra up` first" in result.stderr
    print("\ntimings (s): " + ", ".join(f"{k}: {v:.1f}" for k, v in TIMINGS.items()))
