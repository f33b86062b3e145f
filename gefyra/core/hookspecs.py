"""The hooks through which gefyra's backends are chosen and observed (pluggy, project "gefyra").

Backends are chosen in *synchronous* ``firstresult`` hooks that return a backend object or None
(an ``async def`` hookimpl would return a coroutine, never None). The orchestrator then awaits
the chosen object's methods. Built-in plugins mark their implementations ``trylast`` so that a
third-party plugin (entry-point group ``gefyra``) takes precedence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from gefyra.core.bus import Event
    from gefyra.core.config import Settings
    from gefyra.core.runtime import ContainerRuntime

hookspec = pluggy.HookspecMarker("gefyra")


@hookspec(firstresult=True)
def gefyra_container_runtime(settings: Settings) -> ContainerRuntime | None:
    """Returns the container runtime to use for ``settings``, or None to let another plugin decide.

    :param settings: the resolved settings; ``settings.runtime`` is the name the user asked for
        (``"docker"``, ``"podman"``, ...) or None for auto-detection.
    :return: a :class:`~gefyra.core.runtime.ContainerRuntime`, not yet connected.

    Called once per operation, before anything touches the engine. Stops at the first non-None
    result.
    """


@hookspec(firstresult=True)
def gefyra_dns_config(settings: Settings, cluster_dns_ip: str, cluster_domain: str) -> str | None:
    """Returns the configuration of the DNS server in cargo (a CoreDNS Corefile by default).

    :param settings: the resolved settings.
    :param cluster_dns_ip: address of the cluster's DNS Service, reached through the tunnel.
    :param cluster_domain: the cluster's DNS domain, e.g. ``cluster.local``.
    :return: the configuration text.

    Called by ``up`` when cargo is (re)configured. Stops at the first non-None result.
    """


@hookspec
def gefyra_event(event: Event) -> None:
    """Observes every event the orchestrator publishes (progress, step results, undo).

    :param event: the :class:`~gefyra.core.bus.Event`.

    Called synchronously, in order, for each event. Must not block; its return value is ignored.
    """
