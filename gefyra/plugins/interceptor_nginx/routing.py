"""The router's nginx configuration, from checked values only (a pure function, unit-tested).

The router listens on each target port of the Services it stands in for. A port with personal
bridges is an HTTP proxy that chooses the upstream per request: the first bridge whose conditions
all hold gets it, every other request goes to the workload's own pods. It takes HTTP/1.x and
cleartext HTTP/2 (prior knowledge; nginx tells them apart by HTTP/2's preface), so each stream of
an HTTP/2 connection (a gRPC call) is routed on its own. Towards the workload and the developers it
speaks HTTP/1.1, or HTTP/2 where the port speaks it (:attr:`Listener.http2`: h2c, gRPC). A port with a global bridge
forwards every connection to the developer; any other port of those Services forwards every
connection (TCP or UDP) to the workload's own pods, as the Service did before.

Every condition becomes a regular expression (exact and prefix values are escaped), compared case
sensitively with ``map``; the AND of one bridge's conditions and the first-match order over the
bridges are ``map`` lookups of the concatenated results, so nothing is evaluated in ``if``."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence

from gefyra.core.model import validation
from gefyra.core.model.routing import PROBE_ANSWER, PROBE_HEADER, Match

#: Where a router's copy relay listens (its agent runs it; see images/carrier/copies.go): a Unix
#: socket, which no port of the workload can collide with; and the headers that tell it where a
#: copy goes.
COPY_RELAY = "/dev/shm/gefyra-copies.sock"
COPY_TO_HEADER = "X-Gefyra-Copy-To"
COPY_PROTO_HEADER = "X-Gefyra-Copy-Proto"


@dataclasses.dataclass(frozen=True)
class Listener:
    """One port of the router and where its traffic goes."""

    port: int
    protocol: str  # "tcp" or "udp"
    #: "IP:PORT" of the workload's own pods (ready ones) for this port.
    originals: tuple[str, ...]
    #: Personal bridges in order: (conditions, "IP:PORT" of the tunnel's server end).
    personal: tuple[tuple[tuple[Match, ...], str], ...] = ()
    #: A global bridge: every connection to this "IP:PORT".
    everything_to: str = ""
    #: Read-only copies, in order: (conditions, "IP:PORT"); each matching request is also sent
    #: there, whose answer goes nowhere (the request is answered as if the copy did not exist).
    mirrors: tuple[tuple[tuple[Match, ...], str], ...] = ()
    #: The workload speaks cleartext HTTP/2 on this port (h2c, gRPC): personal routes pass requests
    #: on over HTTP/2 (nginx's gRPC proxy, which carries any HTTP/2 request and its trailers).
    http2: bool = False
    #: HTTPS: the router ends TLS with this certificate and key, routes each request, and speaks
    #: TLS again to the workload (verified against :attr:`ListenerTls.trusted`, unless told not to)
    #: and to the developers (unverified: their own containers, through gefyra's tunnel).
    tls: ListenerTls | None = None


@dataclasses.dataclass(frozen=True)
class ListenerTls:
    """Where a TLS listener's files are, relative to nginx's configuration directory (the router's
    agent writes them there; see :func:`tls_files`)."""

    #: The certificate chain, its key, the CAs that a workload's certificate must chain to.
    certificate: str
    key: str
    trusted: str
    verify: bool = True


def _address(text: str) -> str:
    """``IP:PORT``, checked."""
    host, _, port = text.rpartition(":")
    number = int(port)
    if not validation.is_port(number):
        raise ValueError(f"port out of range in {text!r}")
    return f"{ipaddress.IPv4Address(host)}:{number}"


def _quoted(text: str) -> str:
    """``text`` as one nginx string token: nginx's parser turns ``\\\\`` and ``\\"`` back."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(text: str) -> str:
    """``text`` as a regular expression that matches it literally (PCRE: a backslash before any
    character that is not a letter or digit makes it literal)."""
    return "".join(c if c.isascii() and c.isalnum() else "\\" + c for c in text)


def condition_regex(match: Match) -> str:
    """The regular expression a condition's subject (a header's value, the path) must match."""
    problem = validation.match_problem(match.kind, match.header, match.value)
    if problem:
        raise ValueError(problem)
    if match.kind.endswith("-exact"):
        return f"^{_literal(match.value)}$"
    if match.kind.endswith("-prefix"):
        return f"^{_literal(match.value)}"
    return match.value


