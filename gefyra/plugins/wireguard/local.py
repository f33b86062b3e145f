"""The WireGuard tunnel's local end, cargo: wireguard-go, the routes of the cluster's ranges, source
NAT to this client's one tunnel address, the DNS server, and the DNAT rules that steer bridged
ports to local containers. Every value that goes into a command or a file is checked first."""

from __future__ import annotations

import functools
import ipaddress
import os
import shlex
import string
from collections.abc import Mapping, Sequence
from importlib import resources

import anyio
import yaml

from gefyra import errors
from gefyra.core.model.settings import Settings
from gefyra.core.spi.runtime import ContainerRuntime, ContainerSpec
from gefyra.core.spi.tunnel import KeyPair, LocalEnd, ServerSide, Tunnel
from gefyra.plugins.wireguard import keys
from gefyra.plugins.wireguard.server import TUNNEL_NETWORK, TUNNEL_SERVER_ADDRESS, WireGuardServer, checked_port

#: cargo's chain of DNAT rules for bridged ports (nat table, entered from PREROUTING on wg0), and
#: the files it is made from (images/cargo/steer.sh).
STEER_CHAIN = "GEFYRA-BRIDGES"
STEER_DIR = "/etc/gefyra/steer"
_CONFIG_DIR = "/etc/gefyra"
#: Between the answers of :meth:`WireGuardTunnel.exchanges` in its one exec's output.
_SEPARATOR = "@@gefyra-exchange-end@@"
#: A lost first handshake is retried by WireGuard only after 5 s; the probe loads the peer anew
#: (which starts a handshake at once) after this long, then after twice as long each time.
_FIRST_KICK = 0.25
_MAX_KICK = 5.0


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise errors.UsageError(f"{text!r} is not an IP address") from exc


