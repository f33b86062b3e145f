"""The tunnel's peers follow the GefyraClient objects. Level-based: each round compares the
wanted peers with the server end's and adds or removes the difference (never restarting it).

A client whose peer has received nothing (not even its keepalives) for the client timeout is
silent (a laptop asleep, a network gone): its bridges give their traffic back to the workloads, but
its registration and its peer stay, so that it goes on where it was when it speaks again. A client
silent for the client expiry is gone: its GefyraClient is deleted, and with it its peer and its
bridges. A client whose public key is malformed or already taken by another client is reported on
its status and skipped."""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from pathlib import Path

import structlog

from gefyra import errors
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model.crd import ClientStatus, GefyraClient, parse_client, status_patch
from gefyra.core.model.names import CLIENTS
from gefyra.core.spi.tunnel import Tunnel, TunnelServer

log = structlog.get_logger("gefyra.operator")

#: The server's public key, as the operator's container gets it (never the private key).
SERVER_PUBLIC_KEY = Path("/etc/gefyra/server/public-key")


@dataclasses.dataclass(frozen=True)
class ActiveClient:
    """A client whose peer is in the tunnel."""

    address: str
    #: The Kubernetes user who registered it (its bridges must be that user's too).
    owner: str


#: The phase of a client that has been silent for the client timeout.
SILENT = "Silent"


@dataclasses.dataclass
class Roster:
    """The clients of one round: the active ones by name, and the names of the silent ones (whose
    bridges stay, without their traffic)."""

    active: dict[str, ActiveClient] = dataclasses.field(default_factory=dict)
    silent: set[str] = dataclasses.field(default_factory=set)


class Clients:
    """Reconciles the GefyraClient objects with the tunnel server end's peers (see the module)."""

    def __init__(self, cluster: Cluster, namespace: str, tunnel: Tunnel, server: TunnelServer, timeout: float,
                 expiry: float) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.network = ipaddress.ip_network(tunnel.network)
        self.server_address = tunnel.server_address
        self.server = server
        self.timeout = timeout
        self.expiry = expiry
        #: public key -> (received bytes, when that number last changed)
        self._received: dict[str, tuple[int, float]] = {}

    def _allocate(self, taken: set[str]) -> str:
        for host in self.network.hosts():
            address = str(host)
            if address != self.server_address and address not in taken:
                return address
        raise RuntimeError("the tunnel's address range is exhausted")

    def _valid_address(self, text: str) -> bool:
        try:
            return ipaddress.ip_address(text) in self.network and text != self.server_address
        except ValueError:
            return False

    async def _silences(self) -> dict[str, float]:
        """Peers that have received nothing for longer than the timeout: public key -> seconds."""
        now, silent = time.monotonic(), {}
        for key, received in (await self.server.received()).items():
            last = self._received.get(key)
            if last is None or last[0] != received:
                self._received[key] = (received, now)
            elif now - last[1] > self.timeout:
                silent[key] = now - last[1]
        return silent

    def _server_public_key(self) -> str:
        key = SERVER_PUBLIC_KEY.read_text().strip()
        if not self.server.is_public_key(key):
            raise RuntimeError(f"{SERVER_PUBLIC_KEY} holds no public key of the tunnel")
        return key

    async def _set_status(self, found: GefyraClient, status: ClientStatus) -> ClientStatus | None:
        """Writes ``status``; None when the cluster refuses it for this object (it was deleted, or
        does not validate): that client is skipped this round, the others go on. A cluster that
        does not answer fails the round."""
        patch = status_patch(found.status_json, status)
        if patch:
            try:
                await self.cluster.request("PATCH", path(CLIENTS, self.namespace, found.name, "status"), patch,
                                           content_type="application/merge-patch+json")
            except errors.ClusterUnreachableError:
                raise
            except errors.GefyraError as exc:
                log.warning("client status refused; skipping the client this round", client=found.name, error=exc.what)
                return None
        return status

    async def sync(self) -> Roster:
        """One round; returns the active clients and the silent ones."""
        clients = sorted(map(parse_client, await self.cluster.objects(path(CLIENTS, self.namespace))),
                         key=lambda c: c.created)
        server_key = self._server_public_key()
        taken = {c.status.address for c in clients if self._valid_address(c.status.address)}
        wanted: dict[str, str] = {}  # public key -> address
        active: list[tuple[GefyraClient, ClientStatus]] = []
        for item in clients:
            problem = ("spec.publicKey is not a public key of the tunnel" if not self.server.is_public_key(item.public_key)
                       else "spec.publicKey is already used by another client" if item.public_key in wanted else None)
            if problem:
                if item.status.phase != "Invalid" or item.status.message != problem:
                    await self._set_status(item, ClientStatus(phase="Invalid", message=problem))
                    log.warning("client refused", client=item.name, reason=problem)
                continue
            status = item.status
            if not self._valid_address(status.address):
                address = self._allocate(taken)
                taken.add(address)
                written = await self._set_status(item, ClientStatus(address, server_key, "Pending"))
                if written is None:
                    continue
                status = written
                log.info("address allocated", client=item.name, address=address)
            wanted[item.public_key] = status.address
            active.append((item, status))

        current = await self.server.peers()
        for key in current.keys() - wanted.keys():
            await self.server.remove_peer(key)
        for key, address in wanted.items():
            if current.get(key) != address:
                await self.server.set_peer(key, address)

        silences = await self._silences()
        roster = Roster()
        for item, status in active:
            silence = silences.get(item.public_key)
            if silence is not None and silence > self.expiry:
                log.info("client silent for its expiry; removing it", client=item.name, expiry=self.expiry)
                await self.cluster.delete(path(CLIENTS, self.namespace, item.name), foreground=False)
                self._received.pop(item.public_key, None)
                continue
            if silence is not None:
                if status.phase != SILENT:
                    log.info("client silent; its bridges give their traffic back", client=item.name,
                             timeout=self.timeout)
                    await self._set_status(dataclasses.replace(item, status=status), dataclasses.replace(
                        status, phase=SILENT, message=f"nothing received for more than {self.timeout:.0f} s: its "
                                                      "bridges give their traffic back until it speaks again"))
                roster.silent.add(item.name)
                continue
            if status.phase != "Active":
                await self._set_status(dataclasses.replace(item, status=status),
                                       dataclasses.replace(status, phase="Active", server_public_key=server_key,
                                                           message=""))
            roster.active[item.name] = ActiveClient(wanted[item.public_key], item.owner)
        return roster