def _subject(match: Match) -> str:
    """The nginx variable a condition looks at: the header (names are letters, digits and '-'),
    or the request's path, decoded and normalised (so that %2F or /../ cannot dodge a rule)."""
    return "$http_" + match.header.lower().replace("-", "_") if match.header else "$uri"


def _upstream(name: str, servers: Sequence[str], keepalive: int = 0) -> str:
    lines = [f"    server {_address(s)};" for s in servers] or ["    server 127.0.0.1:9 down;"]
    if keepalive and servers:
        lines.append(f"    keepalive {keepalive};")
    return f"upstream {name} {{\n" + "\n".join(lines) + "\n}\n"


def _flag(port: int, name: str, matches: Sequence[Match], out: list[str]) -> str:
    """Adds the maps that make ``$gefyra_PORT_NAME`` 1 when every condition holds (always, for
    none); returns the variable."""
    parts = []
    for j, match in enumerate(matches):
        var = f"$gefyra_{port}_{name}_c{j}"
        out.append(f"map {_subject(match)} {var} {{\n    default 0;\n    {_quoted('~' + condition_regex(match))} 1;\n}}\n")
        parts.append(var)
    flag = f"$gefyra_{port}_{name}"
    out.append(f"map \"{''.join(parts)}\" {flag} {{\n    default 0;\n    \"{'1' * len(parts)}\" 1;\n}}\n")
    return flag


