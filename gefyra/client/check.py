"""`gefyra check`: what a user runs before `up`. Each check is one line: ok or not, and what to do.

- engine: the container engine answers;
- cluster: the API server answers, with the kubeconfig's context;
- rights: this identity may install the cluster side, or use an installed one (gefyra-user);
- images: gefyra's images are in the engine or its registry has them (seen from this machine);
- network: gefyra's container network overlaps neither the cluster's ranges nor this machine's
  routes (a VPN's, say): a packet for such an address would not go where it should;
- tunnel: with the cluster side installed, a throwaway client connects through the endpoint `up`
  would use (UDP to the NodePort, the tunnel's handshake, a packet through), and the largest packet
  that passes the path whole is measured against the tunnel's MTU.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from pathlib import Path

from gefyra import errors
from gefyra.core.model.results import CheckResult

#: What a throwaway client of `check` is called: this machine's client id with this added.
CHECK_SUFFIX = "-check"


def overlapping(network: str, ranges: Mapping[str, str]) -> list[str]:
    """The names of ``ranges`` (name -> CIDR) that overlap ``network`` (a CIDR)."""
    net = ipaddress.ip_network(network, strict=False)
    found = []
    for name, cidr in ranges.items():
        try:
            other = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if other.version == net.version and other.prefixlen > 0 and net.overlaps(other):
            found.append(name)
    return found


def host_routes(table: str | None = None) -> dict[str, str]:
    """This machine's IPv4 routes other than the default one, as {"route CIDR via IFACE": CIDR},
    from /proc/net/route ({} where there is none)."""
    if table is None:
        path = Path("/proc/net/route")
        table = path.read_text() if path.exists() else ""
    routes: dict[str, str] = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
            mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
        except ValueError:
            continue
        if int(mask) == 0:
            continue  # the default route covers everything: not a conflict
        cidr = str(ipaddress.IPv4Network(f"{destination}/{mask}", strict=False))
        routes[f"route {cidr} via {fields[0]}"] = cidr
    return routes


def network_check(network: str | None, cluster_ranges: Mapping[str, str], routes: Mapping[str, str]) -> CheckResult:
    """gefyra's container network against the cluster's ranges and this machine's other routes
    (the network's own route aside)."""
    if network is None:
        return CheckResult("network", True, "gefyra's container network does not exist yet (`up` makes it)")
    cluster = overlapping(network, cluster_ranges)
    local = [name for name in overlapping(network, routes)
             if ipaddress.ip_network(routes[name]) != ipaddress.ip_network(network, strict=False)]
    if cluster or local:
        return CheckResult("network", False, f"gefyra's container network {network} overlaps "
                           f"{', '.join(cluster + local)}: remove it (`gefyra down`) and have the engine pick "
                           "another range (or change the engine's default address pools)")
    return CheckResult("network", True, f"gefyra's container network {network} overlaps no cluster range or route")


@dataclasses.dataclass(frozen=True)
class PathMtu:
    """The largest IPv4 packet that passed the tunnel whole, against the tunnel's MTU."""

    largest: int
    tunnel_mtu: int

    def result(self) -> CheckResult:
        if self.largest >= self.tunnel_mtu:
            return CheckResult("mtu", True, f"packets of {self.tunnel_mtu} bytes (the tunnel's MTU) pass whole")
        return CheckResult("mtu", False, f"only packets up to {self.largest} bytes pass the tunnel whole, its MTU is "
                                         f"{self.tunnel_mtu}: large transfers may stall (a VPN or tunnel on the way?)")


def failed(name: str, exc: errors.GefyraError) -> CheckResult:
    return CheckResult(name, False, str(exc))
