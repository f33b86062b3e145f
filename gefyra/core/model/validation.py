"""Checks of what users and embedders hand in (flags, environment variables, API arguments), made
at the boundary: before anything connects to the cluster or the container engine.

Each check returns the value in the form gefyra uses (a port as an int, a mapping as a dict) or
raises :class:`gefyra.errors.UsageError` with one line: the flag (or field) and the value as given
(its repr, cut to 60 characters), why it is refused, and what to write instead.

Patterns spell out ASCII on purpose: ``"²".isdigit()`` is True and ``int("٣")`` is 3 in Python, and
neither is a port. The Kubernetes names follow Kubernetes' own rules (DNS-1123 labels and
subdomains), as the patterns in manifests/crds.yaml do; a unit test holds the two together.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from gefyra import errors

#: What ``KIND/NAME[/CONTAINER]`` may say as its kind, and the workload kind each means (the one
#: table: gefyra.core.kube.workloads reads references with it, the operator checks bridges' kinds).
WORKLOAD_ALIASES = {"deploy": "deployment", "deployment": "deployment", "sts": "statefulset",
                    "statefulset": "statefulset", "pod": "pod", "po": "pod"}
WORKLOAD_KINDS = tuple(WORKLOAD_ALIASES)
#: A GefyraBridge carries at most this many ports (manifests/crds.yaml says the same).
MAX_BRIDGED_PORTS = 16
#: The longest timeout gefyra takes, in seconds: a day.
MAX_SECONDS = 86400

_SHOWN = 60
_LABEL_HINT = "use lowercase letters, digits and '-' (at most 63, a letter or digit at each end), e.g. 'my-app'"
_DIGITS = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?")
_IPV4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PROTOCOLS = ("tcp", "udp", "sctp")
_MOUNT_OPTIONS = frozenset({"ro", "rw", "z", "Z"})
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# OCI image references (the distribution project's grammar): [REGISTRY/]PATH[:TAG][@DIGEST]. As
# there, a first part is a registry only with a '.' or a port, or as localhost; else it is a path.
_HOST_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:localhost|{_HOST_LABEL}(?:\.{_HOST_LABEL})+)(?::[0-9]+)?|{_HOST_LABEL}:[0-9]+"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"(?:(?:{_HOST})/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_IMAGE = re.compile(rf"{_REPOSITORY}(?::{_TAG})?(?:@{_DIGEST})?")
_IMAGE_PREFIX = re.compile(rf"{_REPOSITORY}|{_HOST}")


def shown(value: object) -> str:
    """``value`` as an error shows it: its repr (quotes, escaped newlines), cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def _refuse(flag: str, value: object, why: str, todo: str) -> NoReturn:
    raise errors.UsageError(f"{flag} {shown(value)}: {why}", todo)


def _not_text(value: object, what: str) -> str | None:
    return None if isinstance(value, str) else f"the {what} is not text"


# Kubernetes names


def _label_problem(text: str, what: str) -> str | None:
    """Why ``text`` is not a DNS-1123 label (what Kubernetes wants for namespaces, container names,
    label values), or None."""
    if len(text) > 63:
        return f"the {what} has {len(text)} characters, more than 63"
    return _part_problem(text, what)


def _part_problem(text: str, what: str) -> str | None:
    """Why ``text`` is not a label as far as its characters go (whatever its length), or None."""
    if not text:
        return f"the {what} is empty"
    bad = re.search(r"[^-a-z0-9]", text)
    if bad:
        case = " (lowercase only)" if bad.group().isupper() else ""
        return f"{bad.group()!r} is not allowed in the {what}{case}"
    if text[0] == "-" or text[-1] == "-":
        return f"the {what} starts or ends with '-'"
    return None


def _subdomain_problem(text: str, what: str) -> str | None:
    """Why ``text`` is not a DNS-1123 subdomain (labels joined by dots, at most 253 characters in
    all: what Kubernetes wants for the names of most objects), or None."""
    if len(text) > 253:
        return f"the {what} has {len(text)} characters, more than 253"
    if text and "" in text.split("."):
        return f"the {what} starts or ends with '.' or has '..'"
    return next(filter(None, (_part_problem(part, what) for part in text.split("."))), None)


