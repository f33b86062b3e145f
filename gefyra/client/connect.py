"""`up` and `down`: the plans that connect this machine to the cluster and remove it again.

`up`'s steps and the facts they provide (other steps, a plugin's too, may need them):

    cluster-side  -> "cluster-side"   namespace, CRDs, RBAC, stowaway + operator (not waited for)
    client        -> "client"         a GefyraClient with this machine's public key; the operator
                                      answers with an address (needs "cluster-side")
    network       -> "network"        the local container network
    local-image   -> "local-image"    the tunnel's local-end image is in the engine
    server-end    -> "server-end"     stowaway is ready (needs "cluster-side")
    local-end     -> "local-end"      cargo: tunnel end and DNS (needs all four above)
    tunnel        -> "tunnel"         traffic flows through the tunnel (needs "local-end")

`down`'s: "bridges-removed", then "containers-removed" and "client-removed", then
"network-removed" and "cluster-side-removed".
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
from typing import Any

import structlog

from gefyra import errors
from gefyra.client import bridging, manifests
from gefyra.client import tunnel_endpoint as endpoint
from gefyra.core.engine.orchestrator import OperationContext
from gefyra.core.engine.steps import Step
from gefyra.core.engine.waiting import wait_until
from gefyra.core.kube.cluster import METADATA_ONLY, Cluster, object_path
from gefyra.core.model.names import (
    ANNOTATION_LIFECYCLE,
    ANNOTATION_MANIFESTS,
    CLIENTS_PATH,
    CLUSTER_INFO_CONFIGMAP,
    GEFYRA_NAMESPACE,
    LABEL_CLIENT,
    LABEL_MANAGED_BY,
    LABEL_NETNS,
    LABEL_PUBLIC_KEY,
    LABEL_ROUTES,
    MANAGED_BY,
    STOWAWAY,
    STOWAWAY_KEY_SECRET,
    TUNNEL_SERVER_ADDRESS,
)
from gefyra.core.model.settings import Settings
from gefyra.core.spi.tunnel import KeyPair, LocalEnd, Tunnel

log = structlog.get_logger(__name__)


@dataclasses.dataclass
class Context(OperationContext):
    """What the steps of `up` and `down` work with."""

    keys: KeyPair | None = None
    address: str = ""
    #: HOST:PORT at which cargo reaches stowaway (chosen when cargo is made).
    endpoint: str = ""
    server_public_key: str = ""
    #: What `down` removed, for the user.
    removed: list[str] = dataclasses.field(default_factory=list)

    @property
    def tunnel(self) -> Tunnel:
        return self.orchestrator.tunnel()


def client_doc(settings: Settings, public_key: str = "", owner: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "gefyra.dev/v1alpha1", "kind": "GefyraClient",
        "metadata": {"name": settings.client_id, "namespace": GEFYRA_NAMESPACE,
                     "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLIENT: settings.client_id}},
        "spec": {"publicKey": public_key, "owner": owner},
    }


async def get_client(cluster: Cluster, client_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await cluster.request("GET", f"{CLIENTS_PATH}/{client_id}")
    except errors.NotFoundError:
        return None
    return found


async def other_clients(cluster: Cluster, client_id: str) -> list[str]:
    """Names of the other clients registered in the cluster, not being deleted (none if gefyra is
    not installed)."""
    try:
        listing = await cluster.request("GET", CLIENTS_PATH)
    except errors.NotFoundError:
        return []
    return [c["metadata"]["name"] for c in listing["items"]
            if c["metadata"]["name"] != client_id and not c["metadata"].get("deletionTimestamp")]


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


def _stowaway_doc(settings: Settings) -> dict[str, Any]:
    return next(d for d in manifests.cluster_side(settings) if d["kind"] == "Deployment")


def _namespace_doc() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GEFYRA_NAMESPACE}}


async def installed_lifecycle(cluster: Cluster) -> str | None:
    """How the cluster side was installed (manifests.INSTALLED or WITH_CLIENTS), None if not."""
    namespace = await cluster.get(_namespace_doc())
    if namespace is None:
        return None
    return str((namespace["metadata"].get("annotations") or {}).get(ANNOTATION_LIFECYCLE) or manifests.WITH_CLIENTS)


async def install(ctx: Context, lifecycle: str) -> None:
    """Applies every object of the cluster side (after a removal still under way has finished),
    with the server's key pair and what developers need to know about the cluster."""
    docs = manifests.cluster_side(ctx.settings, lifecycle)

    async def none_terminating() -> bool:
        found = [await ctx.cluster.get(doc) for doc in docs]
        return not any(f and f["metadata"].get("deletionTimestamp") for f in found)

    if not await none_terminating():
        await ctx.progress("cluster-side", "waiting for a previous removal to finish")
    await wait_until(none_terminating, ctx.settings.timeout, errors.ReadinessTimeoutError(
        "gefyra's cluster side is still being removed", "wait for `gefyra down` to finish, then retry"), 0.5)
    for doc in docs:
        await ctx.cluster.apply(doc)
        if doc["kind"] == "Namespace":
            await _ensure_server_key(ctx)
            await ctx.cluster.apply(await _cluster_info_doc(ctx.cluster))


