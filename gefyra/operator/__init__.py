"""`gefyra operator`: runs as a container of the stowaway pod and reconciles gefyra's custom
resources: tunnel peers (GefyraClient) and bridges (GefyraBridge). State lives in those objects,
so a restarted operator simply carries on."""

from __future__ import annotations

import os
import subprocess

import anyio
import structlog
from kubernetes_asyncio import client, config

from gefyra.operator.bridges import Bridges
from gefyra.operator.peers import Peers

log = structlog.get_logger("gefyra.operator")

#: Seconds between two reconciliation rounds.
INTERVAL = 1.0


async def main() -> None:
    config.load_incluster_config()
    namespace = os.environ.get("GEFYRA_NAMESPACE", "gefyra")
    while not os.path.exists("/var/run/wireguard/wg0.sock"):
        await anyio.sleep(0.2)
    async with client.ApiClient() as api:
        peers = Peers(api, namespace)
        bridges = Bridges(api, namespace, os.environ["GEFYRA_CARRIER_IMAGE"], os.environ["POD_IP"])
        log.info("operator started", namespace=namespace)
        while True:
            try:
                await bridges.sync(await peers.sync())
            except client.ApiException as exc:
                log.warning("round failed; retrying", status=exc.status, reason=exc.reason, body=exc.body)
            except (subprocess.CalledProcessError, OSError) as exc:
                log.warning("round failed; retrying", error=str(exc))
            await anyio.sleep(INTERVAL)
