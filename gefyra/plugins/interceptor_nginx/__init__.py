"""Built-in plugin: the ``nginx`` interceptor, in two modes.

- in place (:mod:`.carrier`): a global bridge swaps the bridged container's image for carrier's
  (nginx and an agent), in every pod of the target; fast, and it takes every connection to the pods.
- router (:mod:`.router`): personal bridges (only the HTTP requests that match their conditions go
  to a developer; :mod:`.routing` writes the rules), and global bridges of containers that carrier
  cannot replace in place (a container that sets ``command`` or has exec probes). The target's
  pods are not touched; its Services lead to a small router Deployment instead.

Both get their nginx configuration from the operator's endpoint (:mod:`.board`)."""

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
