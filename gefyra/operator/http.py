"""The operator's HTTP server (port 8080): the interceptors' parts in bridged pods fetch their
configuration here (each interceptor names its paths), and the kubelet's liveness probe asks
``/healthz``, which fails once the reconcile loop has made no round for ``STALE`` seconds.
``/stats`` says what the operator has cost so far (API requests and watch events, CPU seconds,
memory): benchmarks read it."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Iterable
from typing import Any

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


def _resident_mib() -> float:
    """This process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def app(health: Health, interceptors: Callable[[], Iterable[Interceptor]],
        costs: Callable[[], dict[str, Any]] = dict) -> web.Application:
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

    async def stats(_: web.Request) -> web.Response:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        found = {**costs(), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
                 "resident_mib": round(_resident_mib(), 1), "peak_mib": round(usage.ru_maxrss / 1024, 1)}
        return web.Response(text=json.dumps(found) + "\n", content_type="application/json")

    application = web.Application()
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/stats", stats)
    application.router.add_get("/{path:.*}", interceptor_path)
    return application


async def serve(application: web.Application) -> web.AppRunner:
    """Starts serving on PORT (every address of the pod); the caller cleans the runner up."""
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, port=PORT).start()
    log.info("endpoint listening", port=PORT)
    return runner
