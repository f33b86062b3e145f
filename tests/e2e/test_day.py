"""A developer's day with local containers: `gefyra logs` prints and follows a container's output,
`gefyra rm` removes a bridged container after its bridge (the workload answers from its own pods
again) and refuses names that are not this client's `run` containers; a coding agent does the same
through `gefyra mcp` (an MCP client from the mcp package).

Tests run in order on the one module namespace."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import KUBECONFIG, TEST_IMAGE, assert_equal, engine, eventually, kubectl, unique
from tests.e2e.gefyra_cli import caller_get, gefyra, ok

pytestmark = pytest.mark.e2e
MEASURED: dict[str, float] = {}

LOCAL = "gfy-day-local"
#: A server that also writes a numbered line every 0.2 s.
TICKING = ["--entrypoint", "/bin/sh", "--", "-c",
           "testserver serve & i=0; while sleep 0.2; do i=$((i+1)); echo tick $i; done"]


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    name = unique("gfy-test-day")
    kubectl("create", "namespace", name)
    try:
        devcluster.apply(devcluster.http_workload("web", name, replicas=1))
        devcluster.apply(devcluster.client_pod("caller", name))
        kubectl("-n", name, "rollout", "status", "deploy/web", "--timeout=90s")
        kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
        ok("up")
        ok("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", name, "-d", "-e", "MESSAGE=LOCAL", *TICKING)
        yield name
    finally:
        gefyra("rm", "--all")
        kubectl("delete", "namespace", name, "--wait=false", check=False)
        print("\nday measurements: " + json.dumps(MEASURED))


def _ticks(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if line.startswith("tick ")]


def test_logs_prints_the_output_and_the_last_lines(ns: str) -> None:
    eventually(lambda: assert_equal(len(_ticks(ok("logs", LOCAL).stdout)) >= 5, True), timeout=15)
    every = _ticks(ok("logs", LOCAL).stdout)
    assert every == list(range(1, len(every) + 1)), every
    last = _ticks(ok("logs", LOCAL, "--tail", "3").stdout)
    assert len(last) == 3 and last[0] >= every[-1] - 2, (last, every)
    time.sleep(2)
    recent = _ticks(ok("logs", LOCAL, "--since", "1s").stdout)
    assert recent and recent[0] > every[-1] and len(recent) <= 15, (recent, every)


def test_logs_follow_streams_new_lines_until_interrupted(ns: str) -> None:
    following = subprocess.Popen([sys.executable, "-m", "gefyra", "--kubeconfig", str(KUBECONFIG), "-q", "logs", "-f",
                                  "--tail", "1", LOCAL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert following.stdout is not None
        seen = [following.stdout.readline() for _ in range(6)]  # the last line, then five new ones as they come
        ticks = _ticks("".join(seen))
        assert len(ticks) == 6 and ticks == list(range(ticks[0], ticks[0] + 6)), seen
    finally:
        following.send_signal(2)  # Ctrl-C
        _, err = following.communicate(timeout=15)
    assert following.returncode == 130 and "Traceback" not in err, err


def test_logs_and_rm_refuse_what_is_not_a_run_container(ns: str) -> None:
    cargo = json.loads(ok("status", "-o", "json").stdout)["cargo"]["name"]
    for command in (["logs", cargo], ["rm", cargo], ["rm", "gfy-day-nothing"]):
        refused = gefyra(*command)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 8 and len(lines) == 1 and "started with `gefyra run`" in lines[0], refused.stderr
    assert engine("inspect", "-f", "{{.State.Running}}", cargo).stdout.strip() == "true"


def test_status_watch_prints_what_changes(ns: str) -> None:
    """`status --watch` in a pipe: a block each time something changes (here: a bridge made, then
    removed), each with the bridge's line and phase."""
    watching = subprocess.Popen([sys.executable, "-m", "gefyra", "--kubeconfig", str(KUBECONFIG), "-q", "status", "-w"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read_until(wanted: str) -> None:
        assert watching.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = watching.stdout.readline()
            lines.append(line)
            if wanted in line:
                return
        raise AssertionError(f"{wanted!r} not in {lines}")

    try:
        read_until("bridges:    0")
        ok("bridge", "-N", LOCAL, "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
        read_until(f"-> {LOCAL} Active")
        ok("unbridge", "--all")
        read_until("bridges:    0")
    finally:
        watching.send_signal(2)  # Ctrl-C
        _, err = watching.communicate(timeout=15)
    assert watching.returncode == 130 and "Traceback" not in err, err
    assert sum(line.startswith("--- ") for line in lines) >= 3, lines  # before, bridged, after


def test_rm_removes_a_bridged_container_after_its_bridge(ns: str) -> None:
    ok("bridge", "-N", LOCAL, "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
    eventually(lambda: assert_equal(caller_get(ns)[:16], "hello from LOCAL"), timeout=15)
    removed = json.loads(ok("rm", LOCAL, "-o", "json").stdout)
    assert removed[-1] == f"container {LOCAL}" and removed[0].startswith("bridge "), removed
    eventually(lambda: assert_equal(caller_get(ns)[:14], "hello from web"), timeout=15)
    listed = json.loads(ok("list", "-o", "json").stdout)
    assert listed["containers"] == [] and listed["bridges"] == [], listed
    names = engine("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert LOCAL not in names and f"{LOCAL}-gefyra-net" not in names, names


def _configured(namespace: str) -> str:
    """A Deployment `conf` whose container mounts a ConfigMap (a directory, and one key by subPath),
    a Secret with an item and a mode, and a downward API volume."""
    return f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config, namespace: {namespace}}}
data: {{config.yaml: "level: info\\n", other.txt: "other"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app-secret, namespace: {namespace}}}
stringData: {{password: s3cret, unused: x}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: conf, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: conf}}}}
  template:
    metadata: {{labels: {{app: conf, tier: demo}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: {devcluster.WORKLOAD_IMAGE}
        imagePullPolicy: IfNotPresent
        resources: {{limits: {{cpu: 500m, memory: 96Mi}}}}
        volumeMounts:
        - {{name: config, mountPath: /etc/app}}
        - {{name: config, mountPath: /etc/other.txt, subPath: other.txt}}
        - {{name: secret, mountPath: /etc/secret}}
        - {{name: info, mountPath: /etc/podinfo}}
        - {{name: scratch, mountPath: /scratch}}
      volumes:
      - {{name: config, configMap: {{name: app-config}}}}
      - {{name: secret, secret: {{secretName: app-secret, items: [{{key: password, path: db/password, mode: 0400}}]}}}}
      - name: info
        downwardAPI:
          items:
          - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
          - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{name: scratch, emptyDir: {{}}}}
"""


def test_volumes_and_limits_from_a_workload(ns: str) -> None:
    """--volumes-from: the files at the same paths, read-only, kept in step, gone after rm;
    --resources-from: the container's CPU and memory limits."""
    devcluster.apply(_configured(ns))
    kubectl("-n", ns, "rollout", "status", "deploy/conf", "--timeout=90s")
    pod = kubectl("-n", ns, "get", "pods", "-l", "app=conf", "-o", "jsonpath={.items[0].metadata.name}")
    name = "gfy-day-conf"
    made = ok("run", "-i", TEST_IMAGE, "-N", name, "-n", ns, "-d", "--volumes-from", "deploy/conf",
              "--resources-from", "deploy/conf")
    assert "volume scratch (emptyDir) is not copied" in made.stderr, made.stderr
    limits = engine("inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", name).stdout.split()
    assert limits == [str(500_000_000), str(96 << 20)], limits
    files = ["/etc/app/config.yaml", "/etc/other.txt", "/etc/secret/db/password", "/etc/podinfo/labels",
             "/etc/podinfo/name"]
    cat = ["sh", "-c", " && ".join(f"echo '== {f}' && cat {f}" for f in files)]
    in_pod = kubectl("-n", ns, "exec", pod, "--", *cat)
    assert engine("exec", name, *cat).stdout == in_pod, in_pod
    assert "s3cret" in in_pod and 'tier="demo"' in in_pod
    copies = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config", "gefyra", "volumes", name)
    assert stat.S_IMODE(copies.stat().st_mode) == 0o700
    assert engine("exec", name, "sh", "-c", "echo x > /etc/app/new", check=False).returncode != 0  # read-only

    kubectl("-n", ns, "patch", "configmap", "app-config", "-p", '{"data": {"config.yaml": "level: debug\\n"}}')
    changed = time.monotonic()
    eventually(lambda: assert_equal(engine("exec", name, "cat", "/etc/app/config.yaml").stdout, "level: debug\n"),
               timeout=10, interval=0.5)
    MEASURED["ConfigMap change seen in the local file (s)"] = round(time.monotonic() - changed, 1)

    ok("rm", name)
    assert not copies.exists()
    assert not [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
                if "gefyra.client.volume_keeper" in line and name in line]


def test_an_agent_runs_bridges_and_removes_through_mcp(ns: str) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    name = "gfy-day-agent"
    server = StdioServerParameters(command=sys.executable, args=["-m", "gefyra", "--kubeconfig", str(KUBECONFIG), "mcp"])

    async def agent() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            seen["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
            ran = await session.call_tool("run", {"request": {"image": TEST_IMAGE, "name": name, "namespace": ns,
                                                              "env": {"MESSAGE": "AGENT"}}})
            assert not ran.is_error, ran.content
            bridged = await session.call_tool("bridge", {"request": {"local": name, "target": "deploy/web",
                                                                     "namespace": ns, "ports": {"8080": 8080}}})
            assert not bridged.is_error, bridged.content
            seen["answer"] = await anyio.to_thread.run_sync(caller_get, ns)
            seen["status"] = (await session.call_tool("status", {})).structured_content
            bad = await session.call_tool("bridge", {"request": {"local": name, "target": "deploy/web", "namespace": ns,
                                                                 "ports": {"8080": 0}}})
            seen["bad"] = (bad.is_error, bad.content[0].text)
            removed = await session.call_tool("rm", {"names": [name]})
            seen["removed"] = (removed.is_error, removed.structured_content)
        return seen

    seen = anyio.run(agent)
    assert seen["tools"] == ["bridge", "down", "logs", "rm", "run", "status", "unbridge"], seen["tools"]
    assert seen["answer"].startswith("hello from AGENT"), seen["answer"]
    [bridge] = seen["status"]["bridges"]
    assert bridge["local"] == name and bridge["phase"] == "Active", bridge
    error, message = seen["bad"]
    assert error and "BridgeRequest.ports" in message and len(message.splitlines()) == 1, message
    assert seen["removed"][0] is False and f"container {name}" in json.dumps(seen["removed"][1]), seen["removed"]
    eventually(lambda: assert_equal(caller_get(ns)[:14], "hello from web"), timeout=15)
    assert json.loads(ok("list", "-o", "json").stdout) == {"containers": [], "bridges": [], "problems": []}
