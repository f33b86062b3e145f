"""The tunnel through the Kubernetes API, where UDP does not reach the nodes: with UDP to the
NodePort dropped by an iptables rule (as a corporate firewall drops it), `up` takes the API by
itself and everything works; `--transport api` works with a client certificate, a bearer token and
an exec credential plugin, and leaves no credential in a process's arguments or a container.

Tests run in order on the one module namespace."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e import devcluster
from tests.e2e.devcluster import KUBECONFIG, TEST_IMAGE, assert_equal, engine, eventually, kubectl, unique
from tests.e2e.gefyra_cli import bridge_globally_then_personally, caller_get, gefyra, ok

pytestmark = pytest.mark.e2e

LOCAL = "gfy-transport-local"
#: What a firewall that lets no UDP out does to the tunnel (Docker's chain for its containers' traffic).
UDP_DROPPED = ["DOCKER-USER", "-p", "udp", "--dport", "31820", "-j", "DROP"]
MEASURED: dict[str, float] = {}


def _relays() -> list[str]:
    """The relay processes on this machine, by their arguments."""
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if "gefyra.client.api_relay" in line]


def _status() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok("status", "-o", "json").stdout)
    return found


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    """UDP to the NodePort dropped; a workload `web` and a caller pod; nothing of gefyra's up."""
    gefyra("down")
    name = unique("gfy-test-transport")
    kubectl("create", "namespace", name)
    subprocess.run(["iptables", "-I", *UDP_DROPPED], check=True)
    try:
        devcluster.apply(devcluster.http_workload("web", name, replicas=1))
        devcluster.apply(devcluster.client_pod("caller", name))
        kubectl("-n", name, "rollout", "status", "deploy/web", "--timeout=90s")
        kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
        yield name
    finally:
        gefyra("down")
        subprocess.run(["iptables", "-D", *UDP_DROPPED], check=False)
        kubectl("delete", "namespace", name, "--wait=false", check=False)
        print("\ntransport measurements: " + json.dumps(MEASURED))


def local(*command: str) -> str:
    return engine("exec", LOCAL, *command).stdout


def test_up_takes_the_api_by_itself_when_udp_is_dropped(ns: str) -> None:
    started = time.monotonic()
    result = ok("up")
    MEASURED["up through the API with UDP dropped (s)"] = round(time.monotonic() - started, 1)
    assert "through the Kubernetes API" in result.stderr and "over the Kubernetes API" in result.stderr, result.stderr
    assert "tunnel over the Kubernetes API" in result.stdout, result.stdout
    assert MEASURED["up through the API with UDP dropped (s)"] < 15, MEASURED  # the issue asks for 10 s; see bench
    cargo = _status()["cargo"]
    assert cargo["transport"] == "api" and cargo["endpoint"], cargo
    assert len(_relays()) == 1, _relays()


def test_a_local_container_reaches_services_by_name(ns: str) -> None:
    ok("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", ns, "-d", "-e", "MESSAGE=LOCAL")
    assert eventually(lambda: local("testserver", "get", "http://web/"), timeout=15).startswith("hello from web-")
    assert local("testserver", "get", f"http://web.{ns}.svc.cluster.local/").startswith("hello from web-")


def test_a_global_and_a_personal_bridge_are_answered_locally(ns: str) -> None:
    bridge_globally_then_personally(ns, LOCAL)


def test_the_relay_finds_a_new_server_pod_by_itself(ns: str) -> None:
    kubectl("-n", "gefyra", "delete", "pod", devcluster.stowaway_pod()["metadata"]["name"], "--wait=false")
    started = time.monotonic()
    assert eventually(lambda: local("testserver", "get", "http://web/"), timeout=60).startswith("hello from web-")
    MEASURED["traffic again after stowaway's pod was deleted (s)"] = round(time.monotonic() - started, 1)


def test_traffic_flows_again_after_the_api_server_restarted(ns: str) -> None:
    devcluster.restart_apiserver()
    started = time.monotonic()
    assert eventually(lambda: local("testserver", "get", "http://web/"), timeout=60).startswith("hello from web-")
    MEASURED["traffic again after an API server restart (s)"] = round(time.monotonic() - started, 1)


