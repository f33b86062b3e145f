"""`gefyra operator`: runs as a container of the stowaway pod and reconciles gefyra's custom
resources: tunnel peers (GefyraClient) and bridges (GefyraBridge). State lives in those objects,
so a restarted operator simply carries on.

It is an embedder like any other: it builds the same plugin manager as the client (built-in
plugins and those installed in its image through the ``gefyra`` entry-point group) and reaches
the tunnel's server end and the interceptors only through the tunnel and interceptor plugins.

Rounds are level-based: one runs every INTERVAL seconds (BUSY_INTERVAL while a bridge is on its
way), and at once when a watch sees a GefyraClient or GefyraBridge change (a new client waits for
its peer) or a pod change in a namespace where a bridge has its target (a restarted container is
ready: the bridge is Ready, or Restored, a round later instead of a poll later)."""

from __future__ import annotations

import os

import anyio
import structlog
from kubernetes_asyncio import client, config, watch

from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.model.names import BRIDGES, CLIENTS, CRD_GROUP, CRD_VERSION, GEFYRA_NAMESPACE
from gefyra.core.model.settings import Settings
from gefyra.operator import http as endpoint
from gefyra.operator.bridges import Bridges
from gefyra.operator.clients import Clients
from gefyra.operator.retry import backoff
from gefyra.plugins import BUILTIN_PLUGINS

log = structlog.get_logger("gefyra.operator")

#: Seconds between two reconciliation rounds, and while a bridge is being made or removed.
INTERVAL = 1.0
BUSY_INTERVAL = 0.25
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

    async def wait(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._event.wait()
        self._event = anyio.Event()


async def _watch(custom: client.CustomObjectsApi, namespace: str, plural: str, wakeup: _Wakeup) -> None:
    while True:
        try:
            async with watch.Watch() as stream:
                async for _ in stream.stream(custom.list_namespaced_custom_object, CRD_GROUP, CRD_VERSION,
                                             namespace, plural, timeout_seconds=WATCH_SECONDS,
                                             _request_timeout=WATCH_SECONDS + WATCH_GRACE):
                    wakeup.set()
        except Exception as exc:  # noqa: BLE001 - any failure of a watch: open it again
            log.warning("watch failed; reopening", plural=plural, error=f"{type(exc).__name__}: {exc}")
            await anyio.sleep(INTERVAL)


async def _watch_pods(core: client.CoreV1Api, bridges: Bridges, wakeup: _Wakeup) -> None:
    """One watch of every pod (the operator may read pods anywhere); only pods in the bridges'
    target namespaces wake the loop, so an idle operator does no rounds for the cluster's churn."""
    while True:
        try:
            async with watch.Watch() as stream:
                async for event in stream.stream(core.list_pod_for_all_namespaces, timeout_seconds=WATCH_SECONDS,
                                                 _request_timeout=WATCH_SECONDS + WATCH_GRACE):
                    obj = event.get("object")
                    metadata = getattr(obj, "metadata", None)
                    if metadata is not None and metadata.namespace in bridges.namespaces:
                        wakeup.set()
        except Exception as exc:  # noqa: BLE001 - any failure of a watch: open it again
            log.warning("watch failed; reopening", plural="pods", error=f"{type(exc).__name__}: {exc}")
            await anyio.sleep(INTERVAL)


async def main() -> None:
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    namespace = os.environ.get("GEFYRA_NAMESPACE", GEFYRA_NAMESPACE)
    orchestrator = Orchestrator(Settings(), builtins=BUILTIN_PLUGINS)
    server = orchestrator.tunnel().server()
    await server.wait_ready()
    async with client.ApiClient() as api:
        wakeup = _Wakeup()
        health = endpoint.Health()
        clients = Clients(api, namespace, server)
        bridges = Bridges(api, namespace, orchestrator, server, os.environ["POD_IP"], wakeup.set)
        runner = await endpoint.serve(endpoint.app(health, bridges.interceptors))
        log.info("operator started", namespace=namespace, tunnel=orchestrator.tunnel().name,
                 plugins=sorted(n for n, _ in orchestrator.pm.list_name_plugin()))
        try:
            await _reconcile_forever(api, namespace, clients, bridges, wakeup, health)
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()


async def _reconcile_forever(api: client.ApiClient, namespace: str, clients: Clients, bridges: Bridges,
                             wakeup: _Wakeup, health: endpoint.Health) -> None:
    async with anyio.create_task_group() as tg:
        for plural in (CLIENTS, BRIDGES):
            tg.start_soon(_watch, client.CustomObjectsApi(api), namespace, plural, wakeup)
        tg.start_soon(_watch_pods, client.CoreV1Api(api), bridges, wakeup)
        failures = 0
        while True:
            try:
                with anyio.fail_after(ROUND_TIMEOUT):
                    await bridges.sync(await clients.sync())
                failures = 0
            except Exception as exc:  # noqa: BLE001 - any failure (API, connection, timeout): back off, try again
                failures += 1
                detail = f"{exc.status} {exc.reason}" if isinstance(exc, client.ApiException) else f"{type(exc).__name__}: {exc}"
                log.warning("round failed; retrying", error=detail, retry_in=backoff(failures))
            health.round_done()
            await wakeup.wait(backoff(failures) if failures else BUSY_INTERVAL if bridges.busy else INTERVAL)
