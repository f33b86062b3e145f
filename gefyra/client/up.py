"""`up`: the plan that connects this machine to the cluster. Its steps and the facts they provide
(other steps, a plugin's too, may need them):

    cluster-side  -> "cluster-side"   namespace, CRDs, rights, operator and server end (not waited for)
    client        -> "client"         a GefyraClient with this machine's public key; the operator
                                      answers with an address (needs "cluster-side")
    network       -> "network"        the local container network
    local-image   -> "local-image"    the tunnel's local-end image is in the engine
    server-end    -> "server-end"     the operator and the server end are ready (needs "cluster-side")
    local-end     -> "local-end"      the tunnel's local end and DNS (needs all four above)
    tunnel        -> "tunnel"         traffic flows through the tunnel (needs "local-end")
    steer         -> "steered"        this client's bridges lead to their local containers again
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio

from gefyra import errors
from gefyra.client import api_relay, bridge, bridge_objects, cluster_side, manifests, tunnel_endpoint
from gefyra.core.engine.orchestrator import OperationContext
from gefyra.core.engine.steps import Step
from gefyra.core.engine.waiting import wait_until
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model.crd import ClientStatus, GefyraClient, client_body, parse_client
from gefyra.core.model.names import CLIENTS, GEFYRA_NAMESPACE, LABEL_ENDPOINT, LABEL_PUBLIC_KEY, LABEL_ROUTES
from gefyra.core.spi.tunnel import KeyPair, LocalEnd, Tunnel


@dataclasses.dataclass
class ConnectContext(OperationContext):
    """What the steps of `up` and `down` work with."""

    keys: KeyPair | None = None
    status: ClientStatus = ClientStatus()
    #: HOST:PORT at which the local end reaches the server end (chosen when the local end is made).
    endpoint: str = ""
    #: What `down` removed, for the user.
    removed: list[str] = dataclasses.field(default_factory=list)

    @property
    def tunnel(self) -> Tunnel:
        return self.orchestrator.tunnel()

    @property
    def local_end(self) -> str:
        return self.tunnel.local_name(self.settings)

    @property
    def port(self) -> int:
        """The server end's port, as installed (the session resolves the shared settings first)."""
        port = self.settings.port
        assert port is not None, "up needs the shared settings resolved (cluster_side.resolve_shared)"
        return port


def client_path(client_id: str) -> str:
    return path(CLIENTS, GEFYRA_NAMESPACE, client_id)


async def get_client(cluster: Cluster, client_id: str) -> GefyraClient | None:
    found = await cluster.get(client_path(client_id))
    return parse_client(found) if found is not None else None


class ClusterSide(Step[ConnectContext]):
    name = "cluster-side"
    title = "install gefyra's cluster side (operator, tunnel server)"
    provides = frozenset({"cluster-side"})

    async def verify(self, ctx: ConnectContext) -> bool:
        wanted = manifests.deployment(ctx.settings, ctx.tunnel)
        return cluster_side.is_current(await ctx.cluster.get(wanted), wanted)

    async def apply(self, ctx: ConnectContext) -> None:
        try:
            await cluster_side.install(ctx, await cluster_side.installed_lifecycle(ctx.cluster) or manifests.WITH_CLIENTS)
        except errors.ForbiddenError as exc:
            raise errors.ForbiddenError(
                "gefyra's cluster side is missing or outdated, and these credentials may not install it "
                f"({exc.what})", "ask a cluster admin to run `gefyra install --apply`") from exc

    async def undo(self, ctx: ConnectContext) -> None:
        if (await cluster_side.installed_lifecycle(ctx.cluster) == manifests.WITH_CLIENTS
                and not await cluster_side.other_clients(ctx.cluster, ctx.settings.client_id)):
            await cluster_side.remove(ctx.cluster, ctx.settings, ctx.tunnel, ctx.settings.timeout)