def test_a_session_outlives_a_silence_longer_than_the_client_timeout(ns: str) -> None:
    """A laptop's sleep: the local end paused past the client timeout (60 s). Meanwhile the client is
    Silent and its bridge Suspended (the workload answers from its own pods); after the pause,
    traffic flows again within 5 s on the same registration and address, and the bridge answers
    locally again by itself."""
    before = _status()
    ok("bridge", "-N", LOCAL, "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
    try:
        eventually(lambda: assert_equal(caller_get(ns)[:16], "hello from LOCAL"), timeout=15)
        engine("pause", before["cargo"]["name"])
        paused = time.monotonic()
        try:
            eventually(lambda: assert_equal(_status()["cluster"]["client"]["phase"], "Silent"), timeout=120, interval=2)
            eventually(lambda: assert_equal(caller_get(ns)[:14], "hello from web"), timeout=30)
            time.sleep(max(0.0, 75 - (time.monotonic() - paused)))
        finally:
            engine("unpause", before["cargo"]["name"])
        started = time.monotonic()
        # Either side's answer proves the tunnel carries traffic again: the pods', or (once the
        # bridge has resumed) the local container's own, through the router and back.
        assert eventually(lambda: local("testserver", "get", "http://web/"), timeout=60).startswith(
            ("hello from web-", "hello from LOCAL"))
        MEASURED["traffic again after the local end was paused for 75 s (s)"] = round(time.monotonic() - started, 1)
        eventually(lambda: assert_equal(caller_get(ns)[:16], "hello from LOCAL"), timeout=30)
        MEASURED["bridge answered locally again after the pause (s)"] = round(time.monotonic() - started, 1)
        after = _status()
        assert after["cluster"]["client"] == before["cluster"]["client"] and after["cargo"]["transport"] == "api", after
        assert MEASURED["traffic again after the local end was paused for 75 s (s)"] < 5, MEASURED
    finally:
        ok("unbridge", "--all")


def test_down_leaves_no_relay(ns: str) -> None:
    client = _status()["client"]
    ok("down")
    assert _relays() == []
    relays = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config", "gefyra", "relays")
    assert not list(relays.glob("*.json")) and not list(relays.glob(f"{client}.*"))  # no state, no log


def _kubeconfig_with_user(tmp_path: Path, name: str, user: dict[str, Any]) -> str:
    data = yaml.safe_load(KUBECONFIG.read_text())
    for entry in data["users"]:
        entry["user"] = user
    path = tmp_path / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def token(ns: str) -> Iterator[str]:
    """A bearer token of a service account that may do what a developer's `up` does (here: all)."""
    account = "gfy-test-transport"
    kubectl("-n", ns, "create", "serviceaccount", account)
    kubectl("create", "clusterrolebinding", f"{ns}-admin", "--clusterrole=cluster-admin",
            f"--serviceaccount={ns}:{account}")
    try:
        yield kubectl("-n", ns, "create", "token", account, "--duration=15m").strip()
    finally:
        kubectl("delete", "clusterrolebinding", f"{ns}-admin", check=False)


@pytest.mark.parametrize(("credential", "protocol"), [("client certificate", "spdy"), ("bearer token", "spdy"),
                                                    ("exec plugin", "spdy"), ("bearer token", "websocket")])
def test_transport_api_with_each_kind_of_kubeconfig(ns: str, token: str, credential: str, protocol: str,
                                                    tmp_path: Path) -> None:
    if credential == "client certificate":
        kubeconfig = str(KUBECONFIG)
    elif credential == "bearer token":
        kubeconfig = _kubeconfig_with_user(tmp_path, "token", {"token": token})
    else:
        plugin = tmp_path / "credential-plugin"
        answer = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {"token": token}}
        plugin.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(answer)}\nEOF\n")
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
        kubeconfig = _kubeconfig_with_user(tmp_path, "exec", {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin), "interactiveMode": "Never"}})
    # The relay takes the stream's protocol from `up`'s environment (SPDY unless told otherwise).
    env = {"GEFYRA_API_STREAM": protocol}
    ok("down")  # a session made afresh, with its network
    try:
        ok("up", "--transport", "api", kubeconfig=kubeconfig, env=env)
        ok("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", ns, "-d", kubeconfig=kubeconfig)
        assert eventually(lambda: local("testserver", "get", "http://web/"), timeout=15).startswith("hello from web-")
        status = json.loads(ok("status", "-o", "json", kubeconfig=kubeconfig).stdout)
        assert status["cargo"]["transport"] == "api"
        # Only on the stream: large datagrams, from the local containers on, and segments to match
        # (stowaway takes such a SYN on its interface of MTU 9000).
        assert (_mtu(status["cargo"]["name"], "wg0"), _mtu(LOCAL, "eth0")) == (9000, 9000)
        assert _segment_size_to_caller(ns) > 8900
        assert local("testserver", "download", "http://web/bytes?n=20000000").startswith("received=20000000 ")
        relay_log = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config", "gefyra", "relays",
                         f"{status['client']}.log").read_text()
        assert re.search(rf"over=(\x1b\[[0-9;]*m)*{protocol}", relay_log), relay_log[-2000:]
        secrets = [token, *_client_key_lines()]
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        ours = engine("ps", "-a", "-q", "--filter", "label=app.kubernetes.io/managed-by=gefyra").stdout.split()
        configs = engine("inspect", *ours).stdout
        for secret in secrets:
            assert secret not in listing and secret not in configs and secret not in relay_log
    finally:
        ok("down", kubeconfig=kubeconfig)
    assert _relays() == []


