"""Settings of one gefyra operation, resolved from flags, environment and defaults."""

from __future__ import annotations

import dataclasses
import os
import re
import socket

#: Every object gefyra creates carries this label (and LABEL_CLIENT), so that `down` finds it.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "gefyra"
LABEL_CLIENT = "gefyra.dev/client"
LABEL_ROLE = "gefyra.dev/role"

GEFYRA_NAMESPACE = "gefyra"
CRD_GROUP = "gefyra.dev"
CRD_VERSION = "v1alpha1"

#: The tunnel's own range: stowaway is .1, each client gets one address. RFC 2544's benchmarking
#: range, chosen because local and cluster networks practically never use it.
TUNNEL_NETWORK = "198.18.0.0/16"
TUNNEL_SERVER_ADDRESS = "198.18.0.1"


def _default_client_id() -> str:
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower()).strip("-") or "client"
    return f"{host[:40]}-{os.getuid()}"


@dataclasses.dataclass
class Settings:
    kubeconfig: str | None = None
    context: str | None = None
    #: ``docker``, ``podman`` or None (auto-detect).
    runtime: str | None = dataclasses.field(default_factory=lambda: os.environ.get("GEFYRA_RUNTIME") or None)
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
        return f"gefyra-cargo-{self.client_id}"

    def labels(self, role: str) -> dict[str, str]:
        return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLIENT: self.client_id, LABEL_ROLE: role}