class RegisterClient(Step[ConnectContext]):
    name = "client"
    title = "register this machine as a tunnel client"
    needs = frozenset({"cluster-side"})
    provides = frozenset({"client"})

    async def verify(self, ctx: ConnectContext) -> bool:
        """This client is registered and active, and its local end runs with the registered key, on
        gefyra's network (an engine keeps a container running when its network is removed), and
        sends to the endpoint asked for (``--host``, the installed port)."""
        found = await get_client(ctx.cluster, ctx.settings.client_id)
        local_end = await ctx.runtime.get_container(ctx.local_end)
        if not found or not local_end or not local_end.running:
            return False
        ctx.endpoint = local_end.labels.get(LABEL_ENDPOINT, "")
        host, _, port = ctx.endpoint.rpartition(":")
        return (local_end.labels.get(LABEL_PUBLIC_KEY) == found.public_key and found.status.phase == "Active"
                and bool(local_end.addresses.get(ctx.settings.network_name))
                and await ctx.runtime.get_network(ctx.settings.network_name) is not None
                and (ctx.settings.host is None or host == ctx.settings.host) and port == str(ctx.port))

    async def apply(self, ctx: ConnectContext) -> None:
        keys = ctx.keys = ctx.tunnel.generate_keys()
        await ctx.cluster.apply(client_body(ctx.settings.client_id, keys.public, await ctx.cluster.username()))
        await ctx.progress(self.name, "waiting for the operator to add this client to the tunnel's server end")

        async def active_status() -> ClientStatus | None:
            found = await get_client(ctx.cluster, ctx.settings.client_id)
            mine = found is not None and found.public_key == keys.public
            return found.status if found is not None and mine and found.status.phase == "Active" else None

        timeout = ctx.settings.timeout
        ctx.status = await wait_until(active_status, timeout, errors.ReadinessTimeoutError(
            f"the operator did not register this client within {timeout:.0f}s",
            "check `kubectl -n gefyra describe pod` (are the gefyra images loaded into the cluster?) and the "
            "operator's log: `kubectl -n gefyra logs deploy/"
            f"{ctx.tunnel.server_side(ctx.settings).deployment} -c operator`"), 0.1)

    async def undo(self, ctx: ConnectContext) -> None:
        await ctx.cluster.delete(client_path(ctx.settings.client_id), foreground=False)


class LocalNetwork(Step[ConnectContext]):
    name = "network"
    title = "create the local container network"
    provides = frozenset({"network"})

    async def verify(self, ctx: ConnectContext) -> bool:
        return await ctx.runtime.get_network(ctx.settings.network_name) is not None

    async def apply(self, ctx: ConnectContext) -> None:
        # A session only on the API has the stream's MTU from its containers on. One that may use UDP
        # keeps the engine's default: cargo is on this network too, and sends UDP's datagrams (the
        # tunnel's MTU and WireGuard's header) through it; cargo clamps TCP to the tunnel's MTU.
        settings = ctx.settings
        mtu = settings.stream_mtu if settings.transport == "api" else None
        await ctx.runtime.ensure_network(settings.network_name, settings.labels("network"), mtu=mtu)

    async def undo(self, ctx: ConnectContext) -> None:
        await ctx.runtime.remove_network(ctx.settings.network_name)


class LocalImage(Step[ConnectContext]):
    name = "local-image"
    title = "pull the tunnel's local image"
    provides = frozenset({"local-image"})

    async def verify(self, ctx: ConnectContext) -> bool:
        return await ctx.runtime.image_exists(ctx.tunnel.local_image(ctx.settings))

    async def apply(self, ctx: ConnectContext) -> None:
        await ctx.runtime.pull_image(ctx.tunnel.local_image(ctx.settings), lambda line: ctx.progress(self.name, line))


