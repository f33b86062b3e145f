"""The hooks through which gefyra's backends are chosen and its operations extended and observed
(pluggy, project "gefyra").

Backends are chosen in *synchronous* ``firstresult`` hooks that return a backend object or None
(an ``async def`` hookimpl would return a coroutine, never None). The orchestrator then awaits
the chosen object's methods. Built-in plugins mark their implementations ``trylast`` so that a
third-party plugin (entry-point group ``gefyra``) takes precedence. The client, the API and the
operator all build the same plugin manager (:func:`gefyra.core.engine.plugins.make_plugin_manager`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from gefyra.core.engine.bus import Event
    from gefyra.core.engine.steps import Step
    from gefyra.core.model.settings import Settings
    from gefyra.core.spi.dns import Dns
    from gefyra.core.spi.interceptor import Interceptor
    from gefyra.core.spi.runtime import ContainerRuntime
    from gefyra.core.spi.tunnel import Tunnel

hookspec = pluggy.HookspecMarker("gefyra")


@hookspec(firstresult=True)
def gefyra_container_runtime(settings: Settings) -> ContainerRuntime | None:
    """Returns the container runtime to use for ``settings``, or None to let another plugin decide.

    :param settings: the resolved settings; ``settings.runtime`` is the name the user asked for
        or None for auto-detection.
    :return: a :class:`~gefyra.core.spi.runtime.ContainerRuntime`, not yet connected.

    Called once per orchestrator, before anything touches the engine. Stops at the first non-None
    result.
    """


@hookspec(firstresult=True)
def gefyra_tunnel(settings: Settings) -> Tunnel | None:
    """Returns the tunnel backend to use for ``settings``, or None to let another plugin decide.

    :param settings: the resolved settings; ``settings.tunnel`` is the name the user asked for, or
        None for the default.
    :return: a :class:`~gefyra.core.spi.tunnel.Tunnel` (its :meth:`~gefyra.core.spi.tunnel.Tunnel.server`
        gives the cluster side, which the operator uses).

    Called by ``up``, ``run``, ``bridge``, ``unbridge`` and ``status`` on the client, and once at
    the operator's start. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def gefyra_interceptor(settings: Settings, name: str | None) -> Interceptor | None:
    """Returns the interceptor called ``name``, or None if this plugin does not provide it.

    :param settings: the resolved settings (images among them).
    :param name: the interceptor a bridge asks for (``spec.interceptor`` of a GefyraBridge,
        ``--interceptor`` of ``gefyra bridge``), or None for the default one.
    :return: an :class:`~gefyra.core.spi.interceptor.Interceptor`.

    Called by ``bridge`` on the client (to validate the target before anything changes) and by the
    operator for every bridge it reconciles. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def gefyra_dns(settings: Settings) -> Dns | None:
    """Returns the DNS server to run in the tunnel's local end, or None to let another plugin decide.

    :param settings: the resolved settings.
    :return: a :class:`~gefyra.core.spi.dns.Dns`.

    Called by ``up`` when the local end is (re)created. Stops at the first non-None result.
    """


@hookspec
def gefyra_plan_steps(operation: str, settings: Settings) -> list[Step] | None:  # type: ignore[type-arg]
    """Returns extra steps for an operation's plan, or None.

    :param operation: ``"up"``, ``"down"``, ``"down-local"`` (`down` while the cluster does not
        answer: this machine only), ``"run"``, ``"bridge"`` or ``"unbridge"``.
    :param settings: the resolved settings.
    :return: :class:`~gefyra.core.engine.steps.Step` objects. Each declares what it ``needs`` and
        ``provides`` (names of facts; the built-in steps' facts are listed in their modules); the
        orchestrator starts it once its needs are published, beside the built-in steps, and undoes
        it with them on failure.

    Called each time an operation's plan is built. Every plugin's result is used.
    """


@hookspec
def gefyra_event(event: Event) -> None:
    """Observes every event the orchestrator publishes (progress, step results, undo, facts).

    :param event: the :class:`~gefyra.core.engine.bus.Event`.

    Called synchronously, in order, for each event. Must not block; its return value is ignored.
    """
