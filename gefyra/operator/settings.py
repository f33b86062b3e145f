"""The operator's own settings, read once from its container's environment (the manifests set
them; see manifests/gefyra.yaml). gefyra's :class:`~gefyra.core.model.settings.Settings` (images,
registry) are read from the same environment by the plugins' hooks."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from gefyra.core.model.names import GEFYRA_NAMESPACE


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    #: The namespace of gefyra's objects.
    namespace: str = GEFYRA_NAMESPACE
    #: The pod's own address: where the tunnel's server end takes the connections that bridges forward.
    pod_ip: str = ""
    #: Seconds of silence after which a client's bridges give their traffic back (it stays).
    client_timeout: float = 60.0
    #: Seconds of silence after which a client is gone (its bridges with it).
    client_expiry: float = 12 * 3600.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> OperatorSettings:
        return cls(namespace=environ.get("GEFYRA_NAMESPACE", GEFYRA_NAMESPACE), pod_ip=environ["POD_IP"],
                   client_timeout=float(environ.get("GEFYRA_CLIENT_TIMEOUT", "60")),
                   client_expiry=float(environ.get("GEFYRA_CLIENT_EXPIRY", str(12 * 3600))))
