"""The contract of an interceptor plugin (:class:`gefyra.core.spi.interceptor.Interceptor`), on a real
cluster: it carries a global route on a real pod, level-based, and gives the workload back exactly.

A plugin's own test module subclasses :class:`InterceptorContract` and provides ``interceptor``,
``api`` (a kubernetes_asyncio ApiClient), ``pod`` (a running bare pod whose container ``server``
declares port 8080 and has an httpGet readiness probe on /healthz there, behind a Service; its
namespace is the plugin's to use) and ``forward_to`` (IP, port) where the pod's port 8080 is
forwarded to: an HTTP server that answers /healthz. If the interceptor's parts fetch their configuration from the operator's
endpoint (:meth:`Interceptor.endpoints`), the ``interceptor`` fixture makes that endpoint reachable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from kubernetes_asyncio import client

from gefyra.core.model.routing import Forward, Interception, Route, Target
from gefyra.core.spi.interceptor import Interceptor


async def _eventually(check: Callable[[], Awaitable[Interception | None]], timeout: float = 60) -> Interception:
    with anyio.fail_after(timeout):
        while (found := await check()) is None:
            await anyio.sleep(0.5)
        return found


class InterceptorContract:
    pytestmark = pytest.mark.anyio  # inherited by the plugins' subclasses

    async def test_carries_a_route_and_gives_the_workload_back_exactly(
            self, interceptor: Interceptor, api: client.ApiClient, pod: client.V1Pod, forward_to: tuple[str, int]) -> None:
        core = client.CoreV1Api(api)
        name, namespace = pod.metadata.name, pod.metadata.namespace
        service_before = api.sanitize_for_serialization(await core.read_namespaced_service(name, namespace))
        template = next(c for c in pod.spec.containers if c.name == "server")
        assert interceptor.validate(template, [8080], []) is None
        target = Target(namespace, "pod", name)
        route = Route("contract-bridge", "server", (Forward(8080, *forward_to),))

        async def ready() -> Interception | None:
            found = await interceptor.intercept(api, target, [route])
            return found if found.routes[route.bridge].ready and found.settled else None

        carried = await _eventually(ready)  # level-based: called until it carries the route
        state = carried.routes[route.bridge]
        assert state.pods and state.sources and state.mode
        again = await interceptor.intercept(api, target, [route])  # idempotent
        assert again.routes[route.bridge].ready and again.settled

        async def given_back() -> Interception | None:
            found = await interceptor.intercept(api, target, [])
            return found if found.settled else None

        assert (await interceptor.intercept(api, target, [])).routes == {}
        await _eventually(given_back)
        now = await core.read_namespaced_pod(name, namespace)
        status = next(s for s in now.status.container_statuses if s.name == "server")
        assert status.ready
        assert not [k for k in now.metadata.annotations or {} if k not in (pod.metadata.annotations or {})]
        assert api.sanitize_for_serialization(now.spec.containers) == api.sanitize_for_serialization(pod.spec.containers)
        service_after = api.sanitize_for_serialization(await core.read_namespaced_service(name, namespace))
        assert service_after["spec"] == service_before["spec"]
