"""`make bench-scale`: what gefyra costs a cluster as it grows. kwok (sigs.k8s.io/kwok, built from
its Go module and cached beside the development cluster's binaries) adds fake nodes, and pods on
them that cost no container: the API server and every watch see them as real. At 100 and at
5,000 such pods (in 100 namespaces) it measures, against the same figures on the cluster without
them:

- the operator's memory and CPU (its own /stats: resident memory, CPU seconds),
- a personal bridge's time to Ready (`gefyra bridge` until the Services lead to the router), and
  beside it a plain pod's time to Ready (what the cluster itself takes at that size),
- the API requests and watch events that gefyra's operator causes at rest (one client connected,
  one bridge standing, nothing changing), per minute: they must not grow with the pods.

Before that, on the cluster without fake pods, many developers on one cluster side
(bench/crowd.py): twenty personal bridges on one workload, fifty clients on one server end.

Writes bench/scale.json and prints a table (README "At scale" has the last one). `--only kwok` or
`--only crowd` measures one part again and keeps the other's figures from the file.

    python bench/scale.py [--only kwok|crowd] [--pods 5000] [--namespaces 100] [--reps 9] [--rest 60]
                          [--clients 50] [--bridges 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.crowd import bridges as many_bridges  # noqa: E402
from bench.crowd import clients as many_clients  # noqa: E402
from bench.run import LOCAL, NS, gefyra, operator_stats, timed, trivial_pod_ready, until, workloads  # noqa: E402
from tests.e2e import devcluster  # noqa: E402
from tests.e2e.devcluster import TEST_IMAGE, kubectl  # noqa: E402

KWOK_VERSION = "v0.8.0"
KWOK = Path.home() / ".cache" / "gefyra-devcluster" / f"kwok-{KWOK_VERSION}" / "kwok"
#: Fake nodes carry this annotation (kwok manages those only) and a taint that keeps real pods off.
FAKE = "kwok.x-k8s.io/node"
NODES = 10
PREFIX = "gfy-scale-"
BRIDGE = ["bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080", "--match-header-exact",
          "x-dev:bench"]


def kwok_binary() -> Path:
    """kwok, built once with `go install` (about 3 minutes) and kept in the cluster's cache."""
    if not KWOK.exists():
        print(f"building kwok {KWOK_VERSION} (once) ...", flush=True)
        subprocess.run(["go", "install", f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"], check=True, timeout=1800,
                       env={**os.environ, "GOBIN": str(KWOK.parent), "GOFLAGS": "-mod=mod"})
    return KWOK


def start_kwok() -> subprocess.Popen[bytes]:
    log = open(REPO / ".devcluster" / "kwok.log", "wb")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen([str(kwok_binary()), "--kubeconfig", str(devcluster.KUBECONFIG),
                             "--config", str(REPO / "hack" / "devcluster" / "kwok-stages.yaml"),
                             # pods get addresses from their fake node's range (the controller-manager's,
                             # in the cluster's pod range): no packet is sent to them
                             f"--manage-nodes-with-annotation-selector={FAKE}=fake", "--node-ip=10.200.255.254",
                             "--node-lease-duration-seconds=40", "--v=WARN"],
                            stdout=log, stderr=subprocess.STDOUT)


def fake_nodes(count: int) -> None:
    nodes = [{"apiVersion": "v1", "kind": "Node",
              "metadata": {"name": f"{PREFIX}node-{i}", "annotations": {FAKE: "fake"},
                           "labels": {"type": "kwok", "kubernetes.io/hostname": f"{PREFIX}node-{i}"}},
              "spec": {"taints": [{"key": FAKE, "value": "fake", "effect": "NoSchedule"}]}} for i in range(count)]
    devcluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))