class ServerEnd(Step[ConnectContext]):
    """The local end's first handshake must find the server end behind its port: a lost one costs
    seconds."""

    name = "server-end"
    title = "wait until the operator and the tunnel's server end are ready"
    needs = frozenset({"cluster-side"})
    provides = frozenset({"server-end"})

    async def verify(self, ctx: ConnectContext) -> bool:
        wanted = manifests.deployment(ctx.settings, ctx.tunnel)
        return cluster_side.is_ready(await ctx.cluster.get(wanted), wanted)

    async def apply(self, ctx: ConnectContext) -> None:
        wanted = manifests.deployment(ctx.settings, ctx.tunnel)

        async def ready() -> bool:
            current = await ctx.cluster.get(wanted)
            if cluster_side.is_ready(current, wanted):
                return True
            if current is not None and (current.get("spec") or {}).get("replicas") == 0:
                await self._scale_up(ctx, wanted)
            name = wanted["metadata"]["name"]
            failure = await cluster_side.why_not_starting(ctx.cluster, current, name)
            if failure:
                raise errors.ReadinessTimeoutError(f"the tunnel's server end ({name}) cannot start: {failure}",
                                                   "see README: What gefyra installs and may do")
            return False

        await wait_until(ready, ctx.settings.timeout, errors.ReadinessTimeoutError(
            f"the tunnel's server end did not become ready within {ctx.settings.timeout:.0f}s",
            "check `kubectl -n gefyra describe pod` and the operator's log"), 0.2)

    async def _scale_up(self, ctx: ConnectContext, wanted: dict[str, Any]) -> None:
        """Someone scaled the cluster side to 0: it runs no pod that could become ready."""
        name = wanted["metadata"]["name"]
        await ctx.progress(self.name, f"deploy/{name} is scaled to 0: scaling it to 1")
        try:
            await ctx.cluster.patch(wanted, {"spec": {"replicas": 1}})
        except errors.ForbiddenError as exc:
            raise errors.ForbiddenError(
                f"gefyra's cluster side (deploy/{name} in namespace gefyra) is scaled to 0, and these credentials "
                "may not scale it", f"ask an admin to run `kubectl -n gefyra scale deploy/{name} --replicas=1`") from exc


class LocalEndStep(Step[ConnectContext]):
    name = "local-end"
    title = "start the tunnel's local end (and its DNS)"
    needs = frozenset({"client", "network", "server-end", "local-image"})
    provides = frozenset({"local-end"})

    async def verify(self, ctx: ConnectContext) -> bool:
        return ctx.keys is None  # registration was skipped: the local end runs with the registered key

    async def apply(self, ctx: ConnectContext) -> None:
        assert ctx.keys is not None, "the client step sets the keys"
        settings, tunnel = ctx.settings, ctx.tunnel
        network = await cluster_side.cluster_network(ctx.cluster)
        routes = [f"{tunnel.server_address}/32", settings.service_cidr or network.service_cidr,
                  *(settings.pod_cidrs or network.pod_cidrs)]
        dns = ctx.orchestrator.dns().setup(tunnel.dns_dir, network.dns_ip, settings.cluster_domain)
        chosen = tunnel_endpoint.choose(tunnel_endpoint.Known(
            api_host=ctx.cluster.api_host, node_addresses=network.node_addresses,
            vm_gateway=await ctx.runtime.vm_host_gateway(), context=ctx.cluster.context_name,
            serving_nodes=await cluster_side.nodes_serving_node_port(ctx.cluster, tunnel.server_side(settings))),
            settings.host)
        ctx.endpoint = f"{chosen.host}:{ctx.port}"
        local_network = await ctx.runtime.get_network(settings.network_name)
        await ctx.progress(self.name, f"tunnel endpoint {ctx.endpoint} ({chosen.why})")
        await tunnel.start_local_end(ctx.runtime, settings, LocalEnd(
            name=ctx.local_end, network=settings.network_name,
            labels=settings.labels("cargo") | {LABEL_PUBLIC_KEY: ctx.keys.public, LABEL_ROUTES: " ".join(routes),
                                               LABEL_ENDPOINT: ctx.endpoint},
            keys=ctx.keys, address=ctx.status.address, server_public_key=ctx.status.server_public_key,
            endpoint=ctx.endpoint, routes=routes, mtu=settings.tunnel_mtu, stream_mtu=settings.stream_mtu, dns=dns,
            network_address=local_network.reserved if local_network else ""))

    async def undo(self, ctx: ConnectContext) -> None:
        await ctx.runtime.remove_container(ctx.local_end)


