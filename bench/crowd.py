"""Many developers on one cluster side, for `make bench-scale` (bench/scale.py runs it first, on the
cluster without fake pods; `python bench/crowd.py` runs it alone):

- twenty personal bridges on one workload, each by its own client (`gefyra up` with its own client
  id, a local container, `--match-header-exact x-dev:devN`): the time of the twentieth bridge to
  its first matching answer and of an unbridge of one of twenty to the cluster answering its
  requests again, the router's reload for each (as its agent logs it: from the configuration's
  arrival to nginx's new workers serving it, with twenty bridges' routes), the
  latency that requests the cluster answers pay for the router (p50/p99 against the same requests
  before any bridge) and that matched ones take to a local container, the router's memory, and
  what the operator costs at rest with twenty bridges standing (API requests per minute, CPU);
- fifty clients on one server end: one full client (`gefyra up`) whose cargo pings the server end
  all along, and 49 lightweight ends (wireguard-go in a network namespace each, registered as a
  GefyraClient with a fresh key: a real tunnel without a container) joining one after the other:
  the join time of each, the packets the talking client lost meanwhile, the server end's memory
  and CPU, a lightweight end's memory and cargo's.

Prints the figures as JSON; bench/scale.py puts them into bench/scale.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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
    operator_stats,
    ping_counts,
    router_pods,
    sh,
    until,
    workloads,
)
from gefyra.core.model.crd import client_body  # noqa: E402
from gefyra.core.model.settings import SHARED_DEFAULTS  # noqa: E402
from gefyra.plugins.wireguard.server import TUNNEL_SERVER_ADDRESS as SERVER_TUNNEL_IP  # noqa: E402
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


def _last_reload_ms() -> int:
    """How long the routers' last reload took (the slowest pod's), as their agents log it: from the
    configuration's arrival to nginx's new workers serving it."""
    taken = []
    for pod in router_pods():
        lines = [line for line in kubectl("-n", "gefyra", "logs", pod).splitlines() if " applied in " in line]
        if lines:
            taken.append(int(lines[-1].split(" applied in ")[1].split()[0]))
    return max(taken, default=-1)


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
        found["router_reload_ms_with_all"] = _last_reload_ms()
        unmatched, first, last = (latency(CALLER, "http://web/", requests),
                                  latency(CALLER, "http://web/", requests, "x-dev: dev1"),
                                  latency(CALLER, "http://web/", requests, f"x-dev: dev{count}"))
        found |= {"plain_p50_ms": plain[0], "plain_p99_ms": plain[1],
                  "unmatched_p50_ms": unmatched[0], "unmatched_p99_ms": unmatched[1],
                  "unmatched_p50_overhead_ms": round(unmatched[0] - plain[0], 3),
                  "unmatched_p99_overhead_ms": round(unmatched[1] - plain[1], 3),
                  "matched_first_p50_ms": first[0], "matched_first_p99_ms": first[1],
                  "matched_last_p50_ms": last[0], "matched_last_p99_ms": last[1]}
        routers = router_pods()
        kubectl_exec = [str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", "gefyra", "exec"]
        found["router_mib"] = [round(container_rss_mib([*kubectl_exec, pod, "--"]), 1) for pod in routers]
        before, started = operator_stats(), time.monotonic()
        time.sleep(rest)
        after, took = operator_stats(), time.monotonic() - started
        found |= {"operator_api_requests_per_min": round((after["api_requests"] - before["api_requests"]) * 60 / took, 1),
                  "operator_cpu_percent": round(100 * (after["cpu_seconds"] - before["cpu_seconds"]) / took, 2),
                  "operator_mib": after["resident_mib"]}
        found["unbridge_one_of_all_to_cluster_answer_s"] = round(
            _switched(lambda: gefyra("unbridge", "--all", env=_env(count)), "hello from web-", f"x-dev: dev{count}"), 3)
        time.sleep(1)
        found["router_reload_ms_one_off"] = _last_reload_ms()
    finally:
        for i in range(1, count + 1):
            try:
                gefyra("down", env=_env(i))
            except RuntimeError as exc:  # the others still go
                print(f"down of {PREFIX}{i}: {exc}", file=sys.stderr)
    found["goals"] = {
        f"router reload with {count} bridges at most 1 s": 0 <= found["router_reload_ms_with_all"] <= 1000,
        f"unmatched p50 overhead at most +0.2 ms with {count} bridges": found["unmatched_p50_overhead_ms"] <= 0.2}
    return found


WIREGUARD_GO = next(iter(sorted((Path.home() / ".cache" / "gefyra-devcluster").glob("images-coredns-*/wireguard-go"))),
                    Path("wireguard-go"))
#: The lightweight ends' network namespaces get 10.253.N.0/30 links to this machine (the node routes
#: its answers back through here): nothing leaves the machine.
LIGHT_LINKS = "10.253"


class LightEnd:
    """A client's local end without a container: a GefyraClient registered with a fresh key, and
    wireguard-go in a network namespace of its own, linked to this machine by a veth pair."""

    def __init__(self, i: int) -> None:
        self.i, self.name = i, f"{PREFIX}light-{i}"
        self.netns, self.iface = f"gfyl{i}", f"gfyl{i}"
        self.key = sh("wg", "genkey").strip()
        self.public = sh("wg", "pubkey", stdin=self.key + "\n").strip()
        self.process: subprocess.Popen[bytes] | None = None

    def join(self, endpoint: str) -> float:
        """Registers, waits for the operator's answer, starts the tunnel: seconds until its first
        handshake with the server end has completed (the server end knows its key: it is in)."""
        started = time.monotonic()
        devcluster.apply(json.dumps(client_body(self.name, self.public)))

        def status() -> dict[str, Any]:
            found: dict[str, Any] = devcluster.kubectl_json("-n", "gefyra", "get", "gefyraclient", self.name
                                                            ).get("status") or {}
            return found

        until(lambda: status().get("phase") == "Active", 60)
        found = status()
        host, ns = f"{LIGHT_LINKS}.{self.i}.1", f"{LIGHT_LINKS}.{self.i}.2"
        sh("ip", "netns", "add", self.netns)
        sh("ip", "link", "add", f"gfyl{self.i}h", "type", "veth", "peer", "name", "eth0", "netns", self.netns)
        sh("ip", "address", "add", f"{host}/30", "dev", f"gfyl{self.i}h")
        sh("ip", "link", "set", f"gfyl{self.i}h", "up")
        for command in (["ip", "address", "add", f"{ns}/30", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                        ["ip", "link", "set", "lo", "up"], ["ip", "route", "add", "default", "via", host]):
            sh("ip", "netns", "exec", self.netns, *command)
        self._start_wireguard()
        key_file = Path(f"/run/gefyra-crowd-{self.i}.key")
        key_file.write_text(self.key + "\n")
        key_file.chmod(0o600)
        try:
            sh("ip", "netns", "exec", self.netns, "wg", "set", self.iface, "private-key", str(key_file),
                "peer", found["serverPublicKey"], "endpoint", endpoint, "allowed-ips", f"{SERVER_TUNNEL_IP}/32",
                "persistent-keepalive", "25")
        finally:
            key_file.unlink()
        address = found["address"].split("/")[0]
        sh("ip", "netns", "exec", self.netns, "ip", "address", "add", f"{address}/32", "dev", self.iface)
        sh("ip", "netns", "exec", self.netns, "ip", "link", "set", self.iface, "up")
        sh("ip", "netns", "exec", self.netns, "ip", "route", "add", f"{SERVER_TUNNEL_IP}/32", "dev", self.iface)
        until(self._handshaken, 30)  # persistent-keepalive starts one at once
        return time.monotonic() - started

    def _start_wireguard(self, attempts: int = 3) -> None:
        """wireguard-go in the namespace, until its control socket answers (now and then it fails
        to make that socket: then again)."""
        for attempt in range(attempts):
            Path("/run/wireguard").mkdir(parents=True, exist_ok=True)
            self.process = subprocess.Popen(["ip", "netns", "exec", self.netns, str(WIREGUARD_GO), "-f", self.iface],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            env={"GOMAXPROCS": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            try:
                until(lambda: subprocess.run(["ip", "netns", "exec", self.netns, "wg", "show", self.iface],
                                             capture_output=True).returncode == 0, 5)
                return
            except TimeoutError:
                self.process.kill()
                self.process.wait()
                if attempt == attempts - 1:
                    raise

    def _handshaken(self) -> bool:
        out = sh("ip", "netns", "exec", self.netns, "wg", "show", self.iface, "latest-handshakes")
        return any(int(line.split()[1]) > 0 for line in out.splitlines() if len(line.split()) == 2)

    def rss_mib(self) -> float:
        if self.process is None:
            return 0.0
        return devcluster.rss_mib([int(pid) for pid in sh("ip", "netns", "pids", self.netns).split()])

    def leave(self) -> None:
        kubectl("-n", "gefyra", "delete", "gefyraclient", self.name, "--wait=false", check=False)
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", f"gfyl{self.i}h"], capture_output=True)


def _stowaway_usage() -> tuple[float, float]:
    """The server end's container: resident MiB of its processes, and their CPU seconds so far."""
    pids = devcluster.container_pids(devcluster.stowaway_pod(), "stowaway")
    return round(devcluster.rss_mib(pids), 1), devcluster.cpu_seconds(pids)