def _forwarding(upstream: str, http2: bool, tls: bool = False) -> str:
    """The directives that pass a request on to ``upstream`` (a name or a variable), over TLS
    with ``tls``."""
    if http2:
        return (f"grpc_pass grpc{'s' if tls else ''}://{upstream};\n        grpc_set_header Host $http_host;\n"
                "        grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
    return (f"proxy_pass http{'s' if tls else ''}://{upstream};\n        proxy_http_version 1.1;\n"
            "        proxy_set_header Host $http_host;\n        proxy_set_header Upgrade $http_upgrade;\n"
            "        proxy_set_header Connection $gefyra_connection;\n"
            "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")


def tls_files(port: int) -> ListenerTls:
    """The files of a TLS listener on ``port``."""
    if not validation.is_port(port):
        raise ValueError(f"not a port: {port!r}")
    return ListenerTls(f"tls/{port}.crt", f"tls/{port}.key", f"tls/{port}.ca")


def _tls_forwarding(upstream: str, http2: bool, tls: ListenerTls, verify: bool) -> str:
    """Like :func:`_forwarding`, over TLS; ``verify``: the upstream's certificate must chain to the
    trusted CAs and name the host that the caller asked for."""
    kind = "grpc" if http2 else "proxy"
    checks = (f"\n        {kind}_ssl_verify on;\n        {kind}_ssl_trusted_certificate {_quoted(tls.trusted)};"
              f"\n        {kind}_ssl_verify_depth 4;\n        {kind}_ssl_name $host;") if verify else ""
    return (f"{_forwarding(upstream, http2, tls=True)}\n        {kind}_ssl_server_name on;"
            f"\n        {kind}_ssl_session_reuse on;{checks}")


def _copy_proto(listener: Listener) -> str:
    """How the copy relay speaks to the developers (see images/carrier/copies.go)."""
    return "https" if listener.tls else "h2c" if listener.http2 else "http/1.1"


def _http_listener(listener: Listener, router: str) -> str:
    port = listener.port
    orig = f"gefyra_{port}_orig"
    out = [_upstream(orig, listener.originals, keepalive=32)]
    flags = []
    for i, (matches, to) in enumerate(listener.personal):
        out.append(_upstream(f"gefyra_{port}_r{i}", [to], keepalive=8))
        flags.append(_flag(port, f"r{i}", matches, out))
    choices = "".join(f"    \"~^{'0' * i}1\" gefyra_{port}_r{i};\n" for i in range(len(flags)))
    out.append(f"map \"{''.join(flags)}\" $gefyra_{port}_upstream {{\n    default {orig};\n{choices}}}\n")
    # Copies: nginx's mirror subrequests, each handed to the router's copy relay (COPY_RELAY),
    # which answers at once and sends it on to the developer by itself. A subrequest shares the
    # request's variables, so each flag is set from the request itself before the copies are made
    # (a path condition must see the request's path, not the copy's URI). The copies' URIs start
    # with "//", which no request's normalised path does: no request can reach them.
    mirrors, copies = [], []
    for i, (matches, to) in enumerate(listener.mirrors):
        flag = _flag(port, f"m{i}", matches, out)
        mirrors.append(f"        set $gefyra_copy_{i} {flag};\n        mirror //gefyra-copy-{i};\n")
        copies.append(f"""    location = //gefyra-copy-{i} {{
        internal;
        if ($gefyra_copy_{i} != 1) {{
            return 204;
        }}
        proxy_pass http://gefyra_copy_relay$request_uri;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Connection "";
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header {COPY_TO_HEADER} {_address(to)};
        proxy_set_header {COPY_PROTO_HEADER} {_copy_proto(listener)};
    }}
""")
    probe = f"""        if ($http_{PROBE_HEADER.lower().replace('-', '_')}) {{
            add_header {PROBE_ANSWER} {_quoted(router)} always;
            return 204;
        }}
"""
    upstream, tls = f"$gefyra_{port}_upstream", listener.tls
    if tls is None:
        out.append(f"""server {{
    listen {port};
    http2 on;
    location / {{
{probe}{"".join(mirrors)}        {_forwarding(upstream, listener.http2)}
    }}
{"".join(copies)}}}
""")
        return "".join(out)
    # TLS: the workload's pods and the developers are reached in two locations, as nginx verifies
    # per location (a request for a developer jumps to the second). The probe comes as plain
    # HTTP, which nginx hands to error_page 497; any other plain request is refused as before.
    out.append(f"""map {upstream} $gefyra_{port}_developer {{
    default 1;
    gefyra_{port}_orig 0;
}}
server {{
    listen {port} ssl;
    http2 on;
    ssl_certificate {_quoted(tls.certificate)};
    ssl_certificate_key {_quoted(tls.key)};
    ssl_protocols TLSv1.2 TLSv1.3;
    error_page 497 = @gefyra_plain;
    location / {{
        error_page 418 = @gefyra_developer;
        if ($gefyra_{port}_developer) {{
            return 418;
        }}
{"".join(mirrors)}        {_tls_forwarding(f"gefyra_{port}_orig", listener.http2, tls, tls.verify)}
    }}
    location @gefyra_developer {{
{"".join(mirrors)}        {_tls_forwarding(upstream, listener.http2, tls, verify=False)}
    }}
    location @gefyra_plain {{
{probe}        return 400;
    }}
{"".join(copies)}}}
""")
    return "".join(out)


def router_config(router: str, listeners: Sequence[Listener]) -> tuple[str, str]:
    """(stream config, http config) of a router named ``router``."""
    if not validation.is_dns_label(router):
        raise ValueError(f"not a router name: {router!r}")
    stream, http = [], []
    seen: set[tuple[int, str]] = set()
    for listener in sorted(listeners, key=lambda x: (x.port, x.protocol)):
        port = int(listener.port)
        if not validation.is_port(port) or listener.protocol not in ("tcp", "udp") or (port, listener.protocol) in seen:
            raise ValueError(f"bad or repeated listener {listener.port}/{listener.protocol}")
        seen.add((port, listener.protocol))
        udp = " udp" if listener.protocol == "udp" else ""
        if listener.personal or listener.mirrors:
            if udp or listener.everything_to:
                raise ValueError(f"port {port}: personal bridges route HTTP over TCP, and alone")
            http.append(_http_listener(listener, router))
        elif listener.everything_to:
            stream.append(f"server {{\n    listen {port}{udp};\n    proxy_pass {_address(listener.everything_to)};\n}}\n")
        else:
            name = f"gefyra_{port}_{listener.protocol}_orig"
            stream.append(_upstream(name, listener.originals))
            stream.append(f"server {{\n    listen {port}{udp};\n    proxy_pass {name};\n}}\n")
    if http:
        http.insert(0, _HTTP_COMMON)
        if any(listener.mirrors for listener in listeners):
            http.insert(1, f"upstream gefyra_copy_relay {{\n    server unix:{COPY_RELAY};\n    keepalive 16;\n}}\n")
    return "".join(stream), "".join(http)


#: For every HTTP listener: upgrades (WebSocket) pass through, other requests reuse upstream
#: connections; bodies of any size stream both ways (chunked uploads, server-sent events); long-lived
#: requests are not cut.
_HTTP_COMMON = """map $http_upgrade $gefyra_connection {
    default upgrade;
    "" "";
}
client_max_body_size 0;
proxy_request_buffering off;
proxy_buffering off;
proxy_connect_timeout 5s;
proxy_read_timeout 3600s;
proxy_send_timeout 3600s;
grpc_connect_timeout 5s;
grpc_read_timeout 3600s;
grpc_send_timeout 3600s;
grpc_buffer_size 64k;
large_client_header_buffers 4 32k;
server_tokens off;
"""
