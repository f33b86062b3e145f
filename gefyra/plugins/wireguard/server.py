"""The WireGuard tunnel's server end, stowaway, as the operator drives it from the same pod: peers
over wireguard-go's UAPI socket (`wg set`, the interface is never restarted), and forwards of
stowaway's ports into the tunnel over its control socket (one JSON request per line; the former
kernel-path stowaway has none, and gets iptables rules in the pod's network namespace instead).
Commands get argument lists only, and every key and address is checked before it is used."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import structlog
from anyio.streams.buffered import BufferedByteReceiveStream

from gefyra import errors
from gefyra.core.model import validation
from gefyra.core.spi.tunnel import ServerForward, TunnelServer
from gefyra.plugins.wireguard import keys

log = structlog.get_logger("gefyra.operator")

#: The tunnel's own range: stowaway is .1, each client gets one address. RFC 2544's benchmarking
#: range, chosen because local and cluster networks practically never use it.
TUNNEL_NETWORK = "198.18.0.0/16"
TUNNEL_SERVER_ADDRESS = "198.18.0.1"
INTERFACE = "wg0"
SOCKET = f"/var/run/wireguard/{INTERFACE}.sock"
#: stowaway's control socket (bridges). Not named *.sock: `wg show all` would take it for an interface.
CONTROL_SOCKET = "/var/run/wireguard/control"
#: The longest answer read from the control socket.
_CONTROL_ANSWER_LIMIT = 1 << 20
#: stowaway's chain of DNAT rules, from its ports to the clients' tunnel addresses.
FORWARD_CHAIN = "GEFYRA-BRIDGES"
#: Seconds between the server end's keepalives to each client.
SERVER_KEEPALIVE = 5
#: Seconds a `wg` or `iptables` call may take.
_CALL_TIMEOUT = 10


async def _run(*command: str) -> str:
    try:
        with anyio.fail_after(_CALL_TIMEOUT):
            result = await anyio.run_process(list(command), check=True)
    except (subprocess.CalledProcessError, OSError, TimeoutError) as exc:
        detail = exc.stderr.decode(errors="replace").strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        raise errors.GefyraError(f"{command[0]} {command[1]} failed in stowaway: {detail or type(exc).__name__}") from exc
    return result.stdout.decode()


def _checked(public_key: str, address: str | None = None) -> None:
    if not keys.is_key(public_key):
        raise errors.UsageError(f"{public_key[:60]!r} is not a WireGuard public key")
    if address is not None:
        _tunnel_address(address)


class WireGuardServer(TunnelServer):
    def is_public_key(self, text: str) -> bool:
        return keys.is_key(text)

    async def wait_ready(self) -> None:
        while not await anyio.Path(SOCKET).exists():
            await anyio.sleep(0.2)

    async def peers(self) -> dict[str, str]:
        found = {}
        for line in (await _run("wg", "show", INTERFACE, "allowed-ips")).splitlines():
            key, _, ips = line.partition("\t")
            found[key] = ips.strip().removesuffix("/32")
        return found

    async def set_peer(self, public_key: str, address: str) -> None:
        _checked(public_key, address)
        # The keepalives tell the client that its session is alive (cargo handshakes anew when
        # they stop: see images/cargo/entrypoint.sh).
        await _run("wg", "set", INTERFACE, "peer", public_key, "allowed-ips", f"{address}/32",
                   "persistent-keepalive", str(SERVER_KEEPALIVE))
        log.info("peer added", public_key=public_key, address=address)

    async def remove_peer(self, public_key: str) -> None:
        _checked(public_key)
        await _run("wg", "set", INTERFACE, "peer", public_key, "remove")
        log.info("peer removed", public_key=public_key)

    async def received(self) -> dict[str, int]:
        found = {}
        for line in (await _run("wg", "show", INTERFACE, "transfer")).splitlines():
            fields = line.split("\t")
            if len(fields) >= 2 and fields[1].isdigit():
                found[fields[0]] = int(fields[1])
        return found

    async def forward(self, rules: Sequence[ServerForward]) -> None:
        """The control socket's forwards set to ``rules`` (:func:`forwards_request`); with the
        kernel-path stowaway, one iptables chain (:func:`dnat_rules`) rebuilt when it differs."""
        if await anyio.Path(CONTROL_SOCKET).exists():
            wanted_forwards = forwards_request(rules)
            if _by_port((await _control({"get": "forwards"})).get("forwards")) != _by_port(wanted_forwards["forwards"]):
                await _control(wanted_forwards)
                log.info("bridge ports routed", ports=len(wanted_forwards["forwards"]))
            return
        wanted = dnat_rules(rules)
        try:
            current = await _run("iptables", "-t", "nat", "-S", FORWARD_CHAIN)
        except errors.GefyraError:
            await _run("iptables", "-t", "nat", "-N", FORWARD_CHAIN)
            await _run("iptables", "-t", "nat", "-A", "PREROUTING", "-j", FORWARD_CHAIN)
            # Replies must come back through stowaway: traffic into the tunnel leaves as stowaway.
            await _run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", INTERFACE, "-j", "MASQUERADE")
            current = ""
        have = sorted(line.split() for line in current.splitlines() if line.startswith("-A"))
        if have == wanted:
            return
        await _run("iptables", "-t", "nat", "-F", FORWARD_CHAIN)
        for rule in wanted:
            await _run("iptables", "-t", "nat", *rule)
        log.info("bridge ports routed", rules=len(wanted))


def forwards_request(rules: Sequence[ServerForward]) -> dict[str, list[dict[str, Any]]]:
    """The control socket's request that sets stowaway's forwards to exactly ``rules``: a bridge's
    port accepts connections from that bridge's pods only and opens them into the tunnel to its
    client. Every value is checked (stowaway checks them again)."""
    return {"forwards": [{"port": checked_port(rule.port), "address": str(_tunnel_address(rule.address)),
                          "sources": sorted({str(_pod_address(source)) for source in rule.sources})}
                         for rule in rules]}


def _by_port(forwards: object) -> object:
    return sorted(forwards, key=lambda f: f.get("port", 0) if isinstance(f, dict) else 0) \
        if isinstance(forwards, list) else forwards


async def _control(request: Mapping[str, Any]) -> dict[str, Any]:
    """One request on stowaway's control socket, and its answer; an error answer becomes a
    GefyraError."""
    try:
        with anyio.fail_after(_CALL_TIMEOUT):
            async with await anyio.connect_unix(CONTROL_SOCKET) as stream:
                await stream.send(json.dumps(request).encode() + b"\n")
                answer = await BufferedByteReceiveStream(stream).receive_until(b"\n", _CONTROL_ANSWER_LIMIT)
        found = json.loads(answer)
    except (OSError, TimeoutError, ValueError, anyio.EndOfStream, anyio.IncompleteRead,
            anyio.DelimiterNotFound) as exc:
        raise errors.GefyraError(f"stowaway's control socket failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(found, dict) or "error" in found:
        error = found.get("error") if isinstance(found, dict) else found
        raise errors.GefyraError(f"stowaway's control socket answered with an error: {str(error)[:200]}")
    return found


def dnat_rules(rules: Sequence[ServerForward]) -> list[list[str]]:
    """The chain's rules (as `iptables -S` lists them, sorted): a bridge's port is DNAT'ed into the
    tunnel only for connections from that bridge's pods, arriving from the cluster side (never
    from the tunnel: one client must not reach another's bridge). Every value is checked."""
    return sorted(["-A", FORWARD_CHAIN, "-s", f"{_pod_address(source)}/32", "!", "-i", INTERFACE,
                   "-p", "tcp", "-m", "tcp", "--dport", str(checked_port(rule.port)), "-j", "DNAT",
                   "--to-destination", f"{_tunnel_address(rule.address)}:{checked_port(rule.port)}"]
                  for rule in rules for source in rule.sources)


def checked_port(value: int) -> int:
    """``value`` if it is a port (it goes into commands and configuration files), else UsageError."""
    if not validation.is_port(value):
        raise errors.UsageError(f"{value!r} is not a port (1-65535)")
    return value


def _pod_address(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise errors.UsageError(f"{text[:60]!r} is not a pod's IPv4 address") from exc


def _tunnel_address(text: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if not isinstance(address, ipaddress.IPv4Address) or address not in ipaddress.ip_network(TUNNEL_NETWORK):
        raise errors.UsageError(f"{text!r} is not an address in the tunnel's range {TUNNEL_NETWORK}")
    return address