def is_dns_label(text: object) -> bool:
    """Whether ``text`` is a DNS-1123 label (a namespace, a container's name, a label value)."""
    return isinstance(text, str) and _label_problem(text, "name") is None


def is_dns_subdomain(text: object) -> bool:
    """Whether ``text`` is a DNS-1123 subdomain (the name of most objects, a DNS domain)."""
    return isinstance(text, str) and _subdomain_problem(text, "name") is None


def is_port(value: object) -> bool:
    """Whether ``value`` is a port: an int (not a bool) from 1 to 65535."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def dns_label(value: str, flag: str, what: str) -> str:
    """A DNS-1123 label: a namespace, a container name, a client id, a plugin's name."""
    problem = _not_text(value, what) or _label_problem(value, what)
    if problem:
        _refuse(flag, value, problem, _LABEL_HINT)
    return value


def dns_labels(values: Sequence[str], flag: str, what: str) -> list[str]:
    if isinstance(values, str):
        _refuse(flag, values, "one text, not a list of names", "pass a list of names")
    return [dns_label(value, flag, what) for value in values]


def dns_subdomain(value: str, flag: str, what: str) -> str:
    """A DNS-1123 subdomain: a workload's name, a DNS domain."""
    problem = _not_text(value, what) or _subdomain_problem(value, what)
    if problem:
        _refuse(flag, value, problem, "use lowercase letters, digits, '-' and '.' (at most 253), e.g. 'api.v2'")
    return value


def workload(text: str, flag: str) -> str:
    """``KIND/NAME[/CONTAINER]``: a kind of :data:`WORKLOAD_KINDS`, a DNS-1123 subdomain as the
    name, a DNS-1123 label as the container."""
    parts = text.split("/") if isinstance(text, str) else []
    problem: str | None
    if not 2 <= len(parts) <= 3:
        problem = "it is not KIND/NAME or KIND/NAME/CONTAINER"
    elif parts[0] not in WORKLOAD_KINDS:
        problem = f"the kind {shown(parts[0])} is not one of {', '.join(WORKLOAD_KINDS)}"
    else:
        problem = _subdomain_problem(parts[1], "workload name") or (
            _label_problem(parts[2], "container name") if len(parts) == 3 else None)
    if problem:
        _refuse(flag, text, f"cannot read the workload: {problem}",
                "write deploy/NAME[/CONTAINER], sts/NAME[/CONTAINER] or pod/NAME[/CONTAINER]")
    return text


# Personal bridges' conditions (``--match-KIND``)

#: A personal bridge has at most this many conditions (manifests/crds.yaml says the same).
MAX_MATCHES = 8
#: The longest value of a condition: a header value, a path or a regular expression.
MAX_MATCH_VALUE = 256
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_MATCH_HINT = "e.g. --match-header-exact x-dev:alice or --match-path-prefix /api/ (see `gefyra bridge --help`)"


def match_problem(kind: object, header: object, value: object) -> str | None:
    """Why (kind, header, value) is not a condition gefyra can route by, or None. Checked alike on
    the client and in the operator (which reads it back from a GefyraBridge: untrusted)."""
    from gefyra.core.model.routing import MATCH_KINDS

    if kind not in MATCH_KINDS:
        return f"the condition kind {shown(kind)} is not one of {', '.join(MATCH_KINDS)}"
    if not isinstance(header, str) or not isinstance(value, str):
        return "a condition's header name and value are text"
    on_header = str(kind).startswith("header-")
    if on_header and not _HEADER_NAME.fullmatch(header):
        return f"the header name {shown(header)} is not letters, digits and '-' (at most 64, no '_')"
    if not on_header and header:
        return "a path condition names no header"
    if not 1 <= len(value) <= MAX_MATCH_VALUE or not _PRINTABLE.fullmatch(value):
        return f"the value {shown(value)} is not 1 to {MAX_MATCH_VALUE} printable ASCII characters"
    if kind in ("path-exact", "path-prefix") and not value.startswith("/"):
        return f"the path {shown(value)} does not start with '/'"
    if str(kind).endswith("-regex"):
        try:
            re.compile(value)
        except re.error as exc:
            return f"the regular expression {shown(value)} does not compile: {exc}"
    return None