async def _ensure_server_key(ctx: Context) -> None:
    """Creates stowaway's key pair once; an existing one is checked by its metadata only (the
    private key never comes to this machine again)."""
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": STOWAWAY_KEY_SECRET, "namespace": GEFYRA_NAMESPACE,
                           "labels": {LABEL_MANAGED_BY: MANAGED_BY}}}
    try:
        await ctx.cluster.request("GET", object_path(secret), accept=METADATA_ONLY)
        return
    except errors.NotFoundError:
        pass
    keys = ctx.tunnel.generate_keys()
    secret["data"] = {"private-key": base64.b64encode(keys.private.encode()).decode(),
                      "public-key": base64.b64encode(keys.public.encode()).decode()}
    try:
        await ctx.cluster.request("POST", f"/api/v1/namespaces/{GEFYRA_NAMESPACE}/secrets", secret)
    except errors.ConflictError:
        pass  # another machine's `up` made it a moment ago: that one is the key pair


async def _cluster_info_doc(cluster: Cluster) -> dict[str, Any]:
    """What the tunnel routes and where cluster DNS answers, discovered with the installer's rights
    (a developer with gefyra-user rights reads it from this ConfigMap)."""
    nodes = (await cluster.request("GET", "/api/v1/nodes"))["items"]
    data = {"serviceCIDR": await cluster.service_cidr(), "podCIDRs": " ".join(await cluster.pod_cidrs()),
            "dnsIP": await cluster.cluster_dns_ip(), "apiServiceIP": await _kubernetes_service_ip(cluster),
            "nodeAddresses": " ".join(endpoint.node_addresses(nodes))}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CLUSTER_INFO_CONFIGMAP, "namespace": GEFYRA_NAMESPACE,
                         "labels": {LABEL_MANAGED_BY: MANAGED_BY}}, "data": data}


@dataclasses.dataclass(frozen=True)
class ClusterFacts:
    """The cluster-info ConfigMap's values, checked (they come from the cluster: untrusted)."""

    service_cidr: str
    pod_cidrs: list[str]
    dns_ip: str
    api_service_ip: str
    #: Where the nodes are (ExternalIPs first), as the installer saw them: candidates of the
    #: tunnel's endpoint.
    node_addresses: tuple[str, ...] = ()


