"""Built-in plugin: the tunnel is WireGuard (user-space wireguard-go at both ends).

The local end is cargo (``local.py``), the server end is stowaway in the cluster, driven by the
operator over its UAPI socket (``server.py``). Bridged ports are steered with iptables at both
ends, in one chain of each end's own network namespace.
"""

from __future__ import annotations

from gefyra import hookimpl
from gefyra.core.model.settings import Settings
from gefyra.core.spi.tunnel import Tunnel
from gefyra.plugins.wireguard.local import WireGuardTunnel
from gefyra.plugins.wireguard.server import WireGuardServer

__all__ = ["WireGuardServer", "WireGuardTunnel"]


@hookimpl(trylast=True)
def gefyra_tunnel(settings: Settings) -> Tunnel | None:
    return WireGuardTunnel() if settings.tunnel in (None, "wireguard") else None
