"""gefyra's benchmarks on the development cluster: every figure next to a baseline measured in the
same run, reported as a ratio (or a difference), never asserted. Writes bench/results.json,
bench/RESULTS.md and bench/results.png.

    python bench/run.py [--quick] [--reps N]

--quick: one repetition, three clients, targets not judged, files in bench/.work/ (the test suite
runs it so that the benchmarks keep working).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.from_thread
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gefyra.client.session import Gefyra  # noqa: E402
from gefyra.core.model.settings import Settings  # noqa: E402
from tests.e2e import devcluster  # noqa: E402
from tests.e2e.devcluster import TEST_IMAGE, kubectl  # noqa: E402

RESULTS = REPO / "bench"
NS = "gfy-bench"
LOCAL = "gfy-bench-local"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"  # Debian's client builds
GEFYRA = [sys.executable, "-m", "gefyra", "--kubeconfig", str(devcluster.KUBECONFIG), "-q"]


@dataclasses.dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None
    target: str
    ratio: float | None = None
    delta: float | None = None
    meets_target: bool | None = None
    p10: float | None = None
    p90: float | None = None


def sh(*command: str, env: dict[str, str] | None = None, check: bool = True, stdin: str | None = None) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, env={**os.environ, **(env or {})},
                            timeout=600)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


def gefyra(*args: str, env: dict[str, str] | None = None) -> str:
    return sh(*GEFYRA, *args, env=env)


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def until(fn: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise TimeoutError(fn)
        time.sleep(0.05)


def stats(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return statistics.median(ordered), pick(0.1), pick(0.9)


def ratio_figure(name: str, samples: list[float], baseline: list[float], limit: float, unit: str = "s",
                 at_least: bool = False) -> Figure:
    """Median of ``samples`` against the median of ``baseline``; the target is a ratio of at most
    ``limit`` (a time), or of at least ``limit`` with ``at_least`` (a rate)."""
    value, p10, p90 = stats(samples)
    base = statistics.median(baseline)
    ratio = value / base
    target, met = (f">= {limit}x baseline", ratio >= limit) if at_least else (f"<= {limit}x baseline", ratio <= limit)
    return Figure(name, round(value, 3), unit, round(base, 3), target, ratio=round(ratio, 2),
                  meets_target=met, p10=round(p10, 3), p90=round(p90, 3))


def delta_figure(name: str, value: float, baseline: float, limit: float, unit: str = "ms") -> Figure:
    delta = value - baseline
    return Figure(name, round(value, 3), unit, round(baseline, 3), f"<= +{limit} {unit}", delta=round(delta, 3),
                  meets_target=delta <= limit)


def answers(url: str, *headers: str) -> str:
    return sh(str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec", "caller", "--",
              "testserver", "get", url, *[a for h in headers for a in ("-H", h)], check=False)


def lost_under_load(bridge_args: list[str], count: int, rate: float) -> int:
    """Requests to the 2-replica `shop` that fail while it is bridged and unbridged under a steady rate."""
    load = subprocess.Popen([str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec",
                             "caller", "--", "testserver", "tally", "http://shop/", str(count), "--rate", str(rate)],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/shop", "-p", "8080:8080", *bridge_args)
    time.sleep(1)
    gefyra("unbridge", "--all")
    out, _ = load.communicate(timeout=count / rate + 60)
    return int(json.loads(out)["failed"])


def latency(where: list[str], url: str, count: int, *headers: str) -> tuple[float, float]:
    """p50 and p99 in ms of ``count`` requests, once 50 in a row have been answered: kube-proxy
    follows a change of a Service's endpoints (a router gone, a pod replaced) a moment later."""
    until(lambda: subprocess.run([*where, "testserver", "latency", url, "50", *[a for h in headers for a in ("-H", h)]],
                                 capture_output=True, timeout=120).returncode == 0, timeout=60)
    out = sh(*where, "testserver", "latency", url, str(count), *[a for h in headers for a in ("-H", h)])
    fields = dict(part.split("=") for part in out.split())
    return float(fields["p50"]), float(fields["p99"])


