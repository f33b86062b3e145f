"""The contract of an interceptor plugin (:class:`gefyra.core.interceptor.Interceptor`), on a real
cluster: it takes a real pod's container over, forwards, and gives the pod back exactly.

A plugin's own test module subclasses :class:`InterceptorContract` and provides ``interceptor``,
``api`` (a kubernetes_asyncio ApiClient) and ``pod`` (a running pod whose container ``server``
declares port 8080 and has an httpGet readiness probe on it; its namespace is the plugin's to use).
If the interceptor's part in the pod fetches its configuration from the operator's endpoint
(:meth:`Interceptor.endpoints`), the ``interceptor`` fixture makes that endpoint reachable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from kubernetes_asyncio import client

from gefyra.core.interceptor import Forward, Interceptor


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.5)


class InterceptorContract:
    pytestmark = pytest.mark.anyio  # inherited by the plugins\' subclasses

    async def test_takes_over_forwards_and_restores_exactly(self, interceptor: Interceptor, api: client.ApiClient,
                                                            pod: client.V1Pod) -> None:
        core = client.CoreV1Api(api)
        name, namespace = pod.metadata.name, pod.metadata.namespace
        template = next(c for c in pod.spec.containers if c.name == "server")
        assert interceptor.validate(template, [8080]) is None
        assert interceptor.bridge_of(pod, "server") is None and not interceptor.is_active(pod, "server")

        await interceptor.take_over(api, pod, "server", "contract-bridge")

        async def active() -> bool:
            current = await core.read_namespaced_pod(name, namespace)
            return interceptor.is_active(current, "server")

        await _eventually(active)
        current = await core.read_namespaced_pod(name, namespace)
        assert interceptor.bridge_of(current, "server") == "contract-bridge"
        await interceptor.take_over(api, current, "server", "contract-bridge")  # again: nothing changes
        forwards = [Forward(8080, "127.0.0.1", 20999)]

        async def configured() -> bool:
            current = await core.read_namespaced_pod(name, namespace)
            return await interceptor.configure(api, current, "server", template, forwards)

        await _eventually(configured)  # level-based: True once the interceptor forwards
        current = await core.read_namespaced_pod(name, namespace)
        assert await interceptor.configure(api, current, "server", template, forwards)  # idempotent

        assert not await interceptor.restore(api, current, "server")  # the original is not back yet

        async def restored() -> bool:
            return await interceptor.restore(api, await core.read_namespaced_pod(name, namespace), "server")

        await _eventually(restored)
        now = await core.read_namespaced_pod(name, namespace)
        state = next(s for s in now.status.container_statuses if s.name == "server")
        assert state.ready and not interceptor.is_active(now, "server")
        after = await core.read_namespaced_pod(name, namespace)
        assert interceptor.bridge_of(after, "server") is None
        assert not [k for k in after.metadata.annotations or {} if k not in (pod.metadata.annotations or {})]
        assert api.sanitize_for_serialization(after.spec.containers) == api.sanitize_for_serialization(pod.spec.containers)
