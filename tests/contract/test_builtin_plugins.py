"""The contract suites (tests/contract/) run against gefyra's built-in plugins: Docker and Podman,
WireGuard, nginx, on this machine's engines and the development cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model.settings import Settings
from gefyra.core.spi.interceptor import Interceptor
from gefyra.core.spi.runtime import ContainerRuntime
from gefyra.core.spi.tunnel import Tunnel
from gefyra.plugins.docker import DockerRuntime
from gefyra.plugins.interceptor_nginx import NginxInterceptor
from gefyra.plugins.podman import PodmanRuntime, podman_socket
from gefyra.plugins.wireguard import WireGuardTunnel
from gefyra.testing import InterceptorContract, RuntimeContract, TunnelContract, serve_http_paths
from tests.e2e import devcluster
from tests.e2e.gefyra_cli import gefyra as gefyra_cli

pytestmark = pytest.mark.e2e

_HOST = "10.250.0.1"  # this machine, as the development cluster's pods reach it (hack/devcluster/common.sh)
_ENDPOINT_PORT = 18080  # where this test process answers as the operator would
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
---
# The routers' account, as the cluster side has it (no rights: it names the routers' pods).
apiVersion: v1
kind: ServiceAccount
metadata: {{name: gefyra-router, namespace: gefyra}}
automountServiceAccountToken: false
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


class OnTheDevelopmentCluster:
    """The fixtures of the interceptor contract on the development cluster, for an interceptor that
    :meth:`make_interceptor` makes (the built-in one, or a plugin's)."""

    def make_interceptor(self) -> Interceptor:
        raise NotImplementedError

    @pytest.fixture
    async def interceptor(self, pod: dict[str, Any]) -> AsyncIterator[Interceptor]:
        """carrier asks the `gefyra-operator` Service for its configuration: here that Service leads
        to this test process, which answers with this interceptor's paths (the pods' agents say
        their addresses: the pod network masquerades traffic to this machine)."""
        interceptor = self.make_interceptor()
        async with serve_http_paths(interceptor, _HOST, _ENDPOINT_PORT):
            gefyra_cli("uninstall")  # the real operator's Service must not be there
            devcluster.kubectl("create", "namespace", "gefyra", check=False)
            devcluster.apply(_ENDPOINT_SERVICE)
            try:
                yield interceptor
            finally:
                devcluster.kubectl("delete", "namespace", "gefyra", "--timeout=60s", check=False)

    @pytest.fixture
    def forward_to(self) -> tuple[str, int]:
        return _HOST, _ENDPOINT_PORT

    @pytest.fixture
    async def cluster(self) -> AsyncIterator[Cluster]:
        async with Cluster(Settings(kubeconfig=str(devcluster.KUBECONFIG))) as cluster:
            yield cluster

    @pytest.fixture
    def namespace(self) -> Iterator[str]:
        name = devcluster.unique("gfy-test-contract")
        devcluster.kubectl("create", "namespace", name)
        yield name
        devcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)

    @pytest.fixture
    async def pod(self, cluster: Cluster, namespace: str) -> dict[str, Any]:
        devcluster.apply(devcluster.http_workload("web", namespace, kind="pod"))
        await anyio.run_process([str(devcluster.KUBECTL), "--kubeconfig", str(devcluster.KUBECONFIG), "-n", namespace,
                                 "wait", "--for=condition=Ready", "pod/web", "--timeout=90s"])
        found: dict[str, Any] = await cluster.request("GET", path("pods", namespace, "web"))
        return found


class TestNginxInterceptor(OnTheDevelopmentCluster, InterceptorContract):
    def make_interceptor(self) -> Interceptor:
        return NginxInterceptor(Settings().image("carrier"))
