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

import anyio
import structlog
from aiohttp import web

from gefyra.core.spi.interceptor import HttpRequest, Interceptor, bearer_token

log = structlog.get_logger("gefyra.operator")

PORT = 8080
#: A loop that has not finished a round for this long is stuck: the kubelet restarts the operator.
STALE = 60.0
#: Seconds a request from a caller that no interceptor knows (yet) is held (see interceptor_path).
UNKNOWN_WAIT = 5.0


class Health:
    """When the reconcile loop last finished a round."""

    def __init__(self) -> None:
        self.last_round = time.monotonic()
        self._rounds: anyio.Event | None = None

    def round_done(self) -> None:
        self.last_round = time.monotonic()
        if self._rounds is not None:
            self._rounds.set()
            self._rounds = None

    async def next_round(self) -> None:
        """Returns when the reconcile loop finishes its next round."""
        if self._rounds is None:
            self._rounds = anyio.Event()
        await self._rounds.wait()

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
        a plugin's interceptor may extend a built-in one). A caller that none knows is asked about
        again after each round, for up to UNKNOWN_WAIT seconds: a router's new pod asks as soon as
        it starts, often before the round that offers it a configuration has seen it, and is
        answered the moment that round ends instead of after a 404 and its agent's retry pause."""
        asking = HttpRequest(peer=request.remote or "", query=dict(request.query),
                             token=bearer_token(request.headers.get("Authorization", "")))
        # Only the waits for a round are bounded here: a handler that knows the caller may hold
        # the request longer (a carrier's long poll), and must not be cut into a 404.
        deadline = anyio.current_time() + UNKNOWN_WAIT
        while True:
            for interceptor in interceptors():
                handler = interceptor.http_paths().get(request.path)
                if handler is not None:
                    answer = await handler(asking)
                    if answer.status != 404:
                        return web.Response(status=answer.status, body=answer.body, content_type="application/json")
            if anyio.current_time() >= deadline:
                return web.Response(status=404)
            with anyio.move_on_after(deadline - anyio.current_time()):
                await health.next_round()

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
