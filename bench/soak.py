"""The soak (`make soak`): requests through a bridge at a steady rate for a long while, with the
stowaway pod deleted once in the middle. Every request must be answered, save those inside the
recovery window; reports the window, the latency and the memory of the operator and stowaway at
the start, before the deletion and at the end. Writes bench/soak.json.

    python bench/soak.py [--minutes 10] [--rate 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import LOCAL, NS, gefyra, sh, until, workloads  # noqa: E402
from tests.e2e import devcluster  # noqa: E402
from tests.e2e.devcluster import TEST_IMAGE, kubectl  # noqa: E402

KUBECTL = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG)]


def memory() -> dict[str, float]:
    pod = devcluster.stowaway_pod()
    return {c: round(devcluster.rss_mib(devcluster.container_pids(pod, c)), 1) for c in ("operator", "stowaway")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=10, help="requests per second")
    args = parser.parse_args()
    seconds, count = args.minutes * 60, int(args.minutes * 60 * args.rate)

    gefyra("down")
    workloads(replicas=2)
    gefyra("up")
    sh("docker", "rm", "-f", LOCAL, check=False)
    gefyra("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", NS, "-d", "-e", "MESSAGE=LOCAL")
    gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080")
    until(lambda: "LOCAL" in sh(*KUBECTL, "-n", NS, "exec", "caller", "--", "testserver", "get", "http://web/",
                                check=False))
    start = memory()
    result: dict[str, Any] = {}

    def load() -> None:
        out = sh(*KUBECTL, "-n", NS, "exec", "caller", "--", "testserver", "tally", "http://web/", str(count),
                 "--rate", str(args.rate), "--timeout", "2s")
        result.update(json.loads(out))

    loader = threading.Thread(target=load)
    began = time.monotonic()
    loader.start()
    time.sleep(seconds / 2)
    middle = memory()
    deleted = time.monotonic() - began
    kubectl("-n", "gefyra", "delete", "pod", devcluster.stowaway_pod()["metadata"]["name"], "--wait=false")
    loader.join(timeout=seconds * 2 + 120)
    end = memory()
    gefyra("down")
    kubectl("delete", "namespace", NS, "--wait=false", check=False)

    failed_at = result.get("failed_at") or []
    window = (max(failed_at) - min(failed_at)) if failed_at else 0.0
    outside = [t for t in failed_at if not deleted - 1 <= t <= deleted + 60]
    report = {
        "requests": count, "rate_per_s": args.rate, "minutes": args.minutes,
        "answered": sum(n for per in (result.get("answers") or {}).values() for n in per.values()),
        "failed": result.get("failed"), "failed_outside_the_recovery": len(outside),
        "stowaway_deleted_at_s": round(deleted, 1),
        "recovery_window_s": round(window, 1),
        "first_failure_after_delete_s": round(min(failed_at) - deleted, 1) if failed_at else None,
        "p50_ms": result.get("p50_ms"), "p99_ms": result.get("p99_ms"), "max_ms": result.get("max_ms"),
        # The first pod's at the start and before its deletion; its successor's at the end.
        "memory_start_mib": start, "memory_before_delete_mib": middle, "memory_end_mib": end,
    }
    (REPO / "bench" / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if outside:
        sys.exit(f"{len(outside)} requests failed outside the recovery window")


if __name__ == "__main__":
    main()
