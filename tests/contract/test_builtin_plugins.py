"""The contract suites (tests/contract/) run against gefyra's built-in plugins: Docker and Podman,
WireGuard, nginx, on this machine's engines and the development cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from kubernetes_asyncio import client, config

from gefyra.core.config import Settings
from gefyra.core.interceptor import Interceptor
from gefyra.core.runtime import ContainerRuntime
from gefyra.core.tunnel import Tunnel
from gefyra.plugins.docker import DockerRuntime
from gefyra.plugins.interceptor_nginx import NginxInterceptor
from gefyra.plugins.podman import PodmanRuntime, podman_socket
from gefyra.plugins.wireguard import WireGuardTunnel
from tests.contract.interceptor import InterceptorContract
from tests.contract.runtime import RuntimeContract
from tests.contract.tunnel import TunnelContract
from tests.e2e import devcluster

pytestmark = pytest.mark.e2e


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
    def interceptor(self) -> Interceptor:
        return NginxInterceptor(Settings().image("carrier"))

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