def _network(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError as exc:
        raise errors.UsageError(f"{text!r} is not an address range (CIDR)") from exc


def _endpoint(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or any(c.isspace() or c in "#\\=" for c in host):
        raise errors.UsageError(f"{text!r} is not a tunnel endpoint HOST:PORT")
    return f"{host}:{checked_port(int(port))}"


def _ip_endpoint(text: str) -> str:
    """``IPV4:PORT``, checked: no character of it is special to sed or the shell."""
    host, _, port = _endpoint(text).rpartition(":")
    return f"{_address(host)}:{port}"


def peer_config(private_key: str, server_public_key: str, endpoint: str, allowed_ips: Sequence[str]) -> str:
    """The ``wg setconf`` file of a client: one peer, the server, for the given ranges."""
    for key in (private_key, server_public_key):
        if not keys.is_key(key):
            raise errors.GefyraError("the tunnel got a malformed WireGuard key", "run `gefyra down`, then `gefyra up`")
    return (
        "[Interface]\n"
        f"PrivateKey = {private_key}\n\n"
        "[Peer]\n"
        f"PublicKey = {server_public_key}\n"
        f"Endpoint = {_endpoint(endpoint)}\n"
        f"AllowedIPs = {', '.join(_network(r) for r in allowed_ips)}\n"
        "PersistentKeepalive = 5\n"  # also the operator's sign that the client lives
    )


def _env_file(values: Mapping[str, str]) -> bytes:
    """A file that cargo's entrypoint sources: every value quoted for the shell."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()).encode()


#: The MTU of stowaway's interface (each client's end has its own, Settings.tunnel_mtu): a
#: shared setting of the cluster side that no client needs to change. A client on a stream alone
#: offers larger TCP segments in its SYNs (cargo clamps TCP to its own MTU, see its
#: gefyra-endpoint); stowaway takes those connections on a second interface of MTU 9000.
SERVER_MTU = 1340


#: The server ends this backend can install (GEFYRA_WIREGUARD_SERVER): "user-space" (the default,
#: Pod Security "restricted") and "kernel" (the former one, for `make bench` to compare against),
#: each the image and the file beside this module that installs it.
SERVER_ENDS = {"user-space": ("stowaway", "server-side.yaml"),
               "kernel": ("stowaway-kernel", "server-side-kernel.yaml")}
SERVER_END_VARIABLE = "GEFYRA_WIREGUARD_SERVER"


def server_end() -> str:
    """The server end to install, from the environment (UsageError for an unknown one)."""
    chosen = os.environ.get(SERVER_END_VARIABLE) or "user-space"
    if chosen not in SERVER_ENDS:
        raise errors.UsageError(f"{SERVER_END_VARIABLE}={chosen[:40]!r} is not a server end of the WireGuard tunnel",
                                f"use one of {', '.join(SERVER_ENDS)}")
    return chosen


@functools.lru_cache(maxsize=8)
def _server_side(image: str, port: int, file: str) -> ServerSide:
    """stowaway's part of the cluster side (``file`` beside this module)."""
    template = (resources.files("gefyra.plugins.wireguard") / file).read_text()
    text = string.Template(template).substitute(image=image, mtu=str(SERVER_MTU), port=str(checked_port(port)),
                                                server_address=f"{TUNNEL_SERVER_ADDRESS}/16")
    found = yaml.safe_load(text)
    operator = found.get("operator") or {}
    return ServerSide(deployment=found["deployment"], key_secret=found["keySecret"], pod_security=found["podSecurity"],
                      containers=tuple(found["containers"]), volumes=tuple(found["volumes"]),
                      operator_mounts=tuple(operator.get("volumeMounts") or ()),
                      operator_security_context=operator.get("securityContext") or {},
                      pod_security_context=(found.get("pod") or {}).get("securityContext") or {},
                      objects=tuple(found.get("objects") or ()), stream_port=found.get("streamPort"))


class WireGuardTunnel(Tunnel):
    name = "wireguard"
    dns_dir = f"{_CONFIG_DIR}/dns"
    network = TUNNEL_NETWORK
    server_address = TUNNEL_SERVER_ADDRESS

    def generate_keys(self) -> KeyPair:
        return keys.generate_keypair()

    def local_image(self, settings: Settings) -> str:
        return settings.image("cargo")

    def local_name(self, settings: Settings) -> str:
        return f"gefyra-cargo-{settings.client_id}"

    def server_side(self, settings: Settings) -> ServerSide:
        port = settings.with_shared().port
        assert port is not None  # with_shared resolves it
        image, file = SERVER_ENDS[server_end()]
        return _server_side(settings.image(image), port, file)

    def server(self) -> WireGuardServer:
        return WireGuardServer()

    async def start_local_end(self, runtime: ContainerRuntime, settings: Settings, end: LocalEnd) -> None:
        await runtime.remove_container(end.name)  # a stale cargo with an old key
        wg_conf = peer_config(end.keys.private, end.server_public_key, end.endpoint, end.routes)
        env = _env_file({
            "TUNNEL_ADDRESS": f"{_address(end.address)}/32",
            "TUNNEL_MTU": str(int(end.mtu)),
            "TUNNEL_STREAM_MTU": str(int(end.stream_mtu or end.mtu)),
            "TUNNEL_SERVER": TUNNEL_SERVER_ADDRESS,  # what cargo's watchdog pings
            "CLUSTER_ROUTES": " ".join(_network(r) for r in end.routes),
            "DNS_COMMAND": shlex.join(end.dns.command),
        })
        await runtime.create_container(ContainerSpec(
            name=end.name, image=self.local_image(settings), labels=dict(end.labels), network=end.network,
            # wireguard-go makes its tun device (MKNOD when no /dev/net/tun is passed) and sets
            # routes and NAT in cargo's own network namespace (NET_ADMIN); nothing more.
            cap_add=["NET_ADMIN", "MKNOD"], devices=["/dev/net/tun"], ip=end.network_address or None,
        ))
        await runtime.put_files(end.name, _CONFIG_DIR, {"wg0.conf": wg_conf.encode(), "cargo.env": env})
        await runtime.put_files(end.name, self.dns_dir, end.dns.files)
        await runtime.start_container(end.name)

    async def wait_connected(self, runtime: ContainerRuntime, name: str, probe: tuple[str, int],
                             timeout: float) -> None:
        """Pings the server end through the tunnel and opens a TCP connection to ``probe``. While no
        handshake has happened the peer is loaded anew (see _FIRST_KICK): a first handshake lost
        before the server's NodePort works would otherwise wait WireGuard's 5 s."""
        ip, port = _address(probe[0]), checked_port(probe[1])
        check = ["sh", "-c", f"ping -c1 -W0.5 {TUNNEL_SERVER_ADDRESS} >/dev/null && "
                             f"timeout 2 bash -c '</dev/tcp/{ip}/{port}'"]
        kick = ["sh", "-c", "[ \"$(wg show wg0 latest-handshakes | cut -f2)\" != 0 ] || "
                            f"wg setconf wg0 {_CONFIG_DIR}/wg0.conf"]
        output = ""
        try:
            with anyio.fail_after(timeout):
                last_kick, kick_after = anyio.current_time(), _FIRST_KICK
                while True:
                    cargo = await runtime.get_container(name)
                    if cargo is None or not cargo.running:
                        raise errors.GefyraError("cargo stopped right after its start",
                                                 f"see `{runtime.name} logs {name}`")
                    code, output = await runtime.exec(name, check)
                    if code == 0:
                        return
                    if anyio.current_time() - last_kick >= kick_after:
                        await runtime.exec(name, kick)
                        last_kick, kick_after = anyio.current_time(), min(kick_after * 2, _MAX_KICK)
                    await anyio.sleep(0.1)
        except TimeoutError as exc:
            raise errors.ReadinessTimeoutError(
                f"no traffic through the tunnel within {timeout:.0f}s ({output.strip() or 'no answer'})",
                "check that the tunnel endpoint (--host, --port) reaches the cluster's nodes over UDP",
            ) from exc

    async def endpoint(self, runtime: ContainerRuntime, name: str) -> str | None:
        code, out = await runtime.exec(name, ["wg", "show", "wg0", "endpoints"])
        fields = out.split()
        return fields[1] if code == 0 and len(fields) == 2 and fields[1] != "(none)" else None

    async def set_endpoint(self, runtime: ContainerRuntime, name: str, preferred: str, *, fallback: str | None = None,
                           current: str | None = None, stream: str | None = None) -> None:
        """cargo's gefyra-endpoint keeps them in its configuration (its watchdog moves between
        them) and changes the peer's endpoint in place with ``wg set``; cargo's WireGuard dials
        ``stream`` rather than sending it datagrams."""
        given = [preferred, fallback or "", current or preferred, stream or ""]
        checked = [_ip_endpoint(e) if e else "" for e in given]
        code, output = await runtime.exec(name, ["gefyra-endpoint", "set", *checked])
        if code != 0:
            raise errors.GefyraError(f"cannot point the tunnel's local end at {checked[2]}: {output.strip()[:200]}")

    async def latest_handshake(self, runtime: ContainerRuntime, name: str) -> int | None:
        code, out = await runtime.exec(name, ["wg", "show", "wg0", "latest-handshakes"])
        fields = out.split()
        valid = code == 0 and len(fields) == 2 and fields[1].isdigit()
        return int(fields[1]) or None if valid else None  # wg shows 0 until the first handshake

    async def route_container(self, runtime: ContainerRuntime, settings: Settings, container: str, via: str,
                              routes: Sequence[str]) -> None:
        """A short-lived helper in the container's network namespace adds the routes (the container
        itself gets no extra capability)."""
        gateway = _address(via)
        script = " && ".join(f"ip route replace {_network(r)} via {gateway}" for r in routes)
        code, output = await runtime.run_to_completion(ContainerSpec(
            name=f"{container}-gefyra-route", image=self.local_image(settings), network_of=container,
            cap_add=["NET_ADMIN"], entrypoint=["sh", "-c"], command=[script], labels=settings.labels("helper"),
        ))
        if code != 0:
            raise errors.GefyraError(f"cannot route the cluster's ranges in {container}: {output.strip()}")

    async def steer(self, runtime: ContainerRuntime, name: str, forwards: Mapping[int, tuple[str, int]]) -> None:
        """One file per stowaway port in cargo (ADDRESS:PORT, checked here), then cargo's
        gefyra-steer makes its DNAT rules match the files; cargo applies them again when it
        restarts. Steering a port again replaces its rule."""
        args = [a for p, (address, local) in forwards.items()
                for a in (str(checked_port(p)), f"{_address(address)}:{checked_port(local)}")]
        script = (f'mkdir -p {STEER_DIR} && while [ $# -gt 0 ]; do printf %s "$2" > "{STEER_DIR}/$1"; shift 2; done'
                  " && gefyra-steer")
        code, output = await runtime.exec(name, ["sh", "-c", script, "steer", *args])
        if code != 0:
            raise errors.GefyraError(f"cannot steer bridged ports in cargo: {output.strip()}")

    async def unsteer(self, runtime: ContainerRuntime, name: str, ports: Sequence[int]) -> None:
        cargo = await runtime.get_container(name)
        if ports and cargo is not None and cargo.running:
            files = [f"{STEER_DIR}/{checked_port(p)}" for p in ports]
            await runtime.exec(name, ["sh", "-c", 'rm -f "$@" && gefyra-steer', "unsteer", *files])

    async def connects(self, runtime: ContainerRuntime, name: str, targets: Sequence[tuple[str, int]]) -> list[bool]:
        if not targets:
            return []
        script = " ; ".join(f"if timeout 2 bash -c '</dev/tcp/{_address(ip)}/{checked_port(p)}' 2>/dev/null; "
                            "then echo open; else echo closed; fi" for ip, p in targets)
        code, output = await runtime.exec(name, ["sh", "-c", script])
        answers = output.split()
        if len(answers) != len(targets) or not set(answers) <= {"open", "closed"}:
            # Not an answer about the ports: the exec itself failed (say how, not "closed").
            raise errors.GefyraError(f"cannot try connections from {name} (exit {code}): {' '.join(answers)[:300]}",
                                     f"is the container engine well? `{runtime.name} exec {name} true` must work")
        return [answer == "open" for answer in answers]

    async def exchanges(self, runtime: ContainerRuntime, name: str, targets: Sequence[tuple[str, int]],
                        payload: bytes) -> list[bytes]:
        if not targets:
            return []
        # One exec for all: each connection in a subshell of its own, at once; the answers in
        # files, printed in order between separators. The payload is an argument, never part of
        # the script; addresses and ports are checked.
        dir_ = "/tmp/gefyra-exchange.$$"
        runs = " ".join(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{_address(ip)}/{checked_port(p)} && printf %s \"$1\" >&3 "
                        f"&& head -c 4096 <&3' exchange \"$1\" > {dir_}/{i} 2>/dev/null &"
                        for i, (ip, p) in enumerate(targets))
        show = " ; ".join(f"cat {dir_}/{i}; printf '{_SEPARATOR}'" for i in range(len(targets)))
        script = f"mkdir -p {dir_}; {runs} wait; {show}; rm -rf {dir_}"
        _, output = await runtime.exec(name, ["timeout", "5", "bash", "-c", script, "exchange",
                                              payload.decode("latin-1")])
        answers = output.encode("latin-1", errors="replace").split(_SEPARATOR.encode())
        return [answers[i] if i < len(answers) else b"" for i in range(len(targets))]

    async def largest_packet(self, runtime: ContainerRuntime, name: str, sizes: Sequence[int]) -> int:
        for size in sizes:
            # -M do: don't fragment; the payload is the packet less IP (20) and ICMP (8) headers.
            code, _ = await runtime.exec(name, ["ping", "-c", "2", "-W", "1", "-M", "do", "-s", str(int(size) - 28),
                                                TUNNEL_SERVER_ADDRESS])
            if code == 0:
                return int(size)
        return 0

    async def steered_connections(self, runtime: ContainerRuntime, name: str, ports: Sequence[int]) -> dict[int, int]:
        _, listing = await runtime.exec(name, ["iptables", "-t", "nat", "-L", STEER_CHAIN, "-v", "-x", "-n"])
        counted = dict.fromkeys(ports, 0)
        for line in listing.splitlines():
            fields = line.split()
            if fields and fields[0].isdigit():  # the DNAT rule matches each connection's first packet
                for port in ports:
                    if f"gefyra-bridge-{port} " in line + " ":
                        counted[port] += int(fields[0])
        return counted
