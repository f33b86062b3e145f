"""Settings of one gefyra operation, resolved from flags, environment and defaults."""

from __future__ import annotations

import dataclasses
import os
import re
import socket

from gefyra.core.names import LABEL_CLIENT, LABEL_MANAGED_BY, LABEL_ROLE, MANAGED_BY


def _default_client_id() -> str:
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower()).strip("-") or "client"
    return f"{host[:40]}-{os.getuid()}"


@dataclasses.dataclass
class Settings:
    kubeconfig: str | None = None
    context: str | None = None
    #: The container runtime's name (a built-in one or a plugin's), None to auto-detect.
    runtime: str | None = dataclasses.field(default_factory=lambda: os.environ.get("GEFYRA_RUNTIME") or None)
    #: The tunnel backend's name, None for the default.
    tunnel: str | None = dataclasses.field(default_factory=lambda: os.environ.get("GEFYRA_TUNNEL") or None)
    client_id: str = dataclasses.field(default_factory=lambda: os.environ.get("GEFYRA_CLIENT_ID") or _default_client_id())
    #: Address and UDP port at which this machine reaches stowaway; the host defaults to the API
    #: server's host.
    host: str | None = None
    port: int = 31820
    image_tag: str = dataclasses.field(default_factory=lambda: os.environ.get("GEFYRA_IMAGE_TAG", "dev"))
    image_prefix: str = dataclasses.field(default_factory=lambda: os.environ.get("GEFYRA_IMAGE_PREFIX", "gefyra"))
    cluster_domain: str = "cluster.local"
    #: Cluster ranges routed through the tunnel; discovered from the cluster when empty.
    service_cidr: str | None = None
    pod_cidrs: list[str] = dataclasses.field(default_factory=list)
    tunnel_mtu: int = 1340
    #: Seconds after which the operator treats a silent client as gone (and removes its bridges).
    client_timeout: int = 60
    timeout: float = 120.0

    def image(self, component: str) -> str:
        return f"{self.image_prefix}/{component}:{self.image_tag}"

    @property
    def network_name(self) -> str:
        return f"gefyra-{self.client_id}"

    @property
    def cargo_name(self) -> str:
        """The container of the tunnel's local end (and cargo's DNS server)."""
        return f"gefyra-cargo-{self.client_id}"

    def labels(self, role: str) -> dict[str, str]:
        return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLIENT: self.client_id, LABEL_ROLE: role}