def fake_pods(total: int, namespaces: int) -> None:
    """``total`` pods (on the fake nodes, each namespace's evenly), in ``namespaces`` namespaces
    that exist already; made by 4 kubectl processes at once, a List each."""
    per, batches, workers = total // namespaces, [], []
    for n in range(namespaces):
        batches.append([{"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": f"p-{i}", "namespace": f"{PREFIX}{n:03d}", "labels": {"app": f"a{i % 5}"}},
                  "spec": {"nodeName": f"{PREFIX}node-{(n + i) % NODES}",
                           "tolerations": [{"key": FAKE, "operator": "Exists", "effect": "NoSchedule"}],
                           "containers": [{"name": "c", "image": "fake", "ports": [{"containerPort": 8080}]}]}}
                 for i in range(per)])
    for chunk in range(4):  # 4 kubectl processes, each a quarter of the namespaces
        text = json.dumps({"apiVersion": "v1", "kind": "List",
                           "items": [pod for batch in batches[chunk::4] for pod in batch]})
        workers.append(subprocess.Popen([str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG),
                                         "apply", "-f", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL))
        assert workers[-1].stdin is not None
        workers[-1].stdin.write(text.encode())
        workers[-1].stdin.close()
    for worker in workers:
        if worker.wait(timeout=1800) != 0:
            raise RuntimeError("kubectl apply of the fake pods failed")


def running_fake_pods() -> int:
    out = kubectl("get", "pods", "-A", "--field-selector", "status.phase=Running", "-o",
                  "jsonpath={range .items[*]}{.metadata.namespace}{\"\\n\"}{end}")
    return sum(1 for line in out.splitlines() if line.startswith(PREFIX))


def grow_to(pods: int, namespaces: int) -> None:
    """The fake pods: ``pods`` in ``namespaces`` namespaces, all Running (kwok says so)."""
    for n in range(namespaces):
        kubectl("create", "namespace", f"{PREFIX}{n:03d}", check=False)
    started = time.monotonic()
    fake_pods(pods, namespaces)
    until(lambda: running_fake_pods() >= pods, timeout=1800)
    print(f"{pods} fake pods running after {time.monotonic() - started:.0f} s", flush=True)


def at_rest(seconds: float) -> dict[str, float]:
    """Per minute, with one bridge standing and nothing changing: the operator's API requests and
    the watch events it is sent; and its CPU share."""
    gefyra(*BRIDGE)
    try:
        time.sleep(5)  # the bridge's own rounds are over
        before, started = operator_stats(), time.monotonic()
        time.sleep(seconds)
        after, took = operator_stats(), time.monotonic() - started
    finally:
        gefyra("unbridge", "--all")
    per_minute = 60 / took
    return {"api_requests_per_min": round((after["api_requests"] - before["api_requests"] - 1) * per_minute, 1),
            "watch_events_per_min": round((after["watch_events"] - before["watch_events"]) * per_minute, 1),
            "cpu_percent": round(100 * (after["cpu_seconds"] - before["cpu_seconds"]) / took, 2),
            "resident_mib": after["resident_mib"]}


def bridge_ready(reps: int) -> list[float]:
    """Seconds of `gefyra bridge` (personal, until its Services lead to the router), each time a
    target's first bridge."""
    samples = []
    for _ in range(reps):
        samples.append(round(timed(lambda: gefyra(*BRIDGE)), 2))
        gefyra("unbridge", "--all")
        time.sleep(2)  # the router has drained and gone: each bridge is a target's first
    return samples


def pod_ready(reps: int) -> float:
    """Median seconds until a plain pod (the caller's image) is Ready: what the cluster itself takes
    at this size, next to the bridge's time."""
    samples = [trivial_pod_ready() for _ in range(reps)]
    return round(statistics.median(samples), 2)


def measure(label: str, reps: int, rest: float) -> dict[str, Any]:
    print(f"measuring: {label}", flush=True)
    ready, plain = bridge_ready(reps), pod_ready(reps)
    rested = at_rest(rest)
    stats = operator_stats()
    # The mean, not the median: a bridge takes about 2.1 s or about 3.1 s, as kube-proxy's
    # once-a-second sync falls (README "At scale"), and a median of a few such samples jumps by a
    # whole second between two runs of the same cluster.
    return {"label": label, "bridge_ready_s": round(statistics.mean(ready), 2), "bridge_ready_samples": ready,
            "plain_pod_ready_s": plain, **rested, "peak_mib": stats["peak_mib"],
            "cluster_pods": len(kubectl("get", "pods", "-A", "-o", "name").split())}


