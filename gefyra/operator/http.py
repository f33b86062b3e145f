"""The operator's HTTP server (port 8080): the interceptors' parts in bridged pods fetch their
configuration here (each interceptor names its paths), and the kubelet's liveness probe asks
``/healthz``, which fails once the reconcile loop has made no round for ``STALE`` seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import structlog
from aiohttp import web

from gefyra.core.spi.interceptor import HttpRequest, Interceptor

log = structlog.get_logger("gefyra.operator")

PORT = 8080
#: A loop that has not finished a round for this long is stuck: the kubelet restarts the operator.
STALE = 60.0


class Health:
    """When the reconcile loop last finished a round."""

    def __init__(self) -> None:
        self.last_round = time.monotonic()

    def round_done(self) -> None:
        self.last_round = time.monotonic()

    @property
    def stale(self) -> bool:
        return time.monotonic() - self.last_round > STALE


def app(health: Health, interceptors: Callable[[], Iterable[Interceptor]]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        if health.stale:
            return web.Response(status=500, text=f"no reconcile round for {STALE:.0f}s\n")
        return web.Response(text="ok\n")

    async def interceptor_path(request: web.Request) -> web.Response:
        """The first interceptor that knows the caller answers (several may serve the same path:
        a plugin's interceptor may extend a built-in one)."""
        for interceptor in interceptors():
            handler = interceptor.http_paths().get(request.path)
            if handler is not None:
                answer = await handler(HttpRequest(peer=request.remote or "", query=dict(request.query)))
                if answer.status != 404:
                    return web.Response(status=answer.status, body=answer.body, content_type="application/json")
        return web.Response(status=404)

    application = web.Application()
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/{path:.*}", interceptor_path)
    return application


async def serve(application: web.Application) -> web.AppRunner:
    """Starts serving on PORT (every address of the pod); the caller cleans the runner up."""
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, port=PORT).start()
    log.info("endpoint listening", port=PORT)
    return runner
