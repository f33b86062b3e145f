"""The tunnel's peers follow the GefyraClient objects. Level-based: each round compares the
wanted peers with the server end's and adds or removes the difference (never restarting it).

A client whose peer has received nothing (not even its keepalives) for GEFYRA_CLIENT_TIMEOUT
seconds is gone: its GefyraClient is deleted, and with it its peer and its bridges. A client whose
public key is malformed or already taken by another client is reported on its status and skipped."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import structlog
from kubernetes_asyncio import client

from gefyra.core.kube import cluster as kube
from gefyra.core.model.names import CLIENTS, CRD_GROUP, CRD_VERSION, TUNNEL_NETWORK, TUNNEL_SERVER_ADDRESS
from gefyra.core.spi.tunnel import TunnelServer

log = structlog.get_logger("gefyra.operator")

#: The server's public key, as the operator's container gets it (never the private key).
SERVER_PUBLIC_KEY = Path("/etc/gefyra/server/public-key")


@dataclasses.dataclass(frozen=True)
class ActiveClient:
    """A client whose peer is in the tunnel."""

    address: str
    #: The Kubernetes user who registered it (its bridges must be that user's too).
    owner: str


def _allocate(taken: set[str]) -> str:
    network = ipaddress.ip_network(TUNNEL_NETWORK)
    for host in network.hosts():
        address = str(host)
        if address != TUNNEL_SERVER_ADDRESS and address not in taken:
            return address
    raise RuntimeError("the tunnel's address range is exhausted")


def _valid_address(text: Any) -> bool:
    try:
        return (isinstance(text, str) and ipaddress.ip_address(text) in ipaddress.ip_network(TUNNEL_NETWORK)
                and text != TUNNEL_SERVER_ADDRESS)
    except ValueError:
        return False


class Clients:
    def __init__(self, api: client.ApiClient, namespace: str, server: TunnelServer) -> None:
        self.api = api
        self.namespace = namespace
        self.server = server
        self.custom = client.CustomObjectsApi(api)
        self.timeout = float(os.environ.get("GEFYRA_CLIENT_TIMEOUT", "60"))
        #: public key -> (received bytes, when that number last changed)
        self._received: dict[str, tuple[int, float]] = {}

    async def _silent_keys(self) -> set[str]:
        """Peers that have received nothing for longer than the timeout."""
        now, silent = time.monotonic(), set()
        for key, received in (await self.server.received()).items():
            last = self._received.get(key)
            if last is None or last[0] != received:
                self._received[key] = (received, now)
            elif now - last[1] > self.timeout:
                silent.add(key)
        return silent

    def _server_public_key(self) -> str:
        key = SERVER_PUBLIC_KEY.read_text().strip()
        if not self.server.is_public_key(key):
            raise RuntimeError(f"{SERVER_PUBLIC_KEY} holds no public key of the tunnel")
        return key

    async def _patch_status(self, name: str, status: dict[str, str]) -> None:
        await kube.request(self.api, "PATCH", kube.custom_path(self.namespace, CLIENTS, name, "status"),
                           {"status": status}, content_type=kube.MERGE_PATCH)

    async def sync(self) -> dict[str, ActiveClient]:
        """One round; returns the active clients by name."""
        listing = await self.custom.list_namespaced_custom_object(CRD_GROUP, CRD_VERSION, self.namespace, CLIENTS)
        clients = sorted(listing["items"], key=lambda c: c["metadata"]["creationTimestamp"])
        server_key = self._server_public_key()
        taken: set[str] = {str((c.get("status") or {})["address"]) for c in clients
                           if _valid_address((c.get("status") or {}).get("address"))}
        wanted: dict[str, str] = {}  # public key -> address
        active: list[dict[str, Any]] = []
        for item in clients:
            name, status = item["metadata"]["name"], item.get("status") or {}
            key = (item.get("spec") or {}).get("publicKey", "")
            well_formed = isinstance(key, str) and self.server.is_public_key(key)
            problem = ("spec.publicKey is not a public key of the tunnel" if not well_formed
                       else "spec.publicKey is already used by another client" if key in wanted else None)
            if problem:
                if status.get("phase") != "Invalid" or status.get("message") != problem:
                    await self._patch_status(name, {"phase": "Invalid", "message": problem})
                    log.warning("client refused", client=name, reason=problem)
                continue
            address = str(status.get("address"))
            if not _valid_address(address):
                address = _allocate(taken)
                taken.add(address)
                await self._patch_status(name, {"address": address, "serverPublicKey": server_key, "phase": "Pending"})
                log.info("address allocated", client=name, address=address)
            wanted[key] = address
            active.append(item)

        current = await self.server.peers()
        for key in current.keys() - wanted.keys():
            await self.server.remove_peer(key)
        for key, address in wanted.items():
            if current.get(key) != address:
                await self.server.set_peer(key, address)

        silent = await self._silent_keys()
        for item in list(active):
            key = item["spec"]["publicKey"]
            if key in silent:
                log.info("client silent; removing it", client=item["metadata"]["name"], timeout=self.timeout)
                await self.custom.delete_namespaced_custom_object(
                    CRD_GROUP, CRD_VERSION, self.namespace, CLIENTS, item["metadata"]["name"])
                active.remove(item)
                self._received.pop(key, None)
            elif (item.get("status") or {}).get("phase") != "Active":
                await self._patch_status(item["metadata"]["name"], {"phase": "Active", "serverPublicKey": server_key,
                                                                    "message": ""})
        return {c["metadata"]["name"]: ActiveClient(wanted[c["spec"]["publicKey"]], _owner(c)) for c in active}


def _owner(item: dict[str, Any]) -> str:
    owner = (item.get("spec") or {}).get("owner")
    return owner if isinstance(owner, str) else ""
