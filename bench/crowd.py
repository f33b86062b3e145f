"""Many developers on one cluster side, for `make bench-scale` (bench/scale.py runs it first, on the
cluster without fake pods; `python bench/crowd.py` runs it alone):

- twenty personal bridges on one workload, each by its own client (`gefyra up` with its own client
  id, a local container, `--match-header-exact x-dev:devN`): the time of the twentieth bridge to
  its first matching answer and of an unbridge of one of twenty to the cluster answering its
  requests again (each is one reload of the router's nginx with twenty bridges' routes), the
  latency that requests the cluster answers pay for the router (p50/p99 against the same requests
  before any bridge) and that matched ones take to a local container, the router's memory, and
  what the operator costs at rest with twenty bridges standing (API requests per minute, CPU).

Prints a table; returns the figures for bench/scale.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import (  # noqa: E402
    NS,
    _switched,
    container_rss_mib,
    gefyra,
    latency,
    sh,
    until,
    workloads,
)
from tests.e2e import devcluster  # noqa: E402
from tests.e2e.devcluster import TEST_IMAGE, kubectl  # noqa: E402

PREFIX = "gfy-crowd-"
CALLER = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec", "caller", "--"]


def _env(i: int) -> dict[str, str]:
    return {"GEFYRA_CLIENT_ID": f"{PREFIX}{i}"}


def _bridge(i: int) -> None:
    gefyra("bridge", "-N", f"{PREFIX}local-{i}", "-n", NS, "--target", "deploy/web", "-p", "8080:8080",
           "--match-header-exact", f"x-dev:dev{i}", env=_env(i))


def _developer(i: int) -> None:
    """Client ``i`` up with a local container that answers "hello from DEVi"."""
    gefyra("up", env=_env(i))
    sh("docker", "rm", "-f", f"{PREFIX}local-{i}", check=False)
    gefyra("run", "-i", TEST_IMAGE, "-N", f"{PREFIX}local-{i}", "-n", NS, "-d", "-e", f"MESSAGE=DEV{i}", env=_env(i))


def _operator_stats() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(sh(*CALLER, "testserver", "get", "http://gefyra-operator.gefyra:8080/stats"))
    return found


def _router_pods() -> list[str]:
    pods = devcluster.kubectl_json("-n", "gefyra", "get", "pods", "-l", "gefyra.dev/router")["items"]
    return [p["metadata"]["name"] for p in pods
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def bridges(count: int = 20, requests: int = 1000, rest: float = 30) -> dict[str, Any]:
    """See the module's docstring."""
    workloads(replicas=1)
    until(lambda: not kubectl("-n", "gefyra", "get", "deploy", "-l", "gefyra.dev/router", "-o", "name"), 90)
    plain = latency(CALLER, "http://web/", requests)
    found: dict[str, Any] = {"bridges": count}
    try:
        joined = []
        for i in range(1, count + 1):
            started = time.monotonic()
            _developer(i)
            if i < count:
                _bridge(i)
            joined.append(time.monotonic() - started)
        found["up_run_bridge_s_median"] = round(statistics.median(joined), 2)
        found["last_bridge_to_first_answer_s"] = round(
            _switched(lambda: _bridge(count), f"hello from DEV{count}", f"x-dev: dev{count}"), 3)
        unmatched, first, last = (latency(CALLER, "http://web/", requests),
                                  latency(CALLER, "http://web/", requests, "x-dev: dev1"),
                                  latency(CALLER, "http://web/", requests, f"x-dev: dev{count}"))
        found |= {"plain_p50_ms": plain[0], "plain_p99_ms": plain[1],
                  "unmatched_p50_ms": unmatched[0], "unmatched_p99_ms": unmatched[1],
                  "unmatched_p50_overhead_ms": round(unmatched[0] - plain[0], 3),
                  "unmatched_p99_overhead_ms": round(unmatched[1] - plain[1], 3),
                  "matched_first_p50_ms": first[0], "matched_first_p99_ms": first[1],
                  "matched_last_p50_ms": last[0], "matched_last_p99_ms": last[1]}
        routers = _router_pods()
        kubectl_exec = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", "gefyra", "exec"]
        found["router_mib"] = [round(container_rss_mib([*kubectl_exec, pod, "--"]), 1) for pod in routers]
        before, started = _operator_stats(), time.monotonic()
        time.sleep(rest)
        after, took = _operator_stats(), time.monotonic() - started
        found |= {"operator_api_requests_per_min": round((after["api_requests"] - before["api_requests"]) * 60 / took, 1),
                  "operator_cpu_percent": round(100 * (after["cpu_seconds"] - before["cpu_seconds"]) / took, 2),
                  "operator_mib": after["resident_mib"]}
        found["unbridge_one_of_all_to_cluster_answer_s"] = round(
            _switched(lambda: gefyra("unbridge", "--all", env=_env(count)), "hello from web-", f"x-dev: dev{count}"), 3)
    finally:
        for i in range(1, count + 1):
            try:
                gefyra("down", env=_env(i))
            except RuntimeError as exc:  # the others still go
                print(f"down of {PREFIX}{i}: {exc}", file=sys.stderr)
    found["goals"] = {
        "20th bridge (one router reload) to its first matching answer within 1 s":
            found["last_bridge_to_first_answer_s"] <= 1.0,
        "unmatched p50 overhead at most +0.2 ms with 20 bridges": found["unmatched_p50_overhead_ms"] <= 0.2}
    return found


def main() -> None:
    print(json.dumps(bridges(), indent=2))


if __name__ == "__main__":
    main()
