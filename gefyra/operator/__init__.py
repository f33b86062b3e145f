"""`gefyra operator`: runs as a container of the stowaway pod and reconciles gefyra's custom
resources: tunnel peers (GefyraClient) and bridges (GefyraBridge). State lives in those objects,
so a restarted operator simply carries on.

Rounds are level-based: one runs every INTERVAL seconds (pods come and go without telling us), and
at once when a watch sees a GefyraClient or GefyraBridge change (a new client waits for its peer)."""

from __future__ import annotations

import os
import subprocess

import anyio
import structlog
from kubernetes_asyncio import client, config, watch

from gefyra.core.config import CRD_GROUP, CRD_VERSION
from gefyra.operator.bridges import Bridges
from gefyra.operator.peers import Peers

log = structlog.get_logger("gefyra.operator")

#: Seconds between two reconciliation rounds.
INTERVAL = 1.0
#: Seconds after which a watch is opened anew (the API server ends watches on its own too).
WATCH_SECONDS = 300


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
                                             namespace, plural, timeout_seconds=WATCH_SECONDS):
                    wakeup.set()
        except (client.ApiException, OSError, TimeoutError) as exc:
            log.warning("watch failed; reopening", plural=plural, error=str(exc))
            await anyio.sleep(INTERVAL)


async def main() -> None:
    config.load_incluster_config()
    namespace = os.environ.get("GEFYRA_NAMESPACE", "gefyra")
    while not os.path.exists("/var/run/wireguard/wg0.sock"):
        await anyio.sleep(0.2)
    async with client.ApiClient() as api:
        peers = Peers(api, namespace)
        bridges = Bridges(api, namespace, os.environ["GEFYRA_CARRIER_IMAGE"], os.environ["POD_IP"])
        wakeup = _Wakeup()
        log.info("operator started", namespace=namespace)
        async with anyio.create_task_group() as tg:
            for plural in ("gefyraclients", "gefyrabridges"):
                tg.start_soon(_watch, client.CustomObjectsApi(api), namespace, plural, wakeup)
            while True:
                try:
                    await bridges.sync(await peers.sync())
                except client.ApiException as exc:
                    log.warning("round failed; retrying", status=exc.status, reason=exc.reason, body=exc.body)
                except (subprocess.CalledProcessError, OSError) as exc:
                    log.warning("round failed; retrying", error=str(exc))
                await wakeup.wait(INTERVAL)
