"""Runs the real `gefyra` command line for end-to-end tests, and snapshots what it could leave behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from tests.e2e.devcluster import KUBECONFIG, assert_equal, engine, eventually, kubectl, kubectl_json

#: Namespaces that tests create and delete themselves (not gefyra's business).
TEST_NAMESPACE_PREFIXES = ("gfy-test-", "devcl-", "demo")


def gefyra(*args: str, env: dict[str, str] | None = None, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gefyra", "--kubeconfig", kubeconfig or str(KUBECONFIG), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def ok(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = gefyra(*args, **kwargs)
    assert result.returncode == 0, f"gefyra {' '.join(args)}: {result.stderr}"
    return result


def snapshot() -> dict[str, list[str]]:
    """Everything gefyra could leave behind, in the cluster and in the engine."""
    cluster: dict[str, list[str]] = {}
    for kind in ("namespaces", "customresourcedefinitions", "clusterroles", "clusterrolebindings"):
        cluster[kind] = sorted(i["metadata"]["name"] for i in kubectl_json("get", kind)["items"]
                               if not i["metadata"]["name"].startswith(TEST_NAMESPACE_PREFIXES))
    containers = engine("ps", "-a", "--format", "{{.Names}}").stdout.split()
    networks = engine("network", "ls", "--format", "{{.Name}}").stdout.split()
    return cluster | {"containers": sorted(containers), "networks": sorted(networks)}




def caller_get(ns: str, *headers: str) -> str:
    """http://web/ as the pod `caller` of ``ns`` gets it (3 s at most)."""
    return kubectl("-n", ns, "exec", "caller", "--", "testserver", "get", "http://web/", "--timeout", "3s",
                   *[part for header in headers for part in ("-H", header)])


def bridge_globally_then_personally(ns: str, local: str, while_bridged: Callable[[], None] = lambda: None) -> None:
    """deploy/web of ``ns`` bridged to the container ``local``: globally, then personally (header
    x-dev: me); each answered locally, and the cluster answering again after each unbridge.
    ``while_bridged`` runs while each of the two bridges stands."""
    ok("bridge", "-N", local, "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
    try:
        eventually(lambda: assert_equal(caller_get(ns)[:16], "hello from LOCAL"), timeout=15)
        while_bridged()
    finally:
        ok("unbridge", "--all")
    eventually(lambda: assert_equal(caller_get(ns)[:14], "hello from web"), timeout=30)
    ok("bridge", "-N", local, "-n", ns, "--target", "deploy/web", "-p", "8080:8080", "--match-header-exact", "x-dev:me")
    try:
        eventually(lambda: assert_equal(caller_get(ns, "x-dev: me")[:16], "hello from LOCAL"), timeout=15)
        assert caller_get(ns).startswith("hello from web-")
        while_bridged()
    finally:
        ok("unbridge", "--all")
    eventually(lambda: assert_equal(caller_get(ns, "x-dev: me")[:14], "hello from web"), timeout=30)
