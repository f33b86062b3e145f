"""`gefyra operator`: runs in the cluster side's pod, beside the tunnel's server end, and reconciles gefyra's custom
resources: tunnel peers (GefyraClient) and bridges (GefyraBridge). State lives in those objects,
so a restarted operator simply carries on.

It is an embedder like any other: it builds the same plugin manager as the client (built-in
plugins and those installed in its image through the ``gefyra`` entry-point group) and reaches
the tunnel's server end and the interceptors only through the tunnel and interceptor plugins.

Rounds are level-based: one runs every INTERVAL seconds (BUSY_INTERVAL while a bridge is on its
way), and at once when a watch sees a GefyraClient or GefyraBridge change (a new client waits for
its peer) or a change of a pod, Service or EndpointSlice in a namespace where a bridge has its
target (a restarted container is ready: the bridge is Ready, or Restored, a round later instead of
a poll later; a Service's selector changed by hand is healed at once); those are watched in such
namespaces only. Every round looks at the clients (their silences are measured, not announced);
the bridges, which cost a dozen API requests per bridged workload, are looked at in a round that
a watch woke, while one is on its way, when the clients changed, and otherwise every
IDLE_BRIDGES_INTERVAL seconds as a safety net for an event that was missed."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import structlog

from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model.names import BRIDGES, CLIENTS
from gefyra.core.model.settings import Settings
from gefyra.operator import http
from gefyra.operator.bridges import Bridges
from gefyra.operator.clients import Clients
from gefyra.operator.retry import backoff
from gefyra.operator.settings import OperatorSettings
from gefyra.plugins import BUILTIN_PLUGINS

log = structlog.get_logger("gefyra.operator")

#: Seconds between two reconciliation rounds, and while a bridge is being made or removed.
INTERVAL = 1.0
BUSY_INTERVAL = 0.25
IDLE_BRIDGES_INTERVAL = 10.0
#: What is watched in each namespace where a bridge has its target (and in gefyra's own).
WATCHED_IN_BRIDGED_NAMESPACES = ("pods", "services", "endpointslices")
#: Seconds after which a watch is opened anew (the API server ends watches on its own too); a
#: watch that has not ended WATCH_GRACE seconds later is cut by the client (a connection the API
#: server dropped without a word).
WATCH_SECONDS = 300
WATCH_GRACE = 30
#: Seconds one reconcile round may take: a call that hangs ends the round, the next starts afresh
#: (after a pause that grows with each failure in a row: gefyra.operator.retry).
ROUND_TIMEOUT = 60.0


class _Wakeup:
    """Wakes the reconcile loop early. A change seen while a round runs wakes the next wait at once."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Waits for a change or ``timeout`` seconds; True if a change ended the wait."""
        with anyio.move_on_after(timeout):
            await self._event.wait()
        woken = self._event.is_set()
        self._event = anyio.Event()
        return woken


async def _watch(cluster: Cluster, collection: str, wakeup: _Wakeup) -> None:
    """Wakes the loop on every change of ``collection``, forever: a watch that ends or fails is
    opened again."""
    while True:
        try:
            async for _ in cluster.watch(collection, seconds=WATCH_SECONDS, grace=WATCH_GRACE):
                wakeup.set()
        except Exception as exc:  # noqa: BLE001 - any failure of a watch: open it again
            log.warning("watch failed; reopening", collection=collection, error=f"{type(exc).__name__}: {exc}")
            await anyio.sleep(INTERVAL)


async def _watch_namespaces(cluster: Cluster, namespaces: Callable[[], set[str]], wakeup: _Wakeup) -> None:
    """Watches of the pods, Services and EndpointSlices of each namespace where a bridge has its
    target (and gefyra's own), opened and closed as bridges come and go: what the operator is sent
    does not grow with the cluster's objects and their churn, only with the bridged namespaces'."""
    watching: dict[str, anyio.CancelScope] = {}

    async def watch(namespace: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with anyio.create_task_group() as group:
                for plural in WATCHED_IN_BRIDGED_NAMESPACES:
                    group.start_soon(_watch, cluster, path(plural, namespace), wakeup)

    async with anyio.create_task_group() as tg:
        while True:
            wanted = set(namespaces())
            for namespace in sorted(wanted - watching.keys()):
                watching[namespace] = anyio.CancelScope()
                tg.start_soon(watch, namespace, watching[namespace])
            for namespace in sorted(watching.keys() - wanted):
                watching.pop(namespace).cancel()
            await anyio.sleep(INTERVAL)


async def main() -> None:
    settings = OperatorSettings.from_environment()
    orchestrator = Orchestrator(Settings(), builtins=BUILTIN_PLUGINS)
    tunnel = orchestrator.tunnel()
    server = tunnel.server()
    await server.wait_ready()
    cluster = await Cluster.in_cluster(orchestrator.settings)
    try:
        wakeup = _Wakeup()
        health = http.Health()
        clients = Clients(cluster, settings.namespace, tunnel, server, settings.client_timeout,
                          settings.client_expiry)
        bridges = Bridges(cluster, settings.namespace, orchestrator, server, settings.pod_ip, wakeup.set)
        runner = await http.serve(http.app(health, bridges.interceptors, lambda: {
            "api_requests": cluster.requests, "watch_events": cluster.watch_events}))
        log.info("operator started", namespace=settings.namespace, tunnel=tunnel.name,
                 plugins=sorted(p.name for p in orchestrator.plugins()))
        try:
            await _reconcile_forever(cluster, settings.namespace, clients, bridges, wakeup, health)
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()
    finally:
        with anyio.CancelScope(shield=True):
            await cluster.close()


def _bridges_due(woken: bool, busy: bool, clients_changed: bool, since: float) -> bool:
    """Whether a round looks at the bridges, ``since`` seconds after it last did."""
    return woken or busy or clients_changed or since >= IDLE_BRIDGES_INTERVAL


async def _reconcile_forever(cluster: Cluster, namespace: str, clients: Clients, bridges: Bridges,
                             wakeup: _Wakeup, health: http.Health) -> None:
    async with anyio.create_task_group() as tg:
        for plural in (CLIENTS, BRIDGES):
            tg.start_soon(_watch, cluster, path(plural, namespace), wakeup)
        tg.start_soon(_watch_namespaces, cluster, lambda: bridges.namespaces, wakeup)
        failures = 0
        woken, last_roster, bridges_looked_at = True, None, 0.0
        while True:
            try:
                with anyio.fail_after(ROUND_TIMEOUT):
                    roster = await clients.sync()
                    if _bridges_due(woken, bridges.busy, roster != last_roster,
                                    anyio.current_time() - bridges_looked_at):
                        bridges_looked_at = anyio.current_time()
                        last_roster = None  # until this look succeeds
                        await bridges.sync(roster)
                        last_roster = roster
                failures = 0
            except Exception as exc:  # noqa: BLE001 - any failure (API, connection, timeout): back off, try again
                failures += 1
                log.warning("round failed; retrying", error=f"{type(exc).__name__}: {exc}", retry_in=backoff(failures))
            health.round_done()
            woken = await wakeup.wait(backoff(failures) if failures else BUSY_INTERVAL if bridges.busy else INTERVAL)