def match_flag(text: str, flag: str, kind: str) -> tuple[str, str]:
    """``NAME:VALUE`` of a ``--match-header-*`` flag, or ``VALUE`` of a ``--match-path-*`` flag ->
    (header, value)."""
    header, value = "", text
    if kind.startswith("header-"):
        header, sep, value = text.partition(":") if isinstance(text, str) else ("", "", "")
        if not sep:
            _refuse(flag, text, "it is not NAME:VALUE", _MATCH_HINT)
    problem = match_problem(kind, header, value)
    if problem:
        _refuse(flag, text, problem, _MATCH_HINT)
    return header, value


def match_values(matches: Sequence[object], flag: str) -> None:
    """The conditions of a bridge request: at most :data:`MAX_MATCHES`, each a sound one."""
    from gefyra.core.model.routing import Match

    if isinstance(matches, str) or not isinstance(matches, Sequence) or len(matches) > MAX_MATCHES:
        _refuse(flag, matches, f"a bridge has a list of at most {MAX_MATCHES} conditions", _MATCH_HINT)
    for m in matches:
        problem = (match_problem(m.kind, m.header, m.value) if isinstance(m, Match)
                   else "a condition is a gefyra.core.spi.interceptor.Match")
        if problem:
            _refuse(flag, m, problem, _MATCH_HINT)


# Numbers


def _number_problem(text: str, what: str, low: int, high: int) -> str | None:
    if not _DIGITS.fullmatch(text):
        return f"the {what} {shown(text)} is not a whole number written with 0-9"
    if not low <= int(text) <= high:
        return f"the {what} {int(text)} is not between {low} and {high}"
    return None


def whole_number(text: str, flag: str, what: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``, given as ASCII digits."""
    problem = _not_text(text, what) or _number_problem(text, what, low, high)
    if problem:
        _refuse(flag, text, problem, f"pass a whole number from {low} to {high}")
    return int(text)


def whole_number_value(value: int, flag: str, what: str, low: int, high: int) -> int:
    """An int (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _refuse(flag, value, f"the {what} is not a whole number from {low} to {high}",
                f"pass a whole number from {low} to {high}")
    return value


def port(text: str, flag: str) -> int:
    """A port, 1 to 65535, given as text."""
    return whole_number(text, flag, "port", 1, 65535)


def port_number(value: int, flag: str) -> int:
    return whole_number_value(value, flag, "port", 1, 65535)


_DURATION_PART = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str, flag: str) -> float:
    """A timeout given as text: seconds as a decimal number (``1.5``), or a duration as kubectl
    takes it (``30s``, ``2m``, ``1m30s``, ``500ms``); above 0, at most a day."""
    if isinstance(text, str) and _DECIMAL.fullmatch(text):
        return seconds_value(float(text), flag)
    parts = _DURATION_PART.findall(text) if isinstance(text, str) else []
    if not parts or "".join(number + unit for number, unit in parts) != text:
        _refuse(flag, text, "it is not a number of seconds or a duration",
                "pass seconds such as 60 or 2.5, or a duration such as 30s, 2m or 1m30s")
    return seconds_value(sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts), flag)