class TunnelProbe(Step[ConnectContext]):
    """Traffic flows through the tunnel, over the transport asked for. ``auto`` tries UDP for
    AUTO_PROBE seconds while the relay through the Kubernetes API starts beside it, and takes the
    API when UDP brought no handshake (a session already on the API is tried there first). Either
    way the local end keeps UDP as its preferred endpoint and the relay as its fallback: it moves
    between them by itself when one stops or starts working."""

    name = "tunnel"
    changes = False
    title = "check that traffic flows through the tunnel"
    needs = frozenset({"local-end"})
    provides = frozenset({"tunnel"})
    TIMEOUT = 30.0
    AUTO_PROBE = 3.0

    async def apply(self, ctx: ConnectContext) -> None:
        probe = ((await cluster_side.cluster_network(ctx.cluster)).api_service_ip, 443)
        wanted = ctx.settings.transport
        streams = ctx.tunnel.server_side(ctx.settings).stream_port is not None
        if wanted == "api" and not streams:
            raise errors.UsageError(f"the {ctx.tunnel.name} tunnel's server end takes no stream: --transport api is "
                                    "not possible with it", "use --transport udp")
        if wanted != "api":
            await self._warn_of_stream_mtu(ctx)
        if wanted == "udp" or not streams:
            await api_relay.stop(ctx.settings.client_id)
            await ctx.tunnel.set_endpoint(ctx.runtime, ctx.local_end, ctx.endpoint)
            await self._connected(ctx, probe, "udp")
        elif wanted == "api":
            relay = await self._relay(ctx)
            await ctx.tunnel.set_endpoint(ctx.runtime, ctx.local_end, relay.endpoint, stream=relay.endpoint)
            await self._connected(ctx, probe, "api")
        else:
            await self._auto(ctx, probe)

    async def _auto(self, ctx: ConnectContext, probe: tuple[str, int]) -> None:
        tunnel, runtime, name = ctx.tunnel, ctx.runtime, ctx.local_end
        relay = api_relay.running(ctx.settings.client_id)
        if relay is not None and relay.endpoint == await tunnel.endpoint(runtime, name):
            # A session on the API: kept as it is if it works (the local end tries UDP by itself).
            await tunnel.set_endpoint(runtime, name, ctx.endpoint, fallback=relay.endpoint, current=relay.endpoint,
                                      stream=relay.endpoint)
            if await self._works(ctx, probe, self.AUTO_PROBE):
                await ctx.progress(self.name, self._over("api", ctx))
                return
        started: list[api_relay.RelayState] = []
        failure: errors.GefyraError | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._relay_beside, ctx, started)
            try:  # raised here, not as a task group's ExceptionGroup
                await tunnel.set_endpoint(runtime, name, ctx.endpoint)
                udp = await self._works(ctx, probe, self.AUTO_PROBE)
            except errors.GefyraError as exc:
                failure = exc
        if failure is not None:
            await api_relay.stop(ctx.settings.client_id)
            raise failure
        if not started:  # the relay could not start: UDP or nothing
            if udp:
                await ctx.progress(self.name, self._over("udp", ctx))
            else:
                await self._connected(ctx, probe, "udp")
            return
        fallback = started[0].endpoint
        if udp:
            await tunnel.set_endpoint(runtime, name, ctx.endpoint, fallback=fallback, stream=fallback)
            await ctx.progress(self.name, self._over("udp", ctx))
            return
        await ctx.progress(self.name, f"no handshake over UDP with {ctx.endpoint} within {self.AUTO_PROBE:.0f} s: "
                                      "through the Kubernetes API")
        await tunnel.set_endpoint(runtime, name, ctx.endpoint, fallback=fallback, current=fallback, stream=fallback)
        await self._connected(ctx, probe, "api")

    async def _warn_of_stream_mtu(self, ctx: ConnectContext) -> None:
        """A session that `up --transport api` began has the stream's MTU on its containers' network;
        from here on its local end clamps new connections to UDP's, but the connections opened before
        keep their larger segments, which UDP would carry only as IP fragments. Said when it leaves
        the API (not again at each `up` after)."""
        relay = api_relay.running(ctx.settings.client_id)
        if relay is None or relay.endpoint != await ctx.tunnel.endpoint(ctx.runtime, ctx.local_end):
            return
        network = await ctx.runtime.get_network(ctx.settings.network_name)
        if network is not None and network.mtu is not None and network.mtu > ctx.settings.tunnel_mtu:
            await ctx.progress(self.name, f"this session began on the Kubernetes API alone (MTU {network.mtu}): "
                                          "connections opened since then keep larger packets than UDP carries whole; "
                                          "reopen them if large transfers stall (or `gefyra down`, then `up`)")

    async def _relay_beside(self, ctx: ConnectContext, started: list[api_relay.RelayState]) -> None:
        """The relay, started while UDP is tried. Once begun, a start is finished (a half-started
        process would be left behind); a failure leaves the local end without a fallback (UDP's
        own attempt reports what is wrong)."""
        with anyio.CancelScope(shield=True):
            try:
                started.append(await self._relay(ctx))
            except errors.GefyraError as exc:
                await ctx.progress(self.name, f"no fallback through the Kubernetes API: {exc.what}")

    async def _works(self, ctx: ConnectContext, probe: tuple[str, int], timeout: float) -> bool:
        try:
            await ctx.tunnel.wait_connected(ctx.runtime, ctx.local_end, probe, timeout)
        except errors.ReadinessTimeoutError:
            return False
        return True

    async def _connected(self, ctx: ConnectContext, probe: tuple[str, int], way: str) -> None:
        """Waits for traffic over ``way``; a failure says what it found (the relay ends with it)."""
        try:
            await ctx.tunnel.wait_connected(ctx.runtime, ctx.local_end, probe, min(self.TIMEOUT, ctx.settings.timeout))
        except errors.ReadinessTimeoutError as exc:
            # A relay that carries nothing ends with `up`; its log stays for the message below.
            await api_relay.stop(ctx.settings.client_id, keep_log=True)
            raise await self._explained(ctx, exc, probe[0], way) from exc
        await ctx.progress(self.name, self._over(way, ctx))

    @staticmethod
    def _over(way: str, ctx: ConnectContext) -> str:
        return f"over UDP to {ctx.endpoint}" if way == "udp" else \
            "over the Kubernetes API (a port-forward to the tunnel's server end)"

    async def _relay(self, ctx: ConnectContext) -> api_relay.RelayState:
        """This client's relay through the Kubernetes API, running."""
        network = await ctx.runtime.get_network(ctx.settings.network_name)
        local_end = await ctx.runtime.get_container(ctx.local_end)
        peer = local_end.addresses.get(ctx.settings.network_name) if local_end else None
        if network is None or not network.gateway or not peer:
            raise errors.GefyraError(f"the tunnel's local end is not on gefyra's network {ctx.settings.network_name}",
                                     "run `gefyra down`, then `gefyra up`")
        side = ctx.tunnel.server_side(ctx.settings)
        selector = manifests.deployment(ctx.settings, ctx.tunnel)["spec"]["selector"]["matchLabels"]
        assert side.stream_port is not None, "only a server end that takes a stream is reached through the API"
        return await api_relay.start(ctx.settings.client_id, api_relay.RelayConfig(
            kubeconfig=ctx.settings.kubeconfig, context=ctx.settings.context, namespace=GEFYRA_NAMESPACE,
            selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())), port=side.stream_port,
            listen=network.gateway, peer=peer))

    async def _explained(self, ctx: ConnectContext, exc: errors.ReadinessTimeoutError, api_ip: str,
                         way: str) -> errors.GefyraError:
        where = ctx.endpoint if way == "udp" else "the Kubernetes API (relay log: " \
            f"{api_relay.log_path(ctx.settings.client_id)})"
        if await ctx.tunnel.latest_handshake(ctx.runtime, ctx.local_end) is None:
            return errors.ReadinessTimeoutError(f"{exc.what} (endpoint {where or 'unknown'})", exc.hint)
        # The ends found each other: the path is fine, what is behind them is not.
        return errors.ReadinessTimeoutError(
            f"the tunnel's ends shake hands (over {where}), but no connection to the cluster's API Service "
            f"{api_ip}:443 passes through it", "make the local end anew: `gefyra down`, then `gefyra up`; if that "
            "does not help, see the operator's log")


class SteerAgain(Step[ConnectContext]):
    """This client's bridges lead into the local end's steering: a local end made anew has none."""

    name = "steer"
    title = "steer this client's bridges to their local containers"
    needs = frozenset({"tunnel"})
    provides = frozenset({"steered"})

    async def verify(self, ctx: ConnectContext) -> bool:
        return not await bridge_objects.list_bridges(ctx.cluster, ctx.settings.client_id)

    async def apply(self, ctx: ConnectContext) -> None:
        await bridge.steer_again(ctx)


def up_plan() -> list[Step[ConnectContext]]:
    return [ClusterSide(), RegisterClient(), LocalNetwork(), LocalImage(), ServerEnd(), LocalEndStep(), TunnelProbe(),
            SteerAgain()]