def clean(kwok: subprocess.Popen[bytes] | None) -> None:
    namespaces = [n.split("/")[1] for n in kubectl("get", "namespaces", "-o", "name").split()
                  if n.split("/")[1].startswith(PREFIX)]
    if namespaces:
        kubectl("delete", "namespace", *namespaces, "--wait=true", "--timeout=600s", check=False, timeout=700)
    kubectl("delete", "nodes", "-l", "type=kwok", "--wait=true", check=False)
    if kwok is not None:
        kwok.terminate()
        kwok.wait(timeout=30)


def kwok_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The figures at 0, 100 and ``args.pods`` fake pods, with ratios to the first."""
    workloads(replicas=1)
    gefyra("up")
    gefyra("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", NS, "-d", "-e", "MESSAGE=LOCAL")
    kwok = None
    results = []
    try:
        results.append(measure("no fake pods", args.reps, args.rest))
        kwok = start_kwok()
        fake_nodes(NODES)
        grow_to(100, 10)
        results.append(measure("100 fake pods", args.reps, args.rest))
        grow_to(args.pods, args.namespaces)
        results.append(measure(f"{args.pods} fake pods", args.reps, args.rest))
    finally:
        gefyra("down")
        clean(kwok)
    for row in results:
        row["bridge_ready_ratio"] = round(row["bridge_ready_s"] / results[0]["bridge_ready_s"], 2)
        row["plain_pod_ratio"] = round(row["plain_pod_ready_s"] / results[0]["plain_pod_ready_s"], 2)
    return results


def kwok_goals(results: list[dict[str, Any]]) -> dict[str, bool]:
    largest = results[-1]
    return {"operator at most 150 MiB": largest["peak_mib"] <= 150,
            "bridge Ready within 1.2x of the empty cluster's": largest["bridge_ready_ratio"] <= 1.2,
            "API requests at rest independent of pods (within 20 %)":
                abs(largest["api_requests_per_min"] - results[1]["api_requests_per_min"])
                <= 0.2 * max(results[1]["api_requests_per_min"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--only", choices=["kwok", "crowd"], help="measure one part; the other's figures stay")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--rest", type=float, default=60, help="seconds at rest per measurement")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "scale.json")
    parser.add_argument("--clients", type=int, default=50, help="clients on one server end (bench/crowd.py)")
    parser.add_argument("--bridges", type=int, default=20, help="personal bridges on one workload (bench/crowd.py)")
    args = parser.parse_args()
    kwok_binary()
    kept = json.loads(args.out.read_text()) if args.only and args.out.exists() else {}
    gefyra("down")
    clean(None)
    if args.only == "kwok":
        crowd = kept["crowd"]
        crowd_goals = {k: v for k, v in kept["goals"].items() if k not in kwok_goals(kept["rows"])}
    else:
        crowd = {"bridges": many_bridges(args.bridges), "clients": many_clients(args.clients)}
        crowd_goals = {goal: met for part in crowd.values() for goal, met in part.pop("goals").items()}
    results = kept["rows"] if args.only == "crowd" else kwok_rows(args)
    goals = kwok_goals(results) | crowd_goals
    args.out.write_text(json.dumps({"kwok": KWOK_VERSION, "rows": results, "crowd": crowd, "goals": goals}, indent=2)
                        + "\n")
    keys = ["cluster_pods", "bridge_ready_s", "bridge_ready_ratio", "plain_pod_ready_s", "plain_pod_ratio",
            "api_requests_per_min", "watch_events_per_min",
            "cpu_percent", "resident_mib", "peak_mib"]
    print("| | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for row in results:
        print(f"| {row['label']} | " + " | ".join(str(row[k]) for k in keys) + " |")
    for name, part in crowd.items():
        print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in part.items()))
    print("\n".join(f"{'met' if met else 'MISSED'}: {goal}" for goal, met in goals.items()))


if __name__ == "__main__":
    main()
