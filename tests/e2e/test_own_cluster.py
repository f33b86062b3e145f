"""A user's own cluster, as the development cluster plays one: images pulled from a registry, a
kubeconfig that reaches the API through a forwarded local port (kind, k3d), the preflight check,
and the CLI habits of kubectl and docker users. Docker is the engine."""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gefyra import __version__
from tests.e2e import devcluster
from tests.e2e.devcluster import CTR, KUBECONFIG, TEST_IMAGE, engine, kubectl, unique
from tests.e2e.gefyra_cli import gefyra, ok, snapshot

pytestmark = pytest.mark.e2e

REGISTRY = os.environ["GEFYRA_REGISTRY"]
CLUSTER_IMAGES = [f"{REGISTRY}/gefyra/{name}:{__version__}" for name in ("stowaway", "operator", "carrier")]
CARGO = f"{REGISTRY}/gefyra/cargo:{__version__}"
MEASURED: dict[str, Any] = {}


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    name = unique("gfy-test-own")
    kubectl("create", "namespace", name)
    devcluster.apply(devcluster.http_workload("web", name, replicas=1))
    kubectl("-n", name, "rollout", "status", "deploy/web", "--timeout=90s")
    yield name
    gefyra("down")
    kubectl("delete", "namespace", name, "--wait=false", check=False)
    print("\nown cluster measurements: " + json.dumps(MEASURED))


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "Error:", "Traceback"))]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_up_pulls_gefyras_images_from_the_registry(ns: str) -> None:
    gefyra("down")
    for image in CLUSTER_IMAGES:
        subprocess.run([*CTR, "images", "rm", image], capture_output=True)
    engine("rmi", "-f", CARGO, check=False)
    engine("rmi", "-f", f"gefyra/cargo:{__version__}", check=False)
    started = time.monotonic()
    up = ok("up", "--registry", REGISTRY)  # the flag after the command, as with kubectl
    MEASURED["up pulling every image (s)"] = round(time.monotonic() - started, 1)
    assert "pulling" in up.stderr or engine("image", "inspect", CARGO, check=False).returncode == 0
    listed = subprocess.run([*CTR, "images", "ls", "-q"], capture_output=True, text=True, check=True).stdout.split()
    assert set(CLUSTER_IMAGES[:2]) <= set(listed), listed  # stowaway and operator were pulled
    assert engine("image", "inspect", CARGO, check=False).returncode == 0


def test_up_from_a_registry_without_the_images_fails_fast_and_leaves_nothing(ns: str) -> None:
    gefyra("down")
    before = snapshot()
    empty = f"{REGISTRY}/nothing-here"
    started = time.monotonic()
    result = gefyra("up", "--registry", empty)
    seconds = time.monotonic() - started
    MEASURED["up with a registry that lacks the images fails after (s)"] = round(seconds, 1)
    line = one_error_line(result)
    assert result.returncode != 0 and f"{empty}/gefyra/" in line, result.stderr
    assert seconds < 20
    assert snapshot() == before


