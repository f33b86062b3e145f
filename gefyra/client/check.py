"""`gefyra check`: what a user runs before `up`. Each check is one line: ok or not, and what to do.

- engine: the container engine answers;
- cluster: the API server answers, with the kubeconfig's context;
- rights: this identity may install the cluster side, or use an installed one (gefyra-user);
- pod-security: the Pod Security level namespace gefyra gets, and whether the cluster admits the
  cluster side's pod (a server-side dry run of creating it, where this identity may create pods);
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

import anyio

from gefyra import errors
from gefyra.client import cluster_side, down, manifests, up
from gefyra.client.results import CheckResult
from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model.names import GEFYRA_NAMESPACE, POD_SECURITY_LABEL
from gefyra.core.spi.runtime import ContainerRuntime

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


async def check(orchestrator: Orchestrator) -> list[CheckResult]:
    """Every check, in order; each says what is fine or what to do."""
    results: list[CheckResult] = []
    runtime, cluster = None, None
    try:
        runtime = await orchestrator.engine()
        results.append(CheckResult("engine", True, f"{runtime.name} {await runtime.version()}"))
    except errors.GefyraError as exc:
        results.append(failed("engine", exc))
    try:
        cluster = await orchestrator.cluster()
        results.append(CheckResult("cluster", True, f"{cluster.server} (context {cluster.context_name})"))
    except errors.GefyraError as exc:
        results.append(failed("cluster", exc))
    if cluster is not None:
        results.append(await _rights(cluster))
        results.append(await _pod_security(orchestrator, cluster))
    if runtime is not None:
        results.append(await _images(orchestrator, runtime))
    if runtime is not None and cluster is not None:
        results += await _network_and_tunnel(orchestrator, cluster, runtime)
    return results


async def _rights(cluster: Cluster) -> CheckResult:
    try:
        installed = await cluster_side.installed_lifecycle(cluster) is not None
        if await cluster.may("create", "gefyra.dev", "gefyraclients", "gefyra") and installed:
            return CheckResult("rights", True, "may use the installed cluster side")
        if await cluster.may("create", "apiextensions.k8s.io", "customresourcedefinitions"):
            return CheckResult("rights", True, "may install gefyra's cluster side" if not installed
                               else "may use (and install) the cluster side")
        return CheckResult("rights", False, "may neither install gefyra's cluster side nor use it: ask an admin "
                                            "to run `gefyra install --apply` and to bind you the role gefyra-user")
    except errors.GefyraError as exc:
        return failed("rights", exc)


async def _pod_security(orchestrator: Orchestrator, cluster: Cluster) -> CheckResult:
    settings, tunnel = orchestrator.settings, orchestrator.tunnel()
    try:
        wanted = tunnel.server_side(settings).pod_security
        says = f"namespace gefyra gets Pod Security level {wanted!r}"
        namespace = await cluster.get(path("namespaces", name=GEFYRA_NAMESPACE))
        if namespace is None:
            return CheckResult("pod-security", True, f"{says} (install creates it); its pod meets that level")
        labels = namespace.get("metadata", {}).get("labels") or {}
        enforced = str(labels.get(POD_SECURITY_LABEL, "none"))[:40]
        if not await cluster.may("create", "", "pods", GEFYRA_NAMESPACE):
            return CheckResult("pod-security", True, f"{says}; it enforces {enforced!r} now (whether the cluster admits "
                                                     "the pod is not tried: you may not create pods there)")
        # The Deployment's pod as it would be made (its service account may not exist yet: Pod
        # Security does not look at it).
        spec = dict(manifests.deployment(settings, tunnel)["spec"]["template"]["spec"], serviceAccountName="default")
        await cluster.create({"apiVersion": "v1", "kind": "Pod", "spec": spec,
                              "metadata": {"generateName": "gefyra-check-", "namespace": GEFYRA_NAMESPACE}}, dry_run=True)
        return CheckResult("pod-security", True, f"{says}; it enforces {enforced!r} now, and the cluster admits the "
                                                 "cluster side's pod (server-side dry run)")
    except errors.ForbiddenError as exc:
        return CheckResult("pod-security", False, f"the cluster refuses the cluster side's pod: {exc}")
    except errors.GefyraError as exc:
        return failed("pod-security", exc)


async def _images(orchestrator: Orchestrator, runtime: ContainerRuntime) -> CheckResult:
    """The local end's image here or in its registry, and the cluster side's images (the operator,
    the server end, the default interceptor) in their registry, asked from this machine: the
    cluster pulls the same names."""
    settings, tunnel = orchestrator.settings, orchestrator.tunnel()
    local = tunnel.local_image(settings)
    cluster_images = [settings.image("operator"), *(str(c["image"]) for c in tunnel.server_side(settings).containers),
                      *orchestrator.interceptor().images()]
    try:
        missing, unknown = [], []
        if not await runtime.image_exists(local):
            cluster_images.insert(0, local)
        for image in cluster_images:
            available = await runtime.image_available(image)
            if available is None:
                unknown.append(image)
            elif not available:
                missing.append(image)
        if missing:
            return CheckResult("images", False, f"not in their registry: {', '.join(missing)}: push gefyra's images "
                                                "(`make images REGISTRY=...`) and pass --registry")
        if unknown:
            return CheckResult("images", True, f"{runtime.name} cannot tell whether the registry has "
                                               f"{', '.join(unknown)}; `up` pulls them (and fails fast if it cannot)")
        return CheckResult("images", True, f"the cluster side's images are in their registry ({', '.join(cluster_images)})"
                           + (f"; {local} is here" if local not in cluster_images else ""))
    except errors.GefyraError as exc:
        return failed("images", exc)


async def _network_and_tunnel(orchestrator: Orchestrator, cluster: Cluster, runtime: ContainerRuntime
                              ) -> list[CheckResult]:
    s, results = orchestrator.settings, []
    try:
        ranges = {f"the cluster's Service range {s.service_cidr or await cluster.service_cidr()}":
                  s.service_cidr or await cluster.service_cidr()}
        network = await cluster_side.cluster_network(cluster) if await cluster_side.installed_lifecycle(cluster) else None
        pods = list(s.pod_cidrs) or (network.pod_cidrs if network else await cluster.pod_cidrs())
        ranges |= {f"the cluster's pod range {p}": p for p in pods}
    except errors.GefyraError as exc:
        return [failed("network", exc)]
    local_network = await runtime.get_network(s.network_name)
    results.append(network_check(local_network.subnet if local_network else None, ranges, host_routes()))
    if network is None:
        results.append(CheckResult("tunnel", True, "not tried: the cluster side is not installed (`up` installs it)"))
        return results
    return [*results, *await _throwaway_client(orchestrator)]


async def _throwaway_client(orchestrator: Orchestrator) -> list[CheckResult]:
    """A real client of its own id connects through the endpoint `up` would use (over UDP), measures
    the largest packet that passes, then connects through the Kubernetes API (where the server end
    takes a stream), and is removed again."""
    s = orchestrator.settings
    probe = dataclasses.replace(s, client_id=s.client_id[:63 - len(CHECK_SUFFIX)].rstrip("-") + CHECK_SUFFIX,
                                timeout=min(s.timeout, 20.0), transport="udp")
    throwaway = Orchestrator(probe, builtins=orchestrator.builtins)
    results = []
    try:
        cluster, runtime = await throwaway.both()
        # The port and the rest of the shared settings as installed (check changes nothing there).
        throwaway.settings = probe = await cluster_side.resolve_shared(cluster, probe, throwaway.tunnel(),
                                                                       may_change=True)
        tunnel = throwaway.tunnel()
        try:
            try:
                await throwaway.run_plan("up", up.up_plan(), up.ConnectContext(throwaway, cluster, runtime))
                largest = await tunnel.largest_packet(runtime, tunnel.local_name(probe),
                                                      [s.tunnel_mtu, 1280, 1200, 1000, 576])
                results.append(CheckResult("tunnel", True, "UDP to the tunnel's server end passes: a throwaway "
                                                           "client connected"))
                results.append(PathMtu(largest, s.tunnel_mtu).result())
            except errors.GefyraError as exc:
                results.append(failed("tunnel", exc))
            if tunnel.server_side(probe).stream_port is not None:
                results.append(await _through_the_api(throwaway, cluster, runtime))
        finally:
            with anyio.CancelScope(shield=True):
                await throwaway.run_plan("down", down.down_plan(keep_cluster_side=True),
                                         up.ConnectContext(throwaway, cluster, runtime))
    finally:
        with anyio.CancelScope(shield=True):
            await throwaway.close()
    return results


async def _through_the_api(throwaway: Orchestrator, cluster: Cluster, runtime: ContainerRuntime) -> CheckResult:
    """The throwaway client (connected or not) moved to the transport through the Kubernetes API."""
    throwaway.settings = dataclasses.replace(throwaway.settings, transport="api")
    try:
        await throwaway.run_plan("up", up.up_plan(), up.ConnectContext(throwaway, cluster, runtime))
    except errors.GefyraError as exc:
        return failed("tunnel-api", exc)
    return CheckResult("tunnel-api", True, "the tunnel through the Kubernetes API (a port-forward to the server end, "
                                           "as `up --transport api` or `auto` without UDP opens it) passes")
