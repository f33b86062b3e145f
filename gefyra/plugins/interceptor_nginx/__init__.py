"""Built-in plugin: the ``nginx`` interceptor, in two modes.

- router (:mod:`.router`), the default: every bridge, global (every connection through the
  workload's Services to the developer) and personal (only the HTTP requests that match its
  conditions; :mod:`.routing` writes the rules). The target's pods are not touched; its Services
  lead to a small router Deployment instead.
- in place (:mod:`.carrier`), for a global bridge that asks for it (``--in-place``): the bridged
  container's image is swapped for carrier's (nginx and an agent) in every pod of the target; it
  takes connections to the pods' own IPs too, but the container restarts.

Both get their nginx configuration from the operator's HTTP server (:mod:`.board`)."""

from __future__ import annotations

from gefyra import hookimpl
from gefyra.core.model.settings import Settings
from gefyra.core.spi.interceptor import Interceptor
from gefyra.plugins.interceptor_nginx.carrier import carrier_config, probe_ports
from gefyra.plugins.interceptor_nginx.interceptor import NginxInterceptor

__all__ = ["NginxInterceptor", "carrier_config", "probe_ports"]


@hookimpl(trylast=True)
def gefyra_interceptor(settings: Settings, name: str | None) -> Interceptor | None:
    """The default interceptor."""
    return NginxInterceptor(settings.image("carrier")) if name in (None, "nginx") else None