def router_pods() -> list[str]:
    """The routers' pods that run and are not on their way out."""
    pods = devcluster.kubectl_json("-n", "gefyra", "get", "pods", "-l", "gefyra.dev/router")["items"]
    return [p["metadata"]["name"] for p in pods
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def operator_stats() -> dict[str, Any]:
    """The operator's /stats (API requests, watch events, CPU seconds, memory), asked from the caller pod."""
    out = sh(str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec", "caller", "--",
             "testserver", "get", "http://gefyra-operator.gefyra:8080/stats")
    found: dict[str, Any] = json.loads(out)
    return found


def ping_counts(summary: str) -> tuple[int, int]:
    """(sent, received) from ping's summary."""
    sent = int(summary.split("packets transmitted")[0].split()[-1])
    received = next(int(part.split()[0]) for part in summary.split(",") if "received" in part)
    return sent, received


def container_rss_mib(exec_prefix: list[str]) -> float:
    """Sum of VmRSS of every process in a container (the measuring shell left out)."""
    script = 'for f in /proc/[0-9]*/status; do [ "${f#/proc/}" = "$$/status" ] || grep VmRSS "$f"; done 2>/dev/null; exit 0'
    out = sh(*exec_prefix, "sh", "-c", script)
    return sum(int(line.split()[1]) for line in out.splitlines()) / 1024


def iperf_mbits(client: list[str], server_ip: str, seconds: int, port: int = 5201) -> float:
    """TCP throughput from an iperf3 client (run by ``client``) to an iperf3 server that is just
    starting, in Mbit/s."""
    for _ in range(50):
        result = subprocess.run([*client, "iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds), "-J"],
                                capture_output=True, text=True, timeout=seconds + 60)
        if result.returncode == 0:
            return float(json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6
        time.sleep(0.1)
    raise RuntimeError(f"iperf3 from {' '.join(client)}: {result.stdout.strip()} {result.stderr.strip()}")


def workloads(replicas: int) -> None:
    """A fresh namespace NS with the test server `web` (behind its Service) and the caller pod."""
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", "--timeout=120s")  # an earlier run's
    kubectl("create", "namespace", NS)
    devcluster.apply(devcluster.http_workload("web", NS, replicas=replicas))
    devcluster.apply(devcluster.client_pod("caller", NS))
    kubectl("-n", NS, "rollout", "status", "deploy/web", "--timeout=120s")
    kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")


def setup() -> None:
    workloads(replicas=1)
    # Same content, another image id: the pod's status then names the image it really runs.
    subprocess.run(f"echo 'FROM {TEST_IMAGE}' | {DOCKER} build -q --pull=false --label gefyra.bench=1 "
                   f"-t gefyra/testserver:bench - >/dev/null", shell=True, check=True)
    subprocess.run(f"{DOCKER} save gefyra/testserver:bench | ctr --address /run/gefyra-devcluster/containerd.sock "
                   f"-n k8s.io images import - >/dev/null", shell=True, check=True)


def fresh_web_pod() -> None:
    """Replaces the web pod and waits until the new one serves through the Service."""
    old = kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o", "name").split()
    kubectl("-n", NS, "delete", "pods", "-l", "app=web", "--wait=true")

    def new_one_ready() -> bool:
        pods = kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o",
                       "jsonpath={range .items[*]}pod/{.metadata.name} {.status.containerStatuses[0].ready}{\"\\n\"}{end}")
        rows = [line.split() for line in pods.splitlines() if line.strip()]
        return len(rows) == 1 and rows[0][0] not in old and rows[0][1] == "true"

    until(new_one_ready)
    until(lambda: answers("http://web/").startswith("hello from web-"))


def trivial_pod_ready() -> float:
    manifest = devcluster.client_pod("trivial", NS)
    seconds = timed(lambda: (devcluster.apply(manifest),
                             kubectl("-n", NS, "wait", "--for=condition=Ready", "pod/trivial", "--timeout=60s")))
    kubectl("-n", NS, "delete", "pod", "trivial", "--grace-period=0", "--force", check=False)
    return seconds


def patch_pod_image_ready(image: str) -> float:
    pod = kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")

    def patch_and_wait() -> None:
        kubectl("-n", NS, "patch", "pod", pod, "-p", json.dumps({"spec": {"containers": [{"name": "server", "image": image}]}}))
        until(lambda: kubectl("-n", NS, "get", "pod", pod, "-o",
                              "jsonpath={.status.containerStatuses[0].image} {.status.containerStatuses[0].ready}")
              .endswith(f"{image} true"))

    return timed(patch_and_wait)


def bench(reps: int, clients: int, quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    gefyra("down")
    setup()

    # up from nothing / up again
    cold, again, pods = [], [], []
    for _ in range(reps):
        pods.append(trivial_pod_ready())
        gefyra("down")
        cold.append(timed(lambda: gefyra("up")))
        again.append(timed(lambda: gefyra("up")))
    figures.append(ratio_figure("up from nothing", cold, pods, 3))
    figures.append(ratio_figure("up when already up", again, cold, 0.2))

    # run to the first answer from a cluster Service
    runs, plain = [], []
    for _ in range(reps):
        sh("docker", "rm", "-f", LOCAL, check=False)

        def run_and_answer() -> None:
            gefyra("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", NS, "-d", "-e", "MESSAGE=LOCAL")
            until(lambda: sh("docker", "exec", LOCAL, "testserver", "get", "http://web/", check=False) != "")

        runs.append(timed(run_and_answer))
        plain.append(timed(lambda: sh("docker", "run", "--rm", "--entrypoint", "echo", TEST_IMAGE, "first output")))
    figures.append(ratio_figure("run to first answer from a cluster Service", runs, plain, 1.5))

    # bridge / unbridge against patching one pod's image. kubelet delays a container's restart when
    # the same container spec exited before (back-off), so every measurement gets a fresh pod.
    # A global bridge goes through the router (no pod restarts); in place it swaps the container.
    bridges, unbridges, in_place, in_place_off, patches = [], [], [], [], []
    for _ in range(reps):
        fresh_web_pod()
        patches.append(patch_pod_image_ready("gefyra/testserver:bench"))
        for args, on, off in (([], bridges, unbridges), (["--in-place"], in_place, in_place_off)):
            fresh_web_pod()
            on.append(timed(lambda args=args: (
                gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080", *args),
                until(lambda: answers("http://web/").startswith("hello from LOCAL")))))
            off.append(timed(lambda: (gefyra("unbridge", "--all"),
                                      until(lambda: answers("http://web/").startswith("hello from web-")))))
    figures.append(ratio_figure("bridge to first request answered locally", bridges, patches, 2))
    figures.append(ratio_figure("unbridge to the original answering again", unbridges, patches, 2))
    figures.append(ratio_figure("bridge in place to first request answered locally", in_place, patches, 2))
    figures.append(ratio_figure("unbridge in place to the original answering again", in_place_off, patches, 2))

    # latencies
    count = "50" if quick else "500"
    caller = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec", "caller", "--"]
    fresh_web_pod()
    orig = latency(caller, "http://web/", int(count))
    gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080")
    until(lambda: answers("http://web/").startswith("hello from LOCAL"))
    bridged = latency(caller, "http://web/", int(count))
    gefyra("unbridge", "--all")
    until(lambda: answers("http://web/").startswith("hello from web-"))
    fresh_web_pod()
    gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080", "--in-place")
    until(lambda: answers("http://web/").startswith("hello from LOCAL"))
    bridged_in_place = latency(caller, "http://web/", int(count))
    carrier_pod = kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
    rss_carrier = container_rss_mib([str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS,
                                     "exec", carrier_pod, "-c", "server", "--"])
    gefyra("unbridge", "--all")
    until(lambda: answers("http://web/").startswith("hello from web-"))
    figures.append(delta_figure("request latency through a bridge, p50", bridged[0], orig[0], 1.5))
    figures.append(delta_figure("request latency through a bridge, p99", bridged[1], orig[1], 5))
    figures.append(delta_figure("request latency through a bridge in place, p50", bridged_in_place[0], orig[0], 1.5))
    figures.append(delta_figure("request latency through a bridge in place, p99", bridged_in_place[1], orig[1], 5))
    # in turns, so that a busy moment of the machine does not land on one side only
    local_p50s, pod_p50s = [], []
    for _ in range(reps):
        local_p50s.append(latency(["docker", "exec", LOCAL], "http://web/", int(count) // reps)[0])
        pod_p50s.append(latency(caller, "http://web/", int(count) // reps)[0])
    figures.append(delta_figure("local container -> cluster Service, p50", statistics.median(local_p50s),
                                statistics.median(pod_p50s), 1.5))

    # personal bridges: to the first matching request answered locally and back, against the same
    # baseline as the global bridge; the latency of the requests the cluster keeps answering (against
    # no bridge at all) and of the matching ones (against a global bridge); requests lost while a
    # 2-replica workload is bridged and unbridged under a steady rate, personally (the router) and
    # globally (carrier in place: the container restarts)
    mine = "x-dev: bench"
    personal, personal_off = [], []
    for _ in range(reps):
        personal.append(timed(lambda: (gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080",
                                              "--match-header-exact", "x-dev:bench"),
                                       until(lambda: answers("http://web/", mine).startswith("hello from LOCAL")))))
        personal_off.append(timed(lambda: (gefyra("unbridge", "--all"),
                                           until(lambda: answers("http://web/", mine).startswith("hello from web-")))))
    figures.append(ratio_figure("personal bridge to first matching request answered locally", personal, patches, 2))
    figures.append(ratio_figure("personal unbridge to the cluster answering it again", personal_off, patches, 2))
    unbridged = latency(caller, "http://web/", int(count))
    gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080", "--match-header-exact", "x-dev:bench")
    unmatched = latency(caller, "http://web/", int(count))
    matched = latency(caller, "http://web/", int(count), mine)
    router = router_pods()[0]
    rss_router = container_rss_mib([str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", "gefyra",
                                    "exec", router, "--"])
    gefyra("unbridge", "--all")
    figures.append(delta_figure("unmatched request latency beside a personal bridge, p50", unmatched[0], unbridged[0], 1))
    figures.append(delta_figure("unmatched request latency beside a personal bridge, p99", unmatched[1], unbridged[1], 5))
    figures.append(delta_figure("matched request latency, p50 (baseline: global bridge)", matched[0], bridged[0], 1))
    figures.append(delta_figure("matched request latency, p99 (baseline: global bridge)", matched[1], bridged[1], 5))
    devcluster.apply(devcluster.http_workload("shop", NS, replicas=2))
    kubectl("-n", NS, "rollout", "status", "deploy/shop", "--timeout=120s")
    until(lambda: answers("http://shop/").startswith("hello from shop-"))
    load = 100 if quick else 400
    lost_personal = lost_under_load(["--match-header-exact", "x-dev:bench"], load, 40)
    lost_global = lost_under_load([], load, 40)
    lost_in_place = lost_under_load(["--in-place"], load, 40)
    figures.append(Figure(f"requests lost of {load} (2 replicas, 40/s) during personal bridge + unbridge",
                          lost_personal, "requests", None, "0", meets_target=lost_personal == 0))
    figures.append(Figure(f"requests lost of {load} (2 replicas, 40/s) during global bridge + unbridge",
                          lost_global, "requests", None, "0", meets_target=lost_global == 0))
    figures.append(Figure(f"requests lost of {load} (2 replicas, 40/s) during global bridge + unbridge (in place)",
                          lost_in_place, "requests", None, "-"))

    # memory
    settings_cargo = json.loads(gefyra("status", "-o", "json"))["cargo"]["name"]
    # The pod's containers measured from the node (their images have no shell, or processes that
    # come and go while a shell inside would list them).
    pod = devcluster.stowaway_pod()
    rss_stowaway, rss_operator = (devcluster.rss_mib(devcluster.container_pids(pod, c)) for c in ("stowaway", "operator"))
    for name, prefix, limit in (("cargo", ["docker", "exec", settings_cargo], 40),
                                ("stowaway", None, 40), ("carrier", None, 15), ("a router (each of 2)", [], 20),
                                ("operator", None, 120)):
        rss = ({"stowaway": rss_stowaway, "carrier": rss_carrier, "operator": rss_operator}[name] if prefix is None
               else rss_router if not prefix else container_rss_mib(prefix))
        figures.append(Figure(f"resident memory of {name}", round(rss, 1), "MiB", None, f"<= {limit} MiB",
                              meets_target=rss <= limit))

    # throughput: local container -> cluster pod through the tunnel, against raw wireguard-go
    # between two network namespaces (same binary, same MTU), measured in turns
    seconds = 2 if quick else 5
    pod_ip = kubectl("-n", NS, "get", "pod", "caller", "-o", "jsonpath={.status.podIP}")
    mtu = Settings().tunnel_mtu
    tunnel, raw = [], []
    for _ in range(reps):
        sh(*caller, "iperf3", "-s", "-1", "-D")
        tunnel.append(iperf_mbits(["docker", "exec", LOCAL], pod_ip, seconds))
        raw.append(float(sh("bash", str(RESULTS / "wireguard_netns.sh"), str(mtu), str(seconds))) / 1e6)
    figures.append(ratio_figure("throughput local container -> cluster pod", tunnel, raw, 0.8, "Mbit/s",
                                at_least=True))

    # many clients on one stowaway; a joining one must not disturb the others
    extra = [f"bench-{i}" for i in range(1, clients)]
    for client_id in extra[:-1]:
        gefyra("up", env={"GEFYRA_CLIENT_ID": client_id})
    pinger = subprocess.Popen(["docker", "exec", settings_cargo, "ping", "-q", "-i", "0.05", "-w", "8", "198.18.0.1"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    gefyra("up", env={"GEFYRA_CLIENT_ID": extra[-1]})
    out, _ = pinger.communicate(timeout=30)
    sent, received = ping_counts(out)
    figures.append(Figure(f"packets of a connected client lost while client {1 + len(extra)} joins", sent - received,
                          "packets", None, "0", meets_target=sent == received))
    for client_id in extra:
        gefyra("down", env={"GEFYRA_CLIENT_ID": client_id})

    figures += server_ends(reps, quick)
    figures += transports(reps, quick)

    # CLI start
    versions = [timed(lambda: gefyra("version", "--client")) for _ in range(reps * 2)]
    helps = [timed(lambda: sh(*GEFYRA, "--help")) for _ in range(reps * 2)]
    python = [timed(lambda: sh(sys.executable, "-c", "pass")) for _ in range(reps * 2)]
    figures.append(ratio_figure("gefyra version --client wall time", versions, python, 8))
    figures.append(ratio_figure("gefyra --help wall time", helps, python, 8))

    gefyra("down")
    kubectl("delete", "namespace", NS, "--wait=false", check=False)
    return figures


def server_ends(reps: int, quick: bool) -> list[Figure]:
    """The tunnel's two server ends in one run: the default (user space, no privilege) against the
    former kernel path (wireguard-go on a tun device, NAT by iptables), each installed afresh:
    throughput local -> pod, latency through a bridge and to a Service, stowaway's memory idle and
    after the throughput runs, its CPU time per GB moved. The default end is installed again after."""
    seconds, count = (2, 100) if quick else (5, 400)
    caller = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec", "caller", "--"]
    pod_ip = kubectl("-n", NS, "get", "pod", "caller", "-o", "jsonpath={.status.podIP}")
    found: dict[str, dict[str, Any]] = {}
    for end in ("kernel", "user-space"):
        env = {"GEFYRA_WIREGUARD_SERVER": end}
        gefyra("down")
        gefyra("uninstall")
        gefyra("up", env=env)
        sh("docker", "rm", "-f", LOCAL, check=False)
        gefyra("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", NS, "-d", "-e", "MESSAGE=LOCAL")
        until(lambda: sh("docker", "exec", LOCAL, "testserver", "get", "http://web/", check=False) != "")
        pids = devcluster.container_pids(devcluster.stowaway_pod(), "stowaway")
        time.sleep(3)
        idle, cpu = devcluster.rss_mib(pids), devcluster.cpu_seconds(pids)
        mbits = []
        for _ in range(reps):
            sh(*caller, "iperf3", "-s", "-1", "-D")
            mbits.append(iperf_mbits(["docker", "exec", LOCAL], pod_ip, seconds))
        gigabytes = sum(mbits) * seconds / 8 / 1000
        cpu_per_gb = (devcluster.cpu_seconds(pids) - cpu) / gigabytes
        pod = devcluster.stowaway_pod()
        restarts = devcluster.container_state(pod, "stowaway")["restartCount"]
        if restarts:  # the kernel path's wireguard-go can outgrow its memory limit under iperf3
            print(f"{end} server end: stowaway restarted {restarts} times during the throughput runs", flush=True)
        pids = devcluster.container_pids(pod, "stowaway")
        loaded = devcluster.rss_mib(pids)
        time.sleep(10)  # the user-space end hands memory back once the tunnel has been quiet for 5 s
        settled = devcluster.rss_mib(pids)
        service = latency(["docker", "exec", LOCAL], f"http://web.{NS}/", count)
        gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080")
        until(lambda: answers("http://web/").startswith("hello from LOCAL"))
        bridged = latency(caller, "http://web/", count)
        gefyra("unbridge", "--all")
        found[end] = {"mbits": mbits, "idle": idle, "loaded": loaded, "settled": settled, "cpu_per_gb": cpu_per_gb,
                      "service": service, "bridged": bridged, "restarts": restarts}
    gefyra("down")
    gefyra("uninstall")
    gefyra("up")
    new, old = found["user-space"], found["kernel"]
    name = "user-space server end (baseline: kernel path)"
    return [
        ratio_figure(f"throughput local container -> cluster pod, {name}", new["mbits"], old["mbits"], 0.8, "Mbit/s",
                     at_least=True),
        delta_figure(f"request latency through a bridge p50, {name}", new["bridged"][0], old["bridged"][0], 0.3),
        delta_figure(f"request latency through a bridge p99, {name}", new["bridged"][1], old["bridged"][1], 5),
        delta_figure(f"local container -> Service latency p50, {name}", new["service"][0], old["service"][0], 0.3),
        Figure(f"stowaway memory idle, {name}", round(new["idle"], 1), "MiB", round(old["idle"], 1), "-",
               delta=round(new["idle"] - old["idle"], 1)),
        Figure(f"stowaway memory right after the throughput runs, {name}", round(new["loaded"], 1), "MiB",
               round(old["loaded"], 1), "-", delta=round(new["loaded"] - old["loaded"], 1)),
        Figure(f"stowaway memory 10 s after the throughput runs, {name}", round(new["settled"], 1), "MiB",
               round(old["settled"], 1), "<= 40 MiB", delta=round(new["settled"] - old["settled"], 1),
               meets_target=new["settled"] <= 40),
        Figure(f"stowaway restarts during the throughput runs, {name}", new["restarts"], "restarts", old["restarts"],
               "0", meets_target=new["restarts"] == 0),
        Figure(f"stowaway CPU seconds per GB moved, {name} (the kernel path's NAT in interrupts is not counted)",
               round(new["cpu_per_gb"], 2), "s/GB", round(old["cpu_per_gb"], 2), "-",
               ratio=round(new["cpu_per_gb"] / old["cpu_per_gb"], 2)),
    ]


def port_forward_mbits(megabytes: int) -> float:
    """Throughput of a bare `kubectl port-forward` to the `web` pod: ``megabytes`` uploaded from
    this machine to its HTTP server (iperf3 cannot be used here: its server ends the data
    connection while the client still writes, and kubectl then drops the whole forward). The
    ceiling of any path through the Kubernetes API here."""
    import http.client

    pod = kubectl("-n", NS, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}")
    forward = subprocess.Popen([str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS,
                                "port-forward", f"pod/{pod}", "15280:8080"], stdout=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None
        forward.stdout.readline()  # "Forwarding from ...": it listens
        chunk, size = b"x" * (1 << 20), megabytes << 20
        connection = http.client.HTTPConnection("127.0.0.1", 15280, timeout=120)
        started = time.perf_counter()
        connection.putrequest("POST", "/upload")
        connection.putheader("Content-Length", str(size))
        connection.endheaders()
        for _ in range(megabytes):
            connection.send(chunk)
        answer = connection.getresponse().read().decode()
        seconds = time.perf_counter() - started
        if f"received={size}" not in answer:
            raise RuntimeError(f"upload through kubectl port-forward: {answer[:200]}")
        return size * 8 / seconds / 1e6
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def api_at_added_rtt(reps: int, seconds: int, pod_ip: str, caller: list[str]) -> list[float]:
    """Throughput over the API transport with 10 ms added each way in front of the API server (a
    user-space delay proxy, bench/delay_proxy.py, and a kubeconfig that points at it)."""
    proxy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("delay_proxy.py")), "16443",
                              f"{devcluster.node_ip()}:6443", "10"], stdout=subprocess.PIPE, text=True)
    config = yaml.safe_load(devcluster.KUBECONFIG.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:16443"
    delayed = RESULTS / ".work" / "delayed.kubeconfig"
    delayed.parent.mkdir(parents=True, exist_ok=True)
    delayed.write_text(yaml.safe_dump(config))
    slow = [*GEFYRA[:3], "--kubeconfig", str(delayed), "-q"]
    try:
        assert proxy.stdout is not None
        proxy.stdout.readline()  # "listening"
        sh(*slow, "up", "--transport", "api")
        sh("docker", "rm", "-f", LOCAL, check=False)
        sh(*slow, "run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", NS, "-d")
        until(lambda: sh("docker", "exec", LOCAL, "testserver", "get", "http://web/", check=False) != "")
        mbits = []
        for _ in range(reps):
            sh(*caller, "iperf3", "-s", "-1", "-D")
            mbits.append(iperf_mbits(["docker", "exec", LOCAL], pod_ip, seconds))
        sh(*slow, "down")
        return mbits
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def transports(reps: int, quick: bool) -> list[Figure]:
    """The tunnel's two transports in one run: WireGuard over UDP to the NodePort, and the same
    datagrams through the Kubernetes API (a port-forward to stowaway, held by the relay on this
    machine), each after `up --transport ...`: throughput local -> pod, latency through a bridge
    and to a Service; the baseline of the API's throughput is a bare `kubectl port-forward`."""
    seconds, count = (2, 100) if quick else (5, 400)
    caller = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec", "caller", "--"]
    pod_ip = kubectl("-n", NS, "get", "pod", "caller", "-o", "jsonpath={.status.podIP}")
    bare = [port_forward_mbits(50 if quick else 200) for _ in range(reps)]
    found: dict[str, dict[str, Any]] = {}
    for transport in ("udp", "api"):
        gefyra("down")
        gefyra("up", "--transport", transport)
        sh("docker", "rm", "-f", LOCAL, check=False)
        gefyra("run", "-i", TEST_IMAGE, "-N", LOCAL, "-n", NS, "-d", "-e", "MESSAGE=LOCAL")
        until(lambda: sh("docker", "exec", LOCAL, "testserver", "get", "http://web/", check=False) != "")
        mbits = []
        for _ in range(reps):
            sh(*caller, "iperf3", "-s", "-1", "-D")
            mbits.append(iperf_mbits(["docker", "exec", LOCAL], pod_ip, seconds))
        service = latency(["docker", "exec", LOCAL], f"http://web.{NS}/", count)
        gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080")
        until(lambda: answers("http://web/").startswith("hello from LOCAL"))
        bridged = latency(caller, "http://web/", count)
        gefyra("unbridge", "--all")
        # A personal bridge: its router keeps connections to the tunnel's server end alive, which
        # keeps the one through the tunnel open; one round trip of the tunnel per request.
        gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/web", "-p", "8080:8080",
               "--match-header-exact", "x-dev:a")
        until(lambda: answers("http://web/", "x-dev: a").startswith("hello from LOCAL"))
        personal = latency(caller, "http://web/", count, "x-dev: a")
        gefyra("unbridge", "--all")
        found[transport] = {"mbits": mbits, "service": service, "bridged": bridged, "personal": personal}
    gefyra("down")
    slow = api_at_added_rtt(reps, seconds, pod_ip, caller)
    gefyra("up")
    udp, api = found["udp"], found["api"]
    return [
        Figure("throughput local container -> cluster pod over the API transport at 20 ms added RTT (Telepresence "
               "publishes ~20 Mbit/s there)", round(statistics.median(slow), 1), "Mbit/s", 20.0, ">= 40 Mbit/s",
               ratio=round(statistics.median(slow) / 20, 2), meets_target=statistics.median(slow) >= 40),
        ratio_figure("throughput local container -> cluster pod over the API transport (baseline: bare kubectl "
                     "port-forward)", api["mbits"], bare, 0.7, "Mbit/s", at_least=True),
        ratio_figure("throughput local container -> cluster pod over UDP (baseline: API transport)", udp["mbits"],
                     api["mbits"], 1.0, "Mbit/s", at_least=True),
        delta_figure("request latency through a bridge p50, API transport (baseline: UDP)", api["bridged"][0],
                     udp["bridged"][0], 1.0),
        delta_figure("request latency through a bridge p99, API transport (baseline: UDP)", api["bridged"][1],
                     udp["bridged"][1], 5.0),
        delta_figure("request latency through a personal bridge p50 (its router keeps its connections alive), API "
                     "transport (baseline: UDP)", api["personal"][0], udp["personal"][0], 1.0),
        delta_figure("request latency through a personal bridge p99, API transport (baseline: UDP)",
                     api["personal"][1], udp["personal"][1], 5.0),
        delta_figure("local container -> Service latency p50, API transport (baseline: UDP)", api["service"][0],
                     udp["service"][0], 1.0),
    ]


def _switched(command: Callable[[], Any], prefix: str, *headers: str) -> float:
    """Seconds from the start of ``command`` to the first answer of `web` to the caller pod that
    starts with ``prefix`` (a watcher in the pod, polling every 10 ms from before the start)."""
    caller = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec", "caller", "--"]
    watcher = subprocess.Popen([*caller, "testserver", "watch", "http://web/", prefix,
                                *[a for h in headers for a in ("-H", h)]], stdout=subprocess.PIPE, text=True)
    time.sleep(1)  # polling by now
    started = time.time()
    command()
    out, _ = watcher.communicate(timeout=90)
    return float(out) - started


async def _connected(settings: Settings) -> Gefyra:
    """A session of gefyra's API with its cluster and engine connections open."""
    session = Gefyra(settings)
    await session.orchestrator.both()
    return session


def _absolute(name: str, samples: list[float], limit: float, unit: str = "s") -> Figure:
    value, p10, p90 = stats(samples)
    return Figure(name, round(value, 3), unit, None, f"<= {limit} {unit}", meets_target=value <= limit,
                  p10=round(p10, 3), p90=round(p90, 3))


def switch(reps: int, quick: bool) -> list[Figure]:
    """Personal bridges coming and going on one target, by two developers (two clients on this
    machine), each timed to the first answer from the right side; the router's cost for HTTP/2
    (h2c, and gRPC, which takes the same path: nginx's HTTP/2 proxy)."""
    other, other_local = {"GEFYRA_CLIENT_ID": "gfy-bench-b"}, LOCAL + "-b"
    gefyra("up")
    gefyra("up", env=other)
    for name, env, message in ((LOCAL, None, "LOCAL"), (other_local, other, "OTHER")):
        sh("docker", "rm", "-f", name, check=False)
        gefyra("run", "-i", TEST_IMAGE, "-N", name, "-n", NS, "-d", "-e", f"MESSAGE={message}", env=env)
    a, b = "x-dev: a", "x-dev: b"

    def bridge(local: str, header: str, env: dict[str, str] | None = None) -> None:
        gefyra("bridge", "-N", local, "-n", NS, "--target", "deploy/web", "-p", "8080:8080",
               "--match-header-exact", header.replace(": ", ":"), env=env)

    first, second, one_off, warm_off, last_off = [], [], [], [], []
    # The second developer's unbridge once more from a program that embeds gefyra and is connected
    # already (an IDE plugin, the MCP server): the switch without a command's Python start.
    with anyio.from_thread.start_blocking_portal() as portal:
        embedded = portal.call(_connected, Settings(kubeconfig=str(devcluster.KUBECONFIG), client_id=other["GEFYRA_CLIENT_ID"]))
        try:
            for _ in range(reps):
                until(lambda: not kubectl("-n", "gefyra", "get", "deploy", "-l", "gefyra.dev/router", "-o", "name"), 90)
                first.append(_switched(lambda: bridge(LOCAL, a), "hello from LOCAL", a))
                second.append(_switched(lambda: bridge(other_local, b, other), "hello from OTHER", b))
                one_off.append(_switched(lambda: gefyra("unbridge", "--all", env=other), "hello from web-", b))
                bridge(other_local, b, other)
                warm_off.append(_switched(lambda: portal.call(embedded.unbridge), "hello from web-", b))
                last_off.append(_switched(lambda: gefyra("unbridge", "--all"), "hello from web-", a))
        finally:
            portal.call(embedded.close)

    # HTTP/2 through the router: an h2c workload (its Service port says so), one connection, requests
    # one after the other; without a bridge, then beside a personal bridge (unmatched) and matched.
    devcluster.apply(devcluster.http_workload("api", NS, replicas=1))
    kubectl("-n", NS, "patch", "service", "api", "--type=json",
            "-p", '[{"op": "add", "path": "/spec/ports/0/appProtocol", "value": "kubernetes.io/h2c"}]')
    kubectl("-n", NS, "rollout", "status", "deploy/api", "--timeout=120s")
    caller = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", NS, "exec", "caller", "--"]
    count = "100" if quick else "1000"

    def h2c(*variant: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(sh(*caller, "testserver", "tally", "http://api/", count, "--h2c",
                                              *[x for v in variant for x in ("--variant", v)]))
        return found

    until(lambda: h2c()["failed"] == 0)
    plain = h2c()
    gefyra("bridge", "-N", LOCAL, "-n", NS, "--target", "deploy/api", "-p", "8080:8080", "--match-header-exact", "x-dev:a")
    unmatched, matched = h2c(), h2c(a)
    gefyra("unbridge", "--all")
    gefyra("down", env=other)
    return [
        _absolute("first personal bridge of a target to its first matching answer", first, 2),
        _absolute("second developer's bridge on the same target to its first matching answer", second, 1),
        _absolute("unbridge of one of two to the cluster answering its requests again", one_off, 0.5),
        _absolute("unbridge of one of two from a connected embedding program (no command start)", warm_off, 0.5),
        _absolute("unbridge of the last to the cluster answering its requests again", last_off, 2),
        delta_figure("h2c request latency beside a personal bridge (unmatched), p50", unmatched["p50_ms"],
                     plain["p50_ms"], 1),
        delta_figure("h2c request latency beside a personal bridge (unmatched), p99", unmatched["p99_ms"],
                     plain["p99_ms"], 5),
        delta_figure("h2c request latency through a personal bridge (matched, to the local container), p50",
                     matched["p50_ms"], plain["p50_ms"], 5),
    ]


def write(figures: list[Figure], quick: bool, out: Path) -> None:
    rows = [dataclasses.asdict(f) for f in figures]
    if quick:
        for row in rows:
            row["meets_target"] = None  # one repetition says nothing about a target
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| figure | value | baseline | ratio / delta | target | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        base = "-" if r["baseline"] is None else f"{r['baseline']} {r['unit']}"
        rel = f"{r['ratio']}x" if r["ratio"] is not None else (f"{r['delta']:+} {r['unit']}" if r["delta"] is not None else "-")
        met = {True: "yes", False: "**no**", None: "-"}[r["meets_target"]]
        lines.append(f"| {r['name']} | {r['value']} {r['unit']} | {base} | {rel} | {r['target']} | {met} |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    _chart(rows, out)


def _chart(rows: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["ratio"] is not None]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.barh([r["name"] for r in shown], [r["ratio"] for r in shown],
            color=["tab:green" if r["meets_target"] is not False else "tab:red" for r in shown])
    for i, r in enumerate(shown):
        if r["target"] != "-":  # a ratio without a target is shown for what it is
            limit = float(r["target"].split()[1].rstrip("x"))
            ax.plot([limit, limit], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.set_xlabel("ratio to the baseline measured in the same run (black: target)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)


#: The sections that run alone with --only (each also part of a full run).
SECTIONS: dict[str, Callable[[int, bool], list[Figure]]] = {"server-ends": server_ends, "switch": switch,
                                                              "transports": transports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, help="where the three files go (default: bench/, or bench/.work/ with "
                                                 "--quick or --only)")
    parser.add_argument("--only", choices=sorted(SECTIONS), help="one section alone (after a full run's setup)")
    args = parser.parse_args()
    reps, clients = (1, 3) if args.quick else (args.reps, 21)
    out = args.out or (RESULTS / ".work" if args.quick or args.only else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    if args.only:
        gefyra("down")
        setup()
        gefyra("up")
        figures = SECTIONS[args.only](reps, args.quick)
    else:
        figures = bench(reps, clients, args.quick)
        if not args.quick:  # (the test suite runs the quick one; `--only switch` alone is quick enough)
            figures += switch(reps, False)
    write(figures, args.quick, out)
    print((out / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