def seconds_value(value: float, flag: str) -> float:
    """A timeout in seconds: a finite int or float above 0, at most :data:`MAX_SECONDS`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and 0 < value <= MAX_SECONDS):
        _refuse(flag, value, f"a timeout is a number of seconds above 0 and at most {MAX_SECONDS}",
                "pass a number of seconds such as 60 or 2.5")
    return float(value)


# Ports


def bridge_ports(items: Sequence[str], flag: str) -> dict[int, int]:
    """``REMOTE:LOCAL`` items (`bridge -p`) -> {remote container port: local container port}."""
    mapping: dict[int, int] = {}
    for item in items:
        remote, sep, local = item.partition(":")
        problem = ("it is not REMOTE:LOCAL" if not sep
                   else _number_problem(remote, "remote port", 1, 65535) or _number_problem(local, "local port", 1, 65535))
        if not problem and int(remote) in mapping:
            problem = f"the remote port {int(remote)} is given twice"
        if problem:
            _refuse(flag, item, problem, "write REMOTE:LOCAL with ports from 1 to 65535, each remote port once, e.g. 80:8080")
        mapping[int(remote)] = int(local)
    return bridge_port_values(mapping, flag)


def bridge_port_values(mapping: dict[int, int], flag: str) -> dict[int, int]:
    """The ports of a bridge: 1 to :data:`MAX_BRIDGED_PORTS` pairs of ports."""
    if not isinstance(mapping, dict) or not 1 <= len(mapping) <= MAX_BRIDGED_PORTS:
        _refuse(flag, mapping, f"a bridge carries 1 to {MAX_BRIDGED_PORTS} ports",
                "name the remote ports to bridge and the local ports that take them")
    for remote, local in mapping.items():
        port_number(remote, flag)
        port_number(local, flag)
    return mapping


def _container_port_problem(text: str) -> str | None:
    number, slash, protocol = text.partition("/")
    if slash and protocol not in _PROTOCOLS:
        return f"the protocol {shown(protocol)} is not one of {', '.join(_PROTOCOLS)}"
    return _number_problem(number, "container port", 1, 65535)


def _port_key(text: str) -> str:
    """``80`` or ``80/udp`` -> ``80/tcp`` or ``80/udp``."""
    number, _, protocol = text.partition("/")
    return f"{int(number)}/{protocol or 'tcp'}"


def published_ports(items: Sequence[str], flag: str) -> dict[str, int | str]:
    """``[IP:]HOSTPORT:CONTAINERPORT[/PROTOCOL]`` items (`run -p`, as container engines take them) ->
    {``"80/tcp"``: host port, or ``"IP:PORT"`` where an address of this machine is named}."""
    mapping: dict[str, int | str] = {}
    for item in items:
        address, host, container = ("", *item.split(":", 1)) if item.count(":") == 1 else (item.split(":") + ["", ""])[:3]
        problem = ("it is not [IP:]HOSTPORT:CONTAINERPORT" if item.count(":") not in (1, 2)
                   else (_host_address_problem(address) if address else None)
                   or _number_problem(host, "host port", 1, 65535) or _container_port_problem(container))
        key = "" if problem else _port_key(container)
        if key in mapping:
            problem = f"the container port {key} is given twice"
        if problem:
            _refuse(flag, item, problem, "write [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp] with ports from 1 to 65535, e.g. "
                                         "8080:80 or 127.0.0.1:8080:80")
        mapping[key] = f"{address}:{int(host)}" if address else int(host)
    return mapping


def _host_address_problem(text: str) -> str | None:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return f"{shown(text)} is not an IPv4 address of this machine"
    return None


def published_port_values(mapping: dict[str, int | str], flag: str) -> dict[str, int | str]:
    """{``"PORT/PROTOCOL"``: host port or ``"IP:PORT"``}, as :class:`gefyra.core.spi.runtime.ContainerSpec`
    takes it."""
    for key, host in mapping.items():
        problem = (_container_port_problem(key) if isinstance(key, str) and "/" in key
                   else "the container port is not PORT/PROTOCOL")
        if problem:
            _refuse(flag, key, problem, "write the container port as PORT/tcp or PORT/udp, e.g. '80/tcp'")
        if isinstance(host, str):
            address, _, number = host.rpartition(":")
            if _host_address_problem(address) or _number_problem(number, "host port", 1, 65535):
                _refuse(flag, host, "a published port is a port, or IP:PORT", "e.g. 8080 or '127.0.0.1:8080'")
        else:
            port_number(host, flag)
    return mapping


# Addresses


def _cidr_problem(text: str) -> str | None:
    bad = re.search(r"[^0-9./]", text)
    if bad:
        return f"{bad.group()!r} is not allowed in an IPv4 range"
    address, slash, bits = text.partition("/")
    if not (_IPV4.fullmatch(address) and slash and _DIGITS.fullmatch(bits)):
        return "it is not ADDRESS/BITS"
    try:
        ipaddress.IPv4Network(text)
    except ValueError as exc:  # one line: "10.0.0.1/8 has host bits set", "Octet 256 (> 255) not permitted ..."
        return str(exc)
    return None


def cidr(text: str, flag: str) -> str:
    """An IPv4 range without host bits (``10.96.0.0/12``): the tunnel routes IPv4 ranges."""
    problem = _not_text(text, "range") or _cidr_problem(text)
    if problem:
        _refuse(flag, text, problem, "pass an IPv4 range (the tunnel routes IPv4), one per flag, e.g. 10.96.0.0/12")
    return text


def cidrs(values: Sequence[str], flag: str) -> list[str]:
    if isinstance(values, str):
        _refuse(flag, values, "one text, not a list of ranges", "pass a list of IPv4 ranges")
    return [cidr(value, flag) for value in values]


def _host_problem(text: str) -> str | None:
    if not re.fullmatch(r"[0-9.]+", text):
        return _subdomain_problem(text.lower(), "DNS name")
    try:
        ipaddress.IPv4Address(text)
    except ValueError as exc:
        return str(exc)
    return None


def host(text: str, flag: str) -> str:
    """An IPv4 address or a DNS name (the tunnel's endpoint joins it with ``:PORT``, so no IPv6)."""
    problem = _not_text(text, "address") or _host_problem(text)
    if problem:
        _refuse(flag, text, problem, "pass an IPv4 address or a DNS name of a node, e.g. 192.168.1.10")
    return text


# The local container


_ENV_HINT = ("write KEY=VALUE (or KEY for this machine's value) with KEY of letters, digits and '_', not starting "
             "with a digit, e.g. LOG_LEVEL=debug")


def _env_name_problem(name: str) -> str | None:
    return None if _ENV_NAME.fullmatch(name) else f"{shown(name)} is not an environment variable's name"


def env_name(name: str, flag: str) -> str:
    """An environment variable's name: letters, digits and '_', not starting with a digit."""
    problem = _not_text(name, "name") or _env_name_problem(name)
    if problem:
        _refuse(flag, name, problem, _ENV_HINT)
    return name


def text_value(value: str, flag: str, what: str) -> str:
    """Any text (an environment variable's value)."""
    if not isinstance(value, str):
        _refuse(flag, value, f"{what} is not text", "pass text values")
    return value


def env_pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` items -> {KEY: VALUE} (a later KEY wins, as with the engine's own flag); a bare
    ``KEY`` passes this machine's value of KEY, and nothing if it has none (as container engines do)."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        problem = _env_name_problem(key)
        if problem:
            _refuse(flag, item, problem, _ENV_HINT)
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return env


def env_files(paths: Sequence[str], flag: str) -> dict[str, str]:
    """The variables of env files, as container engines read them: a ``KEY=VALUE`` or ``KEY`` per line (the
    value taken literally, quotes included), blank lines and lines starting with ``#`` skipped."""
    env: dict[str, str] = {}
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            _refuse(flag, path, f"cannot read it ({getattr(exc, 'strerror', None) or type(exc).__name__})",
                    "pass a readable text file of KEY=VALUE lines")
        for number, line in enumerate(lines, 1):
            line = line.lstrip()
            if not line or line.startswith("#"):
                continue
            env |= env_pairs([line], f"{flag} {path}:{number}")
    return env


def image(text: str, flag: str) -> str:
    """An image reference: ``[REGISTRY[:PORT]/]PATH[:TAG][@DIGEST]``, the path in lowercase."""
    if not isinstance(text, str) or not _IMAGE.fullmatch(text):
        _refuse(flag, text, "it is not an image reference",
                "write [REGISTRY/]NAME[:TAG] with a lowercase name, e.g. ghcr.io/me/app:1.0")
    return text


def image_tag(text: str, flag: str) -> str:
    if not isinstance(text, str) or not re.fullmatch(_TAG, text):
        _refuse(flag, text, "it is not an image tag", "use letters, digits, '_', '.' and '-' (at most 128), e.g. 0.1.0 or dev")
    return text


def image_prefix(text: str, flag: str) -> str:
    """What gefyra's image names start with: a registry, a path, or both (``localhost:5000/gefyra``)."""
    if not isinstance(text, str) or not _IMAGE_PREFIX.fullmatch(text):
        _refuse(flag, text, "it is not a registry or repository path",
                "write REGISTRY[/PATH] or PATH in lowercase, e.g. localhost:5000/gefyra")
    return text


def registry(text: str, flag: str) -> str:
    """Where gefyra's images come from: ``HOST[:PORT][/PATH]``."""
    if not isinstance(text, str) or not _IMAGE_PREFIX.fullmatch(text):
        _refuse(flag, text, "it is not a registry", "write HOST[:PORT][/PATH], e.g. registry.example.com:5000")
    return text


def _volume_problem(text: str) -> str | None:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        return "it is not SOURCE:TARGET or SOURCE:TARGET:OPTIONS"
    source, target, options = parts[0], parts[1], parts[2] if len(parts) == 3 else "rw"
    if _CONTROL.search(text):
        return "it has a control character (newline, tab, ...)"
    if not source.startswith("/") and not _VOLUME_NAME.fullmatch(source):
        return f"the source {shown(source)} is neither an absolute path nor a volume name"
    if not target.startswith("/"):
        return f"the target {shown(target)} is not an absolute path"
    unknown = set(options.split(",")) - _MOUNT_OPTIONS
    if unknown:
        return f"the options {shown(options)} are not ro, rw, z or Z"
    return None


def volume(text: str, flag: str) -> str:
    """A bind mount ``SOURCE:TARGET[:OPTIONS]``: an absolute host path (or a volume name), an
    absolute path in the container, options among ro, rw, z, Z."""
    problem = _not_text(text, "volume") or _volume_problem(text)
    if problem:
        _refuse(flag, text, problem, "write /ABSOLUTE/HOST/PATH:/PATH/IN/CONTAINER[:ro], e.g. /home/me/src:/app")
    return text


def volumes(items: Sequence[str], flag: str) -> list[str]:
    return [volume(item, flag) for item in items]


def command(text: str, flag: str) -> list[str]:
    """A command in shell syntax -> its words."""
    try:
        words = shlex.split(text)
    except ValueError as exc:  # shlex says what is wrong: "No closing quotation", "No escaped character"
        _refuse(flag, text, str(exc).lower(), "quote as a shell would, e.g. --command 'sh -c \"echo hi\"'")
    if not words:
        _refuse(flag, text, "it is empty", "leave --command out for the image's own command")
    return words


def command_words(words: Sequence[str] | None, flag: str) -> Sequence[str] | None:
    if words is not None and (isinstance(words, str) or not words or not all(isinstance(w, str) for w in words)):
        _refuse(flag, words, "a command is a non-empty list of words", "pass e.g. ['sh', '-c', 'echo hi'], or None")
    return words


# Kubeconfig


def context_name(text: str, flag: str) -> str:
    """A kubeconfig context's name: any text but empty or with control characters."""
    if not isinstance(text, str) or not text or len(text) > 253 or _CONTROL.search(text):
        _refuse(flag, text, "a context's name is 1 to 253 characters without control characters",
                "`kubectl config get-contexts` lists the contexts")
    return text
