"""`up`: the plan that connects this machine to the cluster, and the helpers `down` shares.

Steps, in order: cluster side (namespace, CRD, RBAC, stowaway + operator), client registration
(a GefyraClient with this machine's public key; the operator answers with an address), the
local container network, stowaway's readiness, cargo, and a probe that proves traffic flows
through the tunnel. The cluster side is applied without waiting for it: registration and the
local network go ahead while stowaway's pod starts, and only cargo waits for it to be reachable.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import anyio
import structlog

from gefyra import errors
from gefyra.core import manifests, wireguard
from gefyra.core.bus import Event, EventKind
from gefyra.core.config import (
    CRD_GROUP, CRD_VERSION, GEFYRA_NAMESPACE, LABEL_CLIENT, LABEL_MANAGED_BY, MANAGED_BY,
    TUNNEL_SERVER_ADDRESS, Settings,
)
from gefyra.core.kube import Cluster
from gefyra.core.orchestrator import Orchestrator
from gefyra.core.runtime import ContainerRuntime, ContainerSpec
from gefyra.core.steps import Step
from gefyra.core.waiting import wait_until

log = structlog.get_logger(__name__)

STOWAWAY_KEY_SECRET = "gefyra-stowaway-key"
LABEL_PUBLIC_KEY = "gefyra.dev/public-key"
#: On cargo: the ranges it routes into the tunnel (space separated), for `run` to route to cargo.
LABEL_ROUTES = "gefyra.dev/cluster-routes"
_CLIENTS_PATH = f"/apis/{CRD_GROUP}/{CRD_VERSION}/namespaces/{GEFYRA_NAMESPACE}/gefyraclients"


@dataclasses.dataclass
class UpContext:
    orchestrator: Orchestrator
    cluster: Cluster
    runtime: ContainerRuntime
    keys: wireguard.KeyPair | None = None
    address: str = ""
    server_public_key: str = ""

    @property
    def settings(self) -> Settings:
        return self.orchestrator.settings

    async def progress(self, step: str, message: str) -> None:
        await self.orchestrator.bus.publish(Event(EventKind.PROGRESS, step, message))


def client_doc(settings: Settings, public_key: str = "") -> dict[str, Any]:
    return {
        "apiVersion": f"{CRD_GROUP}/{CRD_VERSION}", "kind": "GefyraClient",
        "metadata": {"name": settings.client_id, "namespace": GEFYRA_NAMESPACE,
                     "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLIENT: settings.client_id}},
        "spec": {"publicKey": public_key},
    }


async def get_client(cluster: Cluster, client_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await cluster.request("GET", f"{_CLIENTS_PATH}/{client_id}")
    except errors.NotFoundError:
        return None
    return found


async def other_clients(cluster: Cluster, client_id: str) -> list[str]:
    """Names of the other clients registered in the cluster (none if gefyra is not installed)."""
    try:
        listing = await cluster.request("GET", _CLIENTS_PATH)
    except errors.NotFoundError:
        return []
    return [c["metadata"]["name"] for c in listing["items"] if c["metadata"]["name"] != client_id]


async def remove_cluster_side(cluster: Cluster, settings: Settings, timeout: float) -> None:
    """Deletes every object of the cluster side and waits until all of them are gone (a CRD or
    namespace that is still terminating would swallow the next `up`)."""
    docs = manifests.cluster_side(settings)
    for doc in reversed(docs):
        await cluster.delete(doc)

    async def all_gone() -> bool:
        return not any([await cluster.exists(doc) for doc in docs])

    await wait_until(all_gone, timeout, errors.ReadinessTimeoutError(
        f"gefyra's cluster side was not deleted within {timeout:.0f}s", "see `kubectl get all -n gefyra`"), 0.5)


def _stowaway_ready(settings: Settings, deployment: dict[str, Any]) -> bool:
    """The stowaway Deployment runs the wanted images and has a ready pod of its current spec."""
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    status = deployment.get("status", {})
    return (images == {settings.image("stowaway"), settings.image("operator")}
            and status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("availableReplicas", 0) >= 1 and status.get("updatedReplicas", 0) >= 1)


class ClusterSide(Step[UpContext]):
    name = "cluster-side"
    title = "install gefyra's cluster side (stowaway, operator)"

    async def verify(self, ctx: UpContext) -> bool:
        """Every object is there (none terminating) and stowaway runs the wanted images."""
        for doc in manifests.cluster_side(ctx.settings):
            current = await ctx.cluster.get(doc)
            if current is None or current["metadata"].get("deletionTimestamp"):
                return False
            if doc["kind"] == "Deployment" and not _stowaway_ready(ctx.settings, current):
                return False
        return True

    async def apply(self, ctx: UpContext) -> None:
        docs = manifests.cluster_side(ctx.settings)

        async def none_terminating() -> bool:
            found = [await ctx.cluster.get(doc) for doc in docs]
            return not any(f and f["metadata"].get("deletionTimestamp") for f in found)

        if not await none_terminating():
            await ctx.progress(self.name, "waiting for a previous removal to finish")
        await wait_until(none_terminating, ctx.settings.timeout, errors.ReadinessTimeoutError(
            "gefyra's cluster side is still being removed", "wait for `gefyra down` to finish, then retry"), 0.5)
        for doc in docs:
            await ctx.cluster.apply(doc)
            if doc["kind"] == "Namespace":
                await self._ensure_server_key(ctx)

    async def _ensure_server_key(self, ctx: UpContext) -> None:
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": STOWAWAY_KEY_SECRET, "namespace": GEFYRA_NAMESPACE,
                               "labels": {LABEL_MANAGED_BY: MANAGED_BY}}}
        if await ctx.cluster.exists(secret):
            return
        keys = wireguard.generate_keypair()
        secret["data"] = {"private-key": base64.b64encode(keys.private.encode()).decode(),
                          "public-key": base64.b64encode(keys.public.encode()).decode()}
        await ctx.cluster.request("POST", f"/api/v1/namespaces/{GEFYRA_NAMESPACE}/secrets", secret)

    async def undo(self, ctx: UpContext) -> None:
        if not await other_clients(ctx.cluster, ctx.settings.client_id):
            await remove_cluster_side(ctx.cluster, ctx.settings, ctx.settings.timeout)


class RegisterClient(Step[UpContext]):
    name = "client"
    title = "register this machine as a tunnel client"

    async def verify(self, ctx: UpContext) -> bool:
        found = await get_client(ctx.cluster, ctx.settings.client_id)
        cargo = await ctx.runtime.get_container(ctx.settings.cargo_name)
        if not found or not cargo or not cargo.running:
            return False
        status = found.get("status") or {}
        same_key = cargo.labels.get(LABEL_PUBLIC_KEY) == found["spec"]["publicKey"]
        return same_key and status.get("phase") == "Active"

    async def apply(self, ctx: UpContext) -> None:
        ctx.keys = wireguard.generate_keypair()
        await ctx.cluster.apply(client_doc(ctx.settings, ctx.keys.public))
        await ctx.progress(self.name, "waiting for the operator to add this client to stowaway")
        keys = ctx.keys

        async def active_status() -> dict[str, Any] | None:
            found = await get_client(ctx.cluster, ctx.settings.client_id)
            status = (found or {}).get("status") or {}
            mine = found is not None and found["spec"]["publicKey"] == keys.public
            return status if mine and status.get("phase") == "Active" else None

        timeout = ctx.settings.timeout
        status = await wait_until(active_status, timeout, errors.ReadinessTimeoutError(
            f"the operator did not register this client within {timeout:.0f}s",
            "check `kubectl -n gefyra describe pod` (are the gefyra images loaded into the cluster?) "
            "and `kubectl -n gefyra logs deploy/gefyra-stowaway -c operator`"), 0.1)
        ctx.address, ctx.server_public_key = status["address"], status["serverPublicKey"]

    async def undo(self, ctx: UpContext) -> None:
        await ctx.cluster.delete(client_doc(ctx.settings))


class LocalNetwork(Step[UpContext]):
    name = "network"
    title = "create the local container network"

    async def verify(self, ctx: UpContext) -> bool:
        return await ctx.runtime.get_network(ctx.settings.network_name) is not None

    async def apply(self, ctx: UpContext) -> None:
        await ctx.runtime.ensure_network(ctx.settings.network_name, ctx.settings.labels("network"))

    async def undo(self, ctx: UpContext) -> None:
        await ctx.runtime.remove_network(ctx.settings.network_name)


class StowawayReady(Step[UpContext]):
    """Cargo's first handshake must find stowaway behind its NodePort: a lost one is retried only
    after WireGuard's 5 s rekey timeout."""

    name = "stowaway"
    title = "wait until stowaway is ready"

    async def verify(self, ctx: UpContext) -> bool:
        deployment = next(d for d in manifests.cluster_side(ctx.settings) if d["kind"] == "Deployment")
        current = await ctx.cluster.get(deployment)
        return current is not None and _stowaway_ready(ctx.settings, current)

    async def apply(self, ctx: UpContext) -> None:
        await wait_until(lambda: self.verify(ctx), ctx.settings.timeout, errors.ReadinessTimeoutError(
            f"stowaway did not become ready within {ctx.settings.timeout:.0f}s",
            "check `kubectl -n gefyra describe pod` (are the gefyra images loaded into the cluster?)"), 0.2)


