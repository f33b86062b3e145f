"""The contract of an interceptor plugin (:class:`gefyra.core.spi.interceptor.Interceptor`), on a
real cluster: it carries a global route on a real pod, level-based, and gives the workload back
exactly.

A plugin's own test module subclasses :class:`InterceptorContract` and provides four fixtures:

- ``interceptor``;
- ``cluster``: a connected :class:`gefyra.core.kube.cluster.Cluster`;
- ``pod``: the JSON of a running bare pod whose container ``server`` declares port 8080 and has
  an httpGet readiness probe on ``/healthz`` there, behind a Service of the same name (its
  namespace is the plugin's to use);
- ``forward_to``: (IP, port) where the pod's port 8080 is forwarded to: an HTTP server that
  answers ``/healthz`` (:func:`serve_http_paths` makes one).

If the interceptor's parts in the pods fetch their configuration from the operator's HTTP server
(:meth:`Interceptor.http_paths`), the ``interceptor`` fixture makes that reachable: the Service
``gefyra-operator`` in namespace ``gefyra`` leading to :func:`serve_http_paths`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiohttp import web

from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model.routing import Forward, Interception, Route, Target
from gefyra.core.model.workload import Container, Pod
from gefyra.core.spi.interceptor import HttpRequest, Interceptor, bearer_token


@asynccontextmanager
async def serve_http_paths(interceptor: Interceptor, host: str, port: int) -> AsyncIterator[None]:
    """An HTTP server on ``host``:``port`` in the test process that answers the interceptor's
    paths as the operator would, and ``/healthz`` (the contract pod's probe). Where the pod network
    masquerades traffic to the test machine, the caller's own report of its address (query ``ip``,
    as carrier's agent sends it) stands in for the source address, which the operator goes by."""
    async def handle(request: web.Request) -> web.Response:
        if request.path == "/healthz":
            return web.Response(text="ok")
        handler = interceptor.http_paths().get(request.path)
        if handler is None:
            return web.Response(status=404)
        peer = request.query.get("ip") or request.remote or ""
        answer = await handler(HttpRequest(peer=peer, query=dict(request.query),
                                           token=bearer_token(request.headers.get("Authorization", ""))))
        return web.Response(status=answer.status, body=answer.body)

    application = web.Application()
    application.router.add_get("/{path:.*}", handle)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, host=host, port=port).start()
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


async def _eventually(check: Callable[[], Awaitable[Interception | None]], timeout: float = 60) -> Interception:
    with anyio.fail_after(timeout):
        while (found := await check()) is None:
            await anyio.sleep(0.5)
        return found


class InterceptorContract:
    pytestmark = pytest.mark.anyio  # inherited by the plugins' subclasses

    async def test_carries_a_route_and_gives_the_workload_back_exactly(
            self, interceptor: Interceptor, cluster: Cluster, pod: dict[str, Any], forward_to: tuple[str, int]) -> None:
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        service_before = await cluster.request("GET", path("services", namespace, name))
        template = next(c for c in Pod.of(pod).containers if c.name == "server")
        assert isinstance(template, Container)
        assert interceptor.validate(template, [8080], []) is None
        target = Target(namespace, "pod", name)
        route = Route("contract-bridge", "server", (Forward(8080, *forward_to),))
        await interceptor.prepare(cluster, target)  # what it starts ahead of the route, the route finds

        async def ready() -> Interception | None:
            found = await interceptor.intercept(cluster, target, [route])
            return found if found.routes[route.bridge].ready and found.settled else None

        carried = await _eventually(ready)  # level-based: called until it carries the route
        state = carried.routes[route.bridge]
        assert state.pods and state.sources and state.mode
        again = await interceptor.intercept(cluster, target, [route])  # idempotent
        assert again.routes[route.bridge].ready and again.settled

        async def given_back() -> Interception | None:
            found = await interceptor.intercept(cluster, target, [])
            return found if found.settled else None

        assert (await interceptor.intercept(cluster, target, [])).routes == {}
        await _eventually(given_back)
        now = await cluster.request("GET", path("pods", namespace, name))
        status = Pod.of(now).status("server")
        assert status is not None and status.ready
        before = pod["metadata"].get("annotations") or {}
        assert not [k for k in now["metadata"].get("annotations") or {} if k not in before]
        assert now["spec"]["containers"] == pod["spec"]["containers"]
        service_after = await cluster.request("GET", path("services", namespace, name))
        assert service_after["spec"] == service_before["spec"]

    async def test_what_is_prepared_for_a_bridge_that_never_comes_is_given_back(
            self, interceptor: Interceptor, cluster: Cluster, pod: dict[str, Any]) -> None:
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        service_before = await cluster.request("GET", path("services", namespace, name))
        target = Target(namespace, "pod", name)
        await interceptor.prepare(cluster, target)
        await interceptor.prepare(cluster, target)  # idempotent

        async def given_back() -> Interception | None:
            found = await interceptor.intercept(cluster, target, [])
            return found if found.settled else None

        await _eventually(given_back)
        assert target not in await interceptor.held(cluster)
        service_after = await cluster.request("GET", path("services", namespace, name))
        assert service_after["spec"] == service_before["spec"]
