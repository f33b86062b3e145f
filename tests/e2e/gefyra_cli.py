"""Runs the real `gefyra` command line for end-to-end tests, and snapshots what it could leave behind."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from tests.e2e.devcluster import KUBECONFIG, engine, kubectl_json

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