def clients(count: int = 50) -> dict[str, Any]:
    """``count`` clients on one server end: one full client (`gefyra up`, its cargo pings the server
    end's tunnel address 20 times a second all along), the others lightweight ends joining one
    after the other. Join time of each, packets the talking client lost, the server end's memory
    and CPU, a lightweight end's memory and cargo's."""
    gefyra("up")
    cargo = next(n for n in sh("docker", "ps", "--format", "{{.Names}}").split() if n.startswith("gefyra-cargo-"))
    endpoint = f"{devcluster.node_ip()}:{SHARED_DEFAULTS['port']}"
    idle_mib, cpu_before = _stowaway_usage()
    ends = [LightEnd(i) for i in range(1, count)]
    pinger = subprocess.Popen(["docker", "exec", cargo, "ping", "-q", "-i", "0.05", SERVER_TUNNEL_IP],
                              stdout=subprocess.PIPE, text=True)
    found: dict[str, Any] = {"clients": count}
    # Docker's FORWARD policy drops what it does not know: the lightweight ends' links may pass.
    forwarding = [["FORWARD", "-i", "gfyl+", "-j", "ACCEPT"], ["FORWARD", "-o", "gfyl+", "-j", "ACCEPT"]]
    for rule in forwarding:
        sh("iptables", "-I", *rule)
    try:
        time.sleep(1)
        joins = [end.join(endpoint) for end in ends]
        time.sleep(1)
        subprocess.run(["docker", "exec", cargo, "sh", "-c", 'for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = ping ] '
                        '&& kill -INT "${p#/proc/}"; done 2>/dev/null; exit 0'], capture_output=True)  # no pkill there
        out, _ = pinger.communicate(timeout=30)
        sent, received = ping_counts(out)
        busy_mib, cpu_after = _stowaway_usage()
        time.sleep(30)  # at rest: keepalives only
        rest_mib, cpu_rest = _stowaway_usage()
        found |= {"join_s_first": round(joins[0], 2), "join_s_last": round(joins[-1], 2),
                  "join_s_median": round(statistics.median(joins), 2),
                  "ping_sent": sent, "ping_lost": sent - received,
                  "stowaway_mib_before": idle_mib, "stowaway_mib_after_joins": busy_mib, "stowaway_mib_at_rest": rest_mib,
                  "stowaway_cpu_s_during_joins": round(cpu_after - cpu_before, 2),
                  "stowaway_cpu_percent_at_rest": round(100 * (cpu_rest - cpu_after) / 30, 2),
                  "light_end_mib": round(statistics.median(end.rss_mib() for end in ends), 1),
                  "cargo_mib": round(container_rss_mib(["docker", "exec", cargo]), 1)}
    finally:
        pinger.kill()
        for end in ends:
            end.leave()
        for rule in forwarding:
            subprocess.run(["iptables", "-D", *rule], capture_output=True)
    found["goals"] = {"0 packets lost by a talking client while the others join": found.get("ping_lost") == 0,
                      "stowaway at most 100 MiB": max(found.get("stowaway_mib_after_joins", 1e9),
                                                      found.get("stowaway_mib_at_rest", 1e9)) <= 100}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["bridges", "clients"])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--bridges", type=int, default=20)
    args = parser.parse_args()
    found = {}
    if args.only != "clients":
        found["bridges"] = bridges(args.bridges)
    if args.only != "bridges":
        found["clients"] = clients(args.clients)
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
