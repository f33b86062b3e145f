"""The tunnel's peers follow the GefyraClient objects. Level-based: each round compares the
wanted peers with ``wg show`` and adds or removes the difference. Peers are changed on the running
interface; stowaway is never restarted for a client.

A client whose peer has received nothing (not even its keepalives) for GEFYRA_CLIENT_TIMEOUT
seconds is gone: its GefyraClient is deleted, and with it its peer and its bridges."""

from __future__ import annotations

import base64
import ipaddress
import os
import time

import anyio
import structlog
from kubernetes_asyncio import client

from gefyra.core.config import CRD_GROUP, CRD_VERSION, TUNNEL_NETWORK, TUNNEL_SERVER_ADDRESS

log = structlog.get_logger("gefyra.operator")

_PLURAL = "gefyraclients"
_INTERFACE = "wg0"


async def _wg(*args: str) -> str:
    result = await anyio.run_process(["wg", *args], check=True)
    return result.stdout.decode()


async def _current_peers() -> dict[str, str]:
    """public key -> allowed IPs, as the running interface has them."""
    peers = {}
    for line in (await _wg("show", _INTERFACE, "allowed-ips")).splitlines():
        key, _, ips = line.partition("\t")
        peers[key] = ips.strip()
    return peers


def _allocate(taken: set[str]) -> str:
    network = ipaddress.ip_network(TUNNEL_NETWORK)
    for host in network.hosts():
        address = str(host)
        if address != TUNNEL_SERVER_ADDRESS and address not in taken:
            return address
    raise RuntimeError("the tunnel's address range is exhausted")


class Peers:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.timeout = float(os.environ.get("GEFYRA_CLIENT_TIMEOUT", "60"))
        #: public key -> (received bytes, when that number last changed)
        self._received: dict[str, tuple[int, float]] = {}

    async def _silent_keys(self) -> set[str]:
        """Peers that have received nothing for longer than the timeout."""
        now, silent = time.monotonic(), set()
        for line in (await _wg("show", _INTERFACE, "transfer")).splitlines():
            key, received = line.split("\t")[0], int(line.split("\t")[1])
            last = self._received.get(key)
            if last is None or last[0] != received:
                self._received[key] = (received, now)
            elif now - last[1] > self.timeout:
                silent.add(key)
        return silent

    async def _server_public_key(self) -> str:
        secret = await self.core.read_namespaced_secret("gefyra-stowaway-key", self.namespace)
        return base64.b64decode(secret.data["public-key"]).decode()

    async def _patch_status(self, name: str, status: dict[str, str]) -> None:
        await self.custom.patch_namespaced_custom_object_status(
            CRD_GROUP, CRD_VERSION, self.namespace, _PLURAL, name, {"status": status},
            _content_type="application/merge-patch+json")

    async def sync(self) -> dict[str, str]:
        """One round; returns the active clients' tunnel addresses by client name."""
        listing = await self.custom.list_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.namespace, _PLURAL)
        clients = sorted(listing["items"], key=lambda c: c["metadata"]["creationTimestamp"])
        server_key = await self._server_public_key()
        taken = {c.get("status", {}).get("address") for c in clients} - {None}
        wanted: dict[str, str] = {}
        for item in clients:
            name, status = item["metadata"]["name"], item.get("status") or {}
            address = status.get("address")
            if not address:
                address = _allocate(taken)  # type: ignore[arg-type]
                taken.add(address)
                await self._patch_status(name, {"address": address, "serverPublicKey": server_key, "phase": "Pending"})
                log.info("address allocated", client=name, address=address)
            wanted[item["spec"]["publicKey"]] = f"{address}/32"

        current = await _current_peers()
        for key in current.keys() - wanted.keys():
            await _wg("set", _INTERFACE, "peer", key, "remove")
            log.info("peer removed", public_key=key)
        for key, ips in wanted.items():
            if current.get(key) != ips:
                await _wg("set", _INTERFACE, "peer", key, "allowed-ips", ips)
                log.info("peer added", public_key=key, allowed_ips=ips)

        silent = await self._silent_keys()
        for item in list(clients):
            if item["spec"]["publicKey"] in silent:
                log.info("client silent; removing it", client=item["metadata"]["name"], timeout=self.timeout)
                await self.custom.delete_namespaced_custom_object(
                    CRD_GROUP, CRD_VERSION, self.namespace, _PLURAL, item["metadata"]["name"])
                clients.remove(item)
                self._received.pop(item["spec"]["publicKey"], None)
            elif (item.get("status") or {}).get("phase") != "Active":
                await self._patch_status(item["metadata"]["name"], {"phase": "Active", "serverPublicKey": server_key})
        return {c["metadata"]["name"]: wanted[c["spec"]["publicKey"]].removesuffix("/32") for c in clients}
