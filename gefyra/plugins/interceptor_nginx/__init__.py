"""Built-in plugin: the ``nginx`` interceptor. carrier (an nginx image) takes a bridged container's
place by an in-place image swap, forwards the bridged ports and answers the remaining probes."""

from __future__ import annotations

from gefyra import hookimpl
from gefyra.core.config import Settings
from gefyra.core.interceptor import Interceptor
from gefyra.plugins.interceptor_nginx.carrier import NginxInterceptor, carrier_config, probe_ports

__all__ = ["NginxInterceptor", "carrier_config", "probe_ports"]


@hookimpl(trylast=True)
def gefyra_interceptor(settings: Settings, name: str | None) -> Interceptor | None:
    """The default interceptor."""
    return NginxInterceptor(settings.image("carrier")) if name in (None, "nginx") else None