class Cargo(Step[UpContext]):
    name = "cargo"
    title = "start cargo (local tunnel end and DNS)"

    async def verify(self, ctx: UpContext) -> bool:
        return ctx.keys is None  # registration was skipped: cargo runs with the registered key

    async def apply(self, ctx: UpContext) -> None:
        assert ctx.keys is not None
        settings, runtime = ctx.settings, ctx.runtime
        await runtime.remove_container(settings.cargo_name)  # a stale cargo with an old key
        routes = [f"{TUNNEL_SERVER_ADDRESS}/32", settings.service_cidr or await ctx.cluster.service_cidr(),
                  *(settings.pod_cidrs or await ctx.cluster.pod_cidrs())]
        endpoint = f"{settings.host or ctx.cluster.api_host}:{settings.port}"
        dns_ip = await ctx.cluster.cluster_dns_ip()
        labels = settings.labels("cargo") | {LABEL_PUBLIC_KEY: ctx.keys.public, LABEL_ROUTES: " ".join(routes)}
        await runtime.create_container(ContainerSpec(
            name=settings.cargo_name, image=settings.image("cargo"), labels=labels,
            network=settings.network_name, cap_add=["NET_ADMIN", "MKNOD"], devices=["/dev/net/tun"],
        ))
        env = (f"TUNNEL_ADDRESS={ctx.address}/32\nTUNNEL_MTU={settings.tunnel_mtu}\n"
               f"CLUSTER_ROUTES='{' '.join(routes)}'\n")
        await runtime.put_files(settings.cargo_name, "/etc/gefyra", {
            "wg0.conf": wireguard.client_config(ctx.keys.private, ctx.server_public_key, endpoint, routes).encode(),
            "cargo.env": env.encode(),
            "Corefile": ctx.orchestrator.dns_config(dns_ip, settings.cluster_domain).encode(),
        })
        await runtime.start_container(settings.cargo_name)

    async def undo(self, ctx: UpContext) -> None:
        await ctx.runtime.remove_container(ctx.settings.cargo_name)