async def cluster_facts(cluster: Cluster) -> ClusterFacts:
    found = await cluster.get({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": CLUSTER_INFO_CONFIGMAP, "namespace": GEFYRA_NAMESPACE}})
    data = (found or {}).get("data") or {}
    try:
        return ClusterFacts(service_cidr=str(ipaddress.ip_network(data["serviceCIDR"])),
                            pod_cidrs=[str(ipaddress.ip_network(c)) for c in data.get("podCIDRs", "").split()],
                            dns_ip=str(ipaddress.ip_address(data["dnsIP"])),
                            api_service_ip=str(ipaddress.ip_address(data["apiServiceIP"])),
                            node_addresses=tuple(str(ipaddress.ip_address(a)) for a in data.get("nodeAddresses", "").split()))
    except (KeyError, ValueError, TypeError) as exc:
        raise errors.GefyraError(f"the ConfigMap {GEFYRA_NAMESPACE}/{CLUSTER_INFO_CONFIGMAP} is missing or malformed "
                                 f"({type(exc).__name__}: {str(exc)[:80]})",
                                 "an admin reinstalls the cluster side: `gefyra install --apply`") from exc


class ClusterSide(Step[Context]):
    name = "cluster-side"
    title = "install gefyra's cluster side (stowaway, operator)"
    provides = frozenset({"cluster-side"})

    async def verify(self, ctx: Context) -> bool:
        """The installed cluster side is the wanted one: its digest is on the stowaway Deployment,
        the one object a developer with gefyra-user rights reads."""
        current = await ctx.cluster.get(_stowaway_doc(ctx.settings))
        wanted = _stowaway_doc(ctx.settings)["metadata"]["annotations"][ANNOTATION_MANIFESTS]
        return (current is not None and not current["metadata"].get("deletionTimestamp")
                and (current["metadata"].get("annotations") or {}).get(ANNOTATION_MANIFESTS) == wanted)

    async def apply(self, ctx: Context) -> None:
        try:
            await install(ctx, await installed_lifecycle(ctx.cluster) or manifests.WITH_CLIENTS)
        except errors.ForbiddenError as exc:
            raise errors.ForbiddenError(
                "gefyra's cluster side is missing or outdated, and these credentials may not install it "
                f"({exc.what})", "ask a cluster admin to run `gefyra install --apply`") from exc

    async def undo(self, ctx: Context) -> None:
        if (await installed_lifecycle(ctx.cluster) == manifests.WITH_CLIENTS
                and not await other_clients(ctx.cluster, ctx.settings.client_id)):
            await remove_cluster_side(ctx.cluster, ctx.settings, ctx.settings.timeout)


class RegisterClient(Step[Context]):
    name = "client"
    title = "register this machine as a tunnel client"
    needs = frozenset({"cluster-side"})
    provides = frozenset({"client"})

    async def verify(self, ctx: Context) -> bool:
        found = await get_client(ctx.cluster, ctx.settings.client_id)
        cargo = await ctx.runtime.get_container(ctx.settings.cargo_name)
        if not found or not cargo or not cargo.running:
            return False
        status = found.get("status") or {}
        same_key = cargo.labels.get(LABEL_PUBLIC_KEY) == found["spec"]["publicKey"]
        return same_key and status.get("phase") == "Active"

    async def apply(self, ctx: Context) -> None:
        keys = ctx.keys = ctx.tunnel.generate_keys()
        await ctx.cluster.apply(client_doc(ctx.settings, keys.public, await ctx.cluster.username()))
        await ctx.progress(self.name, "waiting for the operator to add this client to stowaway")

        async def active_status() -> dict[str, Any] | None:
            found = await get_client(ctx.cluster, ctx.settings.client_id)
            status: dict[str, Any] = (found or {}).get("status") or {}
            mine = found is not None and found["spec"]["publicKey"] == keys.public
            return status if mine and status.get("phase") == "Active" else None

        timeout = ctx.settings.timeout
        status = await wait_until(active_status, timeout, errors.ReadinessTimeoutError(
            f"the operator did not register this client within {timeout:.0f}s",
            "check `kubectl -n gefyra describe pod` (are the gefyra images loaded into the cluster?) "
            "and `kubectl -n gefyra logs deploy/gefyra-stowaway -c operator`"), 0.1)
        ctx.address, ctx.server_public_key = status["address"], status["serverPublicKey"]

    async def undo(self, ctx: Context) -> None:
        await ctx.cluster.delete(client_doc(ctx.settings), foreground=False)


class LocalNetwork(Step[Context]):
    name = "network"
    title = "create the local container network"
    provides = frozenset({"network"})

    async def verify(self, ctx: Context) -> bool:
        return await ctx.runtime.get_network(ctx.settings.network_name) is not None

    async def apply(self, ctx: Context) -> None:
        await ctx.runtime.ensure_network(ctx.settings.network_name, ctx.settings.labels("network"))

    async def undo(self, ctx: Context) -> None:
        await ctx.runtime.remove_network(ctx.settings.network_name)


class LocalImage(Step[Context]):
    name = "local-image"
    title = "pull the tunnel's local image"
    provides = frozenset({"local-image"})

    async def verify(self, ctx: Context) -> bool:
        return await ctx.runtime.image_exists(ctx.tunnel.local_image(ctx.settings))

    async def apply(self, ctx: Context) -> None:
        await ctx.runtime.pull_image(ctx.tunnel.local_image(ctx.settings), lambda line: ctx.progress(self.name, line))


class ServerEnd(Step[Context]):
    """The local end's first handshake must find stowaway behind its NodePort: a lost one costs
    seconds."""

    name = "server-end"
    title = "wait until stowaway is ready"
    needs = frozenset({"cluster-side"})
    provides = frozenset({"server-end"})

    async def verify(self, ctx: Context) -> bool:
        current = await ctx.cluster.get(_stowaway_doc(ctx.settings))
        return current is not None and _stowaway_ready(ctx.settings, current)

    async def apply(self, ctx: Context) -> None:
        async def ready() -> bool:
            current = await ctx.cluster.get(_stowaway_doc(ctx.settings))
            if current is not None and _stowaway_ready(ctx.settings, current):
                return True
            failure = await _stowaway_failure(ctx.cluster, current)
            if failure:
                raise errors.ReadinessTimeoutError(f"stowaway cannot start: {failure}",
                                                   "see README: What gefyra installs and may do")
            return False

        await wait_until(ready, ctx.settings.timeout, errors.ReadinessTimeoutError(
            f"stowaway did not become ready within {ctx.settings.timeout:.0f}s",
            "check `kubectl -n gefyra describe pod` and the operator's log"), 0.2)


#: Waiting reasons of a container that will not start by waiting longer.
_HOPELESS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
             "CreateContainerError", "ErrImageNeverPull"}


async def _stowaway_failure(cluster: Cluster, deployment: dict[str, Any] | None) -> str | None:
    """Why stowaway's pod cannot come up (refused by admission, image not pullable), or None while
    it may still."""
    for condition in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return str(condition.get("message", ""))[:300]
    pods = await cluster.request("GET", f"/api/v1/namespaces/{GEFYRA_NAMESPACE}/pods",
                                 query=[("labelSelector", f"app.kubernetes.io/name={STOWAWAY}")])
    for pod in pods.get("items", []):
        for state in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (state.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _HOPELESS:
                return (f"container {state.get('name')}, image {state.get('image')}: {waiting['reason']}: "
                        f"{str(waiting.get('message', ''))[:200]}")
    return None


class LocalEndStep(Step[Context]):
    name = "local-end"
    title = "start cargo (local tunnel end and DNS)"
    needs = frozenset({"client", "network", "server-end", "local-image"})
    provides = frozenset({"local-end"})

    async def verify(self, ctx: Context) -> bool:
        return ctx.keys is None  # registration was skipped: cargo runs with the registered key

    async def apply(self, ctx: Context) -> None:
        assert ctx.keys is not None, "the client step sets the keys"
        settings, tunnel = ctx.settings, ctx.tunnel
        facts = await cluster_facts(ctx.cluster)
        routes = [f"{TUNNEL_SERVER_ADDRESS}/32", settings.service_cidr or facts.service_cidr,
                  *(settings.pod_cidrs or facts.pod_cidrs)]
        dns = ctx.orchestrator.dns().setup(tunnel.dns_dir, facts.dns_ip, settings.cluster_domain)
        chosen = endpoint.choose(endpoint.Facts(
            api_host=ctx.cluster.api_host, node_addresses=facts.node_addresses,
            vm_gateway=await ctx.runtime.vm_host_gateway(), context=ctx.cluster.context_name), settings.host)
        ctx.endpoint = f"{chosen.host}:{settings.port}"
        network = await ctx.runtime.get_network(settings.network_name)
        await ctx.progress(self.name, f"tunnel endpoint {ctx.endpoint} ({chosen.why})")
        await tunnel.start_local_end(ctx.runtime, settings, LocalEnd(
            name=settings.cargo_name, network=settings.network_name,
            labels=settings.labels("cargo") | {LABEL_PUBLIC_KEY: ctx.keys.public, LABEL_ROUTES: " ".join(routes)},
            keys=ctx.keys, address=ctx.address, server_public_key=ctx.server_public_key,
            endpoint=ctx.endpoint, routes=routes, mtu=settings.tunnel_mtu, dns=dns,
            network_address=network.reserved if network else ""))

    async def undo(self, ctx: Context) -> None:
        await ctx.runtime.remove_container(ctx.settings.cargo_name)


class TunnelProbe(Step[Context]):
    name = "tunnel"
    title = "check that traffic flows through the tunnel"
    needs = frozenset({"local-end"})
    provides = frozenset({"tunnel"})
    TIMEOUT = 30.0

    async def apply(self, ctx: Context) -> None:
        api_ip = (await cluster_facts(ctx.cluster)).api_service_ip
        try:
            await ctx.tunnel.wait_connected(ctx.runtime, ctx.settings.cargo_name, (api_ip, 443),
                                            min(self.TIMEOUT, ctx.settings.timeout))
        except errors.ReadinessTimeoutError as exc:
            raise errors.ReadinessTimeoutError(f"{exc.what} (endpoint {ctx.endpoint}/udp)", exc.hint) from exc


class SteerAgain(Step[Context]):
    """This client's bridges lead into cargo's steering rules: a cargo made anew has none."""

    name = "steer"
    title = "steer this client's bridges to their local containers"
    needs = frozenset({"tunnel"})
    provides = frozenset({"steered"})

    async def verify(self, ctx: Context) -> bool:
        return not await bridging.list_bridges(ctx.cluster, ctx.settings.client_id)

    async def apply(self, ctx: Context) -> None:
        await bridging.steer_again(ctx)


async def _kubernetes_service_ip(cluster: Cluster) -> str:
    found = await cluster.request("GET", "/api/v1/namespaces/default/services/kubernetes")
    return str(found["spec"]["clusterIP"])


def up_plan() -> list[Step[Context]]:
    return [ClusterSide(), RegisterClient(), LocalNetwork(), LocalImage(), ServerEnd(), LocalEndStep(), TunnelProbe(),
            SteerAgain()]


# down


class RemoveBridges(Step[Context]):
    name = "bridges"
    title = "remove this client's bridges (workloads get their containers back)"
    provides = frozenset({"bridges-removed"})

    async def verify(self, ctx: Context) -> bool:
        return not await bridging.list_bridges(ctx.cluster, ctx.settings.client_id)

    async def apply(self, ctx: Context) -> None:
        mine = [b["metadata"]["name"] for b in await bridging.list_bridges(ctx.cluster, ctx.settings.client_id)]
        removed = await bridging.remove_bridges(ctx, mine)
        ctx.removed += [f"bridge {name}" for name in removed]


class RemoveContainers(Step[Context]):
    name = "containers"
    title = "remove the local containers (cargo and those of `run`)"
    needs = frozenset({"bridges-removed"})
    provides = frozenset({"containers-removed"})

    async def verify(self, ctx: Context) -> bool:
        return not await ctx.runtime.list_containers({LABEL_CLIENT: ctx.settings.client_id})

    async def apply(self, ctx: Context) -> None:
        found = await ctx.runtime.list_containers({LABEL_CLIENT: ctx.settings.client_id})
        # A container in another's network namespace goes before that one (some engines insist).
        for container in sorted(found, key=lambda c: LABEL_NETNS not in c.labels):
            await ctx.runtime.remove_container(container.name)
            ctx.removed.append(f"container {container.name}")


class RemoveNetwork(Step[Context]):
    name = "network"
    title = "remove the local container network"
    needs = frozenset({"containers-removed"})
    provides = frozenset({"network-removed"})

    async def verify(self, ctx: Context) -> bool:
        return await ctx.runtime.get_network(ctx.settings.network_name) is None

    async def apply(self, ctx: Context) -> None:
        await ctx.runtime.remove_network(ctx.settings.network_name)
        ctx.removed.append(f"network {ctx.settings.network_name}")


class Deregister(Step[Context]):
    name = "client"
    title = "deregister this machine"
    needs = frozenset({"bridges-removed"})
    provides = frozenset({"client-removed"})

    async def verify(self, ctx: Context) -> bool:
        return await get_client(ctx.cluster, ctx.settings.client_id) is None

    async def apply(self, ctx: Context) -> None:
        if await ctx.cluster.delete(client_doc(ctx.settings), foreground=False):
            ctx.removed.append(f"client {ctx.settings.client_id}")


class RemoveClusterSide(Step[Context]):
    name = "cluster-side"
    title = "remove gefyra's cluster side (no other client is left)"
    needs = frozenset({"client-removed"})
    provides = frozenset({"cluster-side-removed"})

    async def verify(self, ctx: Context) -> bool:
        """Nothing to remove: not installed, installed by an admin (it stays), or still in use."""
        return (await installed_lifecycle(ctx.cluster) != manifests.WITH_CLIENTS
                or bool(await other_clients(ctx.cluster, ctx.settings.client_id)))

    async def apply(self, ctx: Context) -> None:
        await remove_cluster_side(ctx.cluster, ctx.settings, ctx.settings.timeout)
        ctx.removed.append("cluster side")


def down_plan(*, keep_cluster_side: bool = False) -> list[Step[Context]]:
    steps: list[Step[Context]] = [RemoveBridges(), RemoveContainers(), RemoveNetwork(), Deregister()]
    return steps if keep_cluster_side else [*steps, RemoveClusterSide()]