@pytest.fixture
def talking(ns: str) -> Iterator[tuple[str, str]]:
    """Connected over UDP, and a TCP connection from the local end to `web`'s line echo that sends a
    line each second and logs each answer with its time (one connection throughout: bash's fd 3)."""
    subprocess.run(["iptables", "-D", *UDP_DROPPED], check=True)  # the module's rule: UDP works here
    ok("up")
    cargo = _status()["cargo"]["name"]
    ip = kubectl("-n", ns, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
    script = (f"exec 3<>/dev/tcp/{ip}/9000 && while true; do echo line >&3; read -r -t 5 answer <&3 "
              "&& echo \"$(date +%s.%N) $answer\" >> /tmp/talk; sleep 1; done")
    engine("exec", "-d", cargo, "bash", "-c", script)
    eventually(lambda: assert_equal(bool(_answers(cargo)), True), timeout=15)
    try:
        yield ns, cargo
    finally:
        subprocess.run(["iptables", "-D", *UDP_DROPPED], check=False)
        subprocess.run(["iptables", "-I", *UDP_DROPPED], check=True)  # as the module's other tests expect
        ok("down")


def _answers(cargo: str) -> list[float]:
    log = engine("exec", cargo, "cat", "/tmp/talk", check=False).stdout
    return [float(line.split()[0]) for line in log.splitlines() if "echo: line" in line]


def test_a_session_moves_to_the_api_when_udp_stops_and_back_when_it_works_again(talking: tuple[str, str]) -> None:
    """The issue's mid-session case: UDP dropped under a connection that talks every second, then
    allowed again; the same connection goes on throughout."""
    _, cargo = talking
    assert _status()["cargo"]["transport"] == "udp"
    subprocess.run(["iptables", "-I", *UDP_DROPPED], check=True)
    dropped = time.time()
    eventually(lambda: assert_equal(_status()["cargo"]["transport"], "api"), timeout=30)
    eventually(lambda: assert_equal(any(t > time.time() - 2 for t in _answers(cargo)), True), timeout=30)
    resumed = min(t for t in _answers(cargo) if t > dropped + 1)
    MEASURED["line exchange again after UDP was dropped (s)"] = round(resumed - dropped, 1)
    assert resumed - dropped < 15, MEASURED
    subprocess.run(["iptables", "-D", *UDP_DROPPED], check=True)
    eventually(lambda: assert_equal(_status()["cargo"]["transport"], "udp"), timeout=90)
    before = len(_answers(cargo))
    eventually(lambda: assert_equal(len(_answers(cargo)) >= before + 3, True), timeout=15)
    times = _answers(cargo)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    MEASURED["longest pause of the line exchange (s)"] = round(max(gaps), 1)


def test_tcp_through_a_udp_session_keeps_to_the_tunnels_mtu(ns: str) -> None:
    """A session that began on the API alone has the stream's MTU on its network; once it moves
    to UDP (`up` says what that means for its open connections), cargo clamps new TCP connections
    to UDP's MTU, so that stowaway takes them on its interface of UDP's MTU and no datagram is
    larger than the path takes whole: a download arrives without one IP fragment."""
    subprocess.run(["iptables", "-D", *UDP_DROPPED], check=True)  # the module's rule: UDP works here
    try:
        ok("down")  # a session made afresh, with its network
        ok("up", "--transport", "api")
        ok("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", ns, "-d")
        assert eventually(lambda: local("testserver", "get", "http://web/"), timeout=15).startswith("hello from web-")
        assert "began on the Kubernetes API alone (MTU 9000)" in ok("up", "--transport", "udp").stderr
        cargo = _status()["cargo"]["name"]
        assert _status()["cargo"]["transport"] == "udp" and _mtu(cargo, "wg0") == 1340
        assert _segment_size_to_caller(ns) <= 1300
        before = _fragments_reassembled(cargo)
        assert local("testserver", "download", "http://web/bytes?n=20000000").startswith("received=20000000 ")
        assert _fragments_reassembled(cargo) == before
    finally:
        subprocess.run(["iptables", "-I", *UDP_DROPPED], check=True)  # as the module's other tests expect
        ok("down")


def _segment_size_to_caller(ns: str) -> int:
    """The MSS of a TCP connection from the local container to the caller pod (iperf3's)."""
    kubectl("-n", ns, "exec", "caller", "--", "iperf3", "-s", "-1", "-D")
    ip = kubectl("-n", ns, "get", "pod", "caller", "-o", "jsonpath={.status.podIP}")
    size: int = json.loads(local("iperf3", "-c", ip, "-t", "1", "-J"))["start"]["tcp_mss_default"]
    return size


def _mtu(container: str, interface: str) -> int:
    return int(engine("exec", container, "cat", f"/sys/class/net/{interface}/mtu").stdout)


def _fragments_reassembled(container: str) -> int:
    """IP fragments that ``container``'s network namespace received (ReasmReqds of /proc/net/snmp)."""
    names, values = [line.split() for line in engine("exec", container, "cat", "/proc/net/snmp").stdout.splitlines()
                     if line.startswith("Ip:")]
    return int(dict(zip(names, values, strict=True))["ReasmReqds"])


def _client_key_lines() -> list[str]:
    """Long lines of the certificate kubeconfig's private key (as data or in its file)."""
    user = yaml.safe_load(KUBECONFIG.read_text())["users"][0]["user"]
    key = user.get("client-key-data") or Path(user.get("client-key", "/dev/null")).read_text()
    return [line for line in key.splitlines() if len(line) > 40]