class _Forwarder:
    """127.0.0.1:PORT -> the API server, as kind and k3d publish it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.server.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        sel = selectors.DefaultSelector()
        sel.register(conn, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, conn)
        try:
            while not self.stop:
                for key, _ in sel.select(0.5):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            conn.close()
            upstream.close()


@pytest.fixture
def loopback_kubeconfig(tmp_path: Path, ns: str) -> Iterator[Path]:
    forwarder = _Forwarder((devcluster.node_ip(), 6443))
    config = yaml.safe_load(KUBECONFIG.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{forwarder.port}"
    config["contexts"][0]["context"]["namespace"] = ns  # for -n from the context, below
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    yield path
    forwarder.stop = True


def test_a_kubeconfig_through_a_forwarded_loopback_port_connects_without_host(ns: str, loopback_kubeconfig: Path) -> None:
    gefyra("down")
    up = ok("up", "--kubeconfig", str(loopback_kubeconfig))
    assert f"tunnel endpoint {devcluster.node_ip()}:31820" in up.stderr, up.stderr
    status = json.loads(ok("status", "-o", "json", "--kubeconfig", str(loopback_kubeconfig)).stdout)
    assert status["connected"] and status["cluster"]["api"].startswith("https://127.0.0.1:")
    # -n comes from the kubeconfig's context, as with kubectl
    ok("run", "-i", TEST_IMAGE, "-N", "gfy-own-ctx", "-d", "--kubeconfig", str(loopback_kubeconfig))
    listed = json.loads(ok("list", "-o", "json", "--kubeconfig", str(loopback_kubeconfig)).stdout)["containers"]
    assert [c["namespace"] for c in listed if c["name"] == "gfy-own-ctx"] == [ns]
    assert engine("exec", "gfy-own-ctx", "testserver", "get", "http://web/").stdout.startswith("hello from web-")
    engine("rm", "-f", "gfy-own-ctx", "gfy-own-ctx-gefyra-net", check=False)


def test_a_one_shot_run_reaches_the_cluster_at_once_and_returns_the_exit_code(ns: str, tmp_path: Path) -> None:
    ok("up")
    # The test server's image has an entrypoint (testserver): the words after -- are its arguments.
    answered = ok("run", "--rm", "-i", TEST_IMAGE, "-N", "gfy-own-once", "-n", ns, "-q", "--", "get", "http://web/")
    assert answered.stdout.startswith("hello from web-"), answered.stdout
    failed = gefyra("run", "--rm", "-i", "debian:bookworm-slim", "-N", "gfy-own-fail", "-n", ns, "-q", "--",
                    "sh", "-c", "exit 3")
    assert failed.returncode == 3, failed.stderr
    said = ok("run", "--rm", "-i", "debian:bookworm-slim", "-N", "gfy-own-hi", "-n", ns, "-q", "--", "sh", "-c", "echo hi")
    assert said.stdout == "hi\n"
    env_file = tmp_path / "app.env"
    env_file.write_text("# comment\nGREETING=hi there\n\nFROM_HOST\n")
    said = ok("run", "--rm", "-i", "debian:bookworm-slim", "-N", "gfy-own-env", "-n", ns, "-q", "--env-file", str(env_file),
              "-e", "OVERRIDE=yes", "--", "sh", "-c", 'echo "$GREETING/$FROM_HOST/$OVERRIDE"',
              env={"FROM_HOST": "from-the-host"})
    assert said.stdout == "hi there/from-the-host/yes\n", said.stdout
    assert not [c for c in engine("ps", "-a", "--format", "{{.Names}}").stdout.split() if c.startswith("gfy-own-")]


def test_status_and_list_speak_yaml_and_version_names_both_sides(ns: str) -> None:
    ok("up")
    status = yaml.safe_load(ok("status", "-o", "yaml").stdout)
    assert status["connected"] is True and status["cluster"]["installed"] is True
    versions = json.loads(ok("version", "-o", "json").stdout)
    assert versions == {"client": __version__, "cluster": __version__}
    assert ok("version", "--client").stdout == f"client:       {__version__}\n"
    assert "complete -o nosort -F _gefyra_completion gefyra" in ok("completion", "bash").stdout


def test_check_reports_an_overlapping_network_and_a_blocked_udp_port(ns: str) -> None:
    gefyra("down")
    ok("up")  # the cluster side is installed; this machine's client is up
    client = json.loads(ok("status", "-o", "json").stdout)["client"]
    probe = f"{client}-ovl"

    def checks(*extra: str) -> dict[str, dict[str, Any]]:
        result = gefyra("--client-id", probe, "check", "-o", "json", *extra)
        return {c["name"]: c for c in json.loads(result.stdout)}

    network = f"gefyra-{probe}"
    engine("network", "create", "--subnet", "10.96.200.0/24", network)  # inside the Service range 10.96.0.0/12
    try:
        found = checks()
        assert not found["network"]["ok"] and "overlaps the cluster's Service range" in found["network"]["detail"], found
    finally:
        engine("network", "rm", network)
    assert checks()["network"]["ok"]

    rule = ["DOCKER-USER", "-p", "udp", "--dport", "31820", "-j", "DROP"]
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        started = time.monotonic()
        found = checks()
        MEASURED["check with the NodePort blocked (s)"] = round(time.monotonic() - started, 1)
        assert not found["tunnel"]["ok"] and "no traffic through the tunnel" in found["tunnel"]["detail"], found
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)
    found = checks()
    assert found["tunnel"]["ok"] and found["mtu"]["ok"], found
    assert all(c["ok"] for c in found.values()), found
    assert engine("ps", "-a", "-q", "--filter", f"label=gefyra.dev/client={probe}-check").stdout == ""
