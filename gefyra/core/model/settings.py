"""Settings of one gefyra operation, resolved from flags, environment and defaults."""

from __future__ import annotations

import dataclasses
import os

from gefyra import errors
from gefyra._version import __version__
from gefyra.core.model import validation
from gefyra.core.model.identity import default_client_id
from gefyra.core.model.names import LABEL_CLIENT, LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY

#: The environment variables that Settings reads, by field (an empty variable counts as unset).
ENVIRONMENT = {
    "registry": "GEFYRA_REGISTRY",
    "runtime": "GEFYRA_RUNTIME",
    "tunnel": "GEFYRA_TUNNEL",
    "client_id": "GEFYRA_CLIENT_ID",
    "image_tag": "GEFYRA_IMAGE_TAG",
    "image_prefix": "GEFYRA_IMAGE_PREFIX",
    "service_cidr": "GEFYRA_SERVICE_CIDR",
    "api_stream": "GEFYRA_API_STREAM",
}


#: GEFYRA_IMAGE_<COMPONENT> names one of gefyra's images outright; these two are not images.
_IMAGE_SETTINGS = ("GEFYRA_IMAGE_PREFIX", "GEFYRA_IMAGE_TAG")


def _env(field: str) -> str | None:
    return os.environ.get(ENVIRONMENT[field]) or None


def _image_variable(component: str) -> str:
    return f"GEFYRA_IMAGE_{component.upper()}"


def _image_override(component: str) -> str | None:
    return os.environ.get(_image_variable(component)) or None


def image_overrides() -> dict[str, str]:
    """The GEFYRA_IMAGE_<COMPONENT> variables that are set (the components are the backends'
    and the operator's: each names its own)."""
    return {k: v for k, v in os.environ.items()
            if k.startswith("GEFYRA_IMAGE_") and k not in _IMAGE_SETTINGS and v}


#: The settings of the cluster side that all clients share, with their defaults. They change only
#: with `install` (or the `up` that installs); every other `up` takes them as installed, and one
#: that names a different value is refused (None in Settings: as installed, else the default).
#: The tunnel's transports (Settings.transport).
TRANSPORTS = ("auto", "udp", "api")
#: The protocols of a stream through the Kubernetes API (Settings.api_stream).
API_STREAMS = ("auto", "spdy", "websocket")

SHARED_DEFAULTS: dict[str, int] = {"port": 31820, "client_timeout": 60}