class TunnelProbe(Step[UpContext]):
    """Pings stowaway through the tunnel and opens a TCP connection to the API server's Service.

    A handshake whose first packet was lost (stowaway's NodePort not yet in kube-proxy's rules) is
    retried by WireGuard only after 5 s. While no handshake has happened, the peer is loaded anew,
    and the fresh peer starts another handshake at once: after 0.25 s, then after twice as long
    each time (up to 5 s), so that a slow link still has time to complete one."""

    name = "tunnel"
    title = "check that traffic flows through the tunnel"
    TIMEOUT = 30.0

    async def apply(self, ctx: UpContext) -> None:
        api_ip = await kubernetes_service_ip(ctx.cluster)
        probe = ["sh", "-c", f"ping -c1 -W0.5 {TUNNEL_SERVER_ADDRESS} >/dev/null && "
                             f"timeout 2 bash -c '</dev/tcp/{api_ip}/443'"]
        kick = ["sh", "-c", "[ \"$(wg show wg0 latest-handshakes | cut -f2)\" != 0 ] || "
                            "wg setconf wg0 /etc/gefyra/wg0.conf"]
        runtime, cargo_name = ctx.runtime, ctx.settings.cargo_name
        output = ""
        try:
            with anyio.fail_after(self.TIMEOUT):
                last_kick, kick_after = anyio.current_time(), 0.25
                while True:
                    cargo = await runtime.get_container(cargo_name)
                    if cargo is None or not cargo.running:
                        raise errors.GefyraError("cargo stopped right after its start",
                                                 f"see `{runtime.name} logs {cargo_name}`")
                    code, output = await runtime.exec(cargo_name, probe)
                    if code == 0:
                        return
                    if anyio.current_time() - last_kick >= kick_after:
                        await runtime.exec(cargo_name, kick)
                        last_kick, kick_after = anyio.current_time(), min(kick_after * 2, 5.0)
                    await anyio.sleep(0.1)
        except TimeoutError as exc:
            raise errors.ReadinessTimeoutError(
                f"no traffic through the tunnel to {ctx.settings.host or ctx.cluster.api_host}:"
                f"{ctx.settings.port}/udp within {self.TIMEOUT:.0f}s ({output.strip() or 'no answer'})",
                "check that this address and UDP port reach the cluster's nodes (--host, --port)",
            ) from exc


async def kubernetes_service_ip(cluster: Cluster) -> str:
    found = await cluster.request("GET", "/api/v1/namespaces/default/services/kubernetes")
    return str(found["spec"]["clusterIP"])


UP_PLAN: tuple[type[Step[UpContext]], ...] = (ClusterSide, RegisterClient, LocalNetwork, StowawayReady, Cargo,
                                               TunnelProbe)
