"""The contract suites (tests/contract/) run against gefyra's built-in plugins: Docker and Podman,
WireGuard, nginx, on this machine's engines and the development cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from aiohttp import web
from kubernetes_asyncio import client, config

from gefyra.core.model.settings import Settings
from gefyra.core.spi.interceptor import EndpointRequest, Interceptor
from gefyra.core.spi.runtime import ContainerRuntime
from gefyra.core.spi.tunnel import Tunnel
from gefyra.plugins.docker import DockerRuntime
from gefyra.plugins.interceptor_nginx import NginxInterceptor
from gefyra.plugins.podman import PodmanRuntime, podman_socket
from gefyra.plugins.wireguard import WireGuardTunnel
from tests.contract.interceptor import InterceptorContract
from tests.contract.runtime import RuntimeContract
from tests.contract.tunnel import TunnelContract
from tests.e2e import devcluster
from tests.e2e.gefyra_cli import gefyra as gefyra_cli

pytestmark = pytest.mark.e2e

_HOST = "10.250.0.1"  # this machine, as the development cluster's pods reach it (hack/devcluster/common.sh)
_ENDPOINT_PORT = 18080
_ENDPOINT_SERVICE = f"""
apiVersion: v1
kind: Service
metadata: {{name: gefyra-operator, namespace: gefyra}}
spec:
  ports: [{{name: operator, port: 8080, targetPort: {_ENDPOINT_PORT}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: gefyra-operator-test
  namespace: gefyra
  labels: {{kubernetes.io/service-name: gefyra-operator}}
addressType: IPv4
ports: [{{name: operator, port: {_ENDPOINT_PORT}, protocol: TCP}}]
endpoints: [{{addresses: ["{_HOST}"]}}]
"""


@pytest.fixture
def image() -> str:
    return devcluster.TEST_IMAGE


class TestDockerRuntime(RuntimeContract):
    @pytest.fixture
    async def runtime(self) -> AsyncIterator[ContainerRuntime]:
        async with DockerRuntime() as runtime:
            yield runtime


class TestPodmanRuntime(RuntimeContract):
    @pytest.fixture
    async def runtime(self) -> AsyncIterator[ContainerRuntime]:
        socket = podman_socket()
        assert socket is not None, "Podman's API service is not running (make podman)"
        async with PodmanRuntime(socket) as runtime:
            yield runtime


class TestWireGuardTunnel(TunnelContract):
    @pytest.fixture
    def tunnel(self) -> Tunnel:
        return WireGuardTunnel()

    @pytest.fixture
    async def runtime(self) -> AsyncIterator[ContainerRuntime]:
        async with DockerRuntime() as runtime:
            yield runtime


class TestNginxInterceptor(InterceptorContract):
    @pytest.fixture
    async def interceptor(self, pod: client.V1Pod) -> AsyncIterator[Interceptor]:
        """carrier asks the `gefyra-operator` Service for its configuration: here that Service leads
        to this test process, which answers with this interceptor's endpoints. The pod network
        masquerades traffic to this machine, so the test tells the interceptor the pod's IP."""
        interceptor = NginxInterceptor(Settings().image("carrier"))

        async def handle(request: web.Request) -> web.Response:
            if request.path == "/healthz":  # the bridged port's readiness probe, forwarded here
                return web.Response(text="ok")
            handler = interceptor.endpoints().get(request.path)
            if handler is None:
                return web.Response(status=404)
            answer = await handler(EndpointRequest(peer=pod.status.pod_ip, query=dict(request.query)))
            return web.Response(status=answer.status, body=answer.body)

        application = web.Application()
        application.router.add_get("/{path:.*}", handle)
        runner = web.AppRunner(application)
        await runner.setup()
        await web.TCPSite(runner, host=_HOST, port=_ENDPOINT_PORT).start()
        gefyra_cli("uninstall")  # the real operator's Service must not be there
        devcluster.kubectl("create", "namespace", "gefyra", check=False)
        devcluster.apply(_ENDPOINT_SERVICE)
        try:
            yield interceptor
        finally:
            devcluster.kubectl("delete", "namespace", "gefyra", "--timeout=60s", check=False)
            await runner.cleanup()

    @pytest.fixture
    def forward_to(self) -> tuple[str, int]:
        return _HOST, _ENDPOINT_PORT

    @pytest.fixture
    async def api(self) -> AsyncIterator[client.ApiClient]:
        api = await config.new_client_from_config(config_file=str(devcluster.KUBECONFIG))
        async with api:
            yield api

    @pytest.fixture
    def namespace(self) -> Iterator[str]:
        name = devcluster.unique("gfy-test-contract")
        devcluster.kubectl("create", "namespace", name)
        yield name
        devcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)

    @pytest.fixture
    async def pod(self, api: client.ApiClient, namespace: str) -> client.V1Pod:
        devcluster.apply(devcluster.http_workload("web", namespace, kind="pod"))
        await anyio.run_process([str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", namespace,
                                 "wait", "--for=condition=Ready", "pod/web", "--timeout=90s"])
        return await client.CoreV1Api(api).read_namespaced_pod("web", namespace)