@dataclasses.dataclass
class Settings:
    """Checked when made and again when a :class:`gefyra.Gefyra` takes them (:meth:`validate`)."""

    kubeconfig: str | None = None
    context: str | None = None
    #: The container runtime's name (a built-in one or a plugin's), None to auto-detect.
    runtime: str | None = dataclasses.field(default_factory=lambda: _env("runtime"))
    #: The tunnel backend's name, None for the default.
    tunnel: str | None = dataclasses.field(default_factory=lambda: _env("tunnel"))
    client_id: str = dataclasses.field(default_factory=lambda: _env("client_id") or default_client_id())
    #: Address at which this machine reaches the tunnel's server end; chosen from what the cluster
    #: says when not given (gefyra.client.tunnel_endpoint).
    host: str | None = None
    #: The port of the tunnel's server end on the nodes (shared: see SHARED_DEFAULTS).
    port: int | None = None
    #: Where gefyra's images come from: ``REGISTRY/PREFIX/COMPONENT:TAG`` (no registry: the
    #: engine's and the cluster's default registry), the tag gefyra's version. One image can be
    #: named outright in GEFYRA_IMAGE_<COMPONENT> (e.g. GEFYRA_IMAGE_OPERATOR).
    registry: str | None = dataclasses.field(default_factory=lambda: _env("registry"))
    image_tag: str = dataclasses.field(default_factory=lambda: _env("image_tag") or __version__)
    image_prefix: str = dataclasses.field(default_factory=lambda: _env("image_prefix") or "gefyra")
    cluster_domain: str = "cluster.local"
    #: Cluster ranges routed through the tunnel; discovered from the cluster when empty.
    service_cidr: str | None = dataclasses.field(default_factory=lambda: _env("service_cidr"))
    pod_cidrs: list[str] = dataclasses.field(default_factory=list)
    #: The MTU of this client's end of the tunnel while its datagrams may go over UDP (a path
    #: with a VPN or PPPoE on it still carries them whole).
    tunnel_mtu: int = 1340
    #: Its MTU with ``transport`` "api": the stream through the Kubernetes API carries datagrams
    #: of any size whole, and fewer, larger packets cost every hop on the way less per byte (the
    #: tunnel's two ends, the server end's TCP/IP stack). The local container network gets it too.
    stream_mtu: int = 9000
    #: Seconds of silence after which the operator suspends a client's bridges (their workloads
    #: answer until it speaks again; shared: see SHARED_DEFAULTS).
    client_timeout: int | None = None
    timeout: float = 120.0
    #: How the tunnel's datagrams reach the server end: "udp" (to the NodePort), "api" (a stream
    #: through the Kubernetes API), or "auto" (UDP when a handshake completes within a short probe).
    transport: str = "auto"
    #: The protocol of a stream through the Kubernetes API (the API transport's): "spdy" (what
    #: kubectl speaks; the cheaper one for the container runtime), "websocket" (what proxies in
    #: front of an API server carry more often), or "auto" (SPDY, unless a proxy is configured or
    #: the API server refuses it).
    api_stream: str = dataclasses.field(default_factory=lambda: _env("api_stream") or "auto")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises UsageError for a bad value, given by the caller or taken from the environment,
        naming the field (and its environment variable)."""
        v, name = validation, self._name
        v.dns_label(self.client_id, name("client_id"), "client id")
        for field in ("runtime", "tunnel"):
            if getattr(self, field) is not None:
                v.dns_label(getattr(self, field), name(field), f"{field} name")
        if self.context is not None:
            v.context_name(self.context, name("context"))
        if self.host is not None:
            v.host(self.host, name("host"))
        if self.port is not None:
            v.port_number(self.port, name("port"))
        if self.registry is not None:
            v.registry(self.registry, name("registry"))
        for variable, value in image_overrides().items():
            v.image(value, variable)
        v.image_tag(self.image_tag, name("image_tag"))
        v.image_prefix(self.image_prefix, name("image_prefix"))
        v.dns_subdomain(self.cluster_domain, name("cluster_domain"), "cluster domain")
        if self.service_cidr is not None:
            v.cidr(self.service_cidr, name("service_cidr"))
        v.cidrs(self.pod_cidrs, name("pod_cidrs"))
        v.whole_number_value(self.tunnel_mtu, name("tunnel_mtu"), "MTU", 576, 9000)
        v.whole_number_value(self.stream_mtu, name("stream_mtu"), "MTU", 576, 9000)
        if self.client_timeout is not None:
            v.whole_number_value(self.client_timeout, name("client_timeout"), "client timeout", 10,
                                 validation.MAX_SECONDS)
        v.seconds_value(self.timeout, name("timeout"))
        if self.transport not in TRANSPORTS:
            raise errors.UsageError(f"{name('transport')} {v.shown(self.transport)} is not a transport",
                                    f"use one of {', '.join(TRANSPORTS)}")
        if self.api_stream not in API_STREAMS:
            raise errors.UsageError(f"{name('api_stream')} {v.shown(self.api_stream)} is not a stream protocol",
                                    f"use one of {', '.join(API_STREAMS)}")

    @staticmethod
    def _name(field: str) -> str:
        """``Settings.client_id (GEFYRA_CLIENT_ID)``: where a bad value came from."""
        env = ENVIRONMENT.get(field)
        return f"Settings.{field}" + (f" ({env})" if env else "")

    def with_shared(self, installed: dict[str, int] | None = None) -> Settings:
        """These settings with every shared setting resolved: as given, else as ``installed``, else
        the default. (Whether a given one may differ from the installed one is the caller's
        question: :meth:`shared_conflicts`.)"""
        installed = installed or {}
        resolved = {k: getattr(self, k) if getattr(self, k) is not None else installed.get(k, default)
                    for k, default in SHARED_DEFAULTS.items()}
        return dataclasses.replace(self, port=resolved["port"], client_timeout=resolved["client_timeout"])

    def shared_conflicts(self, installed: dict[str, int]) -> dict[str, tuple[int, int]]:
        """The shared settings given here that differ from the ``installed`` ones: name ->
        (given, installed)."""
        return {k: (getattr(self, k), installed[k]) for k in SHARED_DEFAULTS
                if getattr(self, k) is not None and k in installed and getattr(self, k) != installed[k]}

    def image(self, component: str) -> str:
        """The image of one of gefyra's components (``operator``, or one a backend names)."""
        registry = f"{self.registry}/" if self.registry else ""
        return _image_override(component) or f"{registry}{self.image_prefix}/{component}:{self.image_tag}"

    @property
    def network_name(self) -> str:
        return f"gefyra-{self.client_id}"

    def labels(self, role: str) -> dict[str, str]:
        return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLIENT: self.client_id, LABEL_ROLE: role}
