"""carrier: the pod keeps its spec, IP and other containers; only the bridged container's image is
swapped for carrier's, and carrier's nginx gets its forwarding rules through an exec and a reload.
The original image is kept in an annotation of the pod, so that it can be put back exactly.

Which container runs is told by container IDs, never by the image name in the pod's status: a node
that holds one image under two tags reports either tag (measured: spec ``gefyra/carrier:dev``,
status ``docker.io/gefyra/carrier:before``). The ID of the container that was replaced is kept while
carrier is on its way in, and carrier's own while the original is on its way back."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import structlog
from kubernetes_asyncio import client

from gefyra.core import kube
from gefyra.core.interceptor import Forward, Interceptor
from gefyra.core.workloads import container_status

log = structlog.get_logger("gefyra.operator")

ANN_BRIDGE = "gefyra.dev/bridge"
ANN_ORIGINAL = "gefyra.dev/original-image"
ANN_CONFIG = "gefyra.dev/carrier-config"
#: The container that carrier replaces (taking over), and carrier's container (restoring).
ANN_REPLACED = "gefyra.dev/replaced-container"
ANN_RESTORING = "gefyra.dev/restoring-from"


def carrier_config(forwards: Sequence[Forward], probes: dict[int, str]) -> tuple[str, str]:
    """(stream config, http config) for carrier: each bridged port forwards to its host and port;
    probe ports that are not bridged are answered by carrier itself (HTTP 200, or a bare accept)."""
    ports = {f.port for f in forwards}
    stream = "".join(f"server {{ listen {int(f.port)}; proxy_pass {f.host}:{int(f.host_port)}; }}\n"
                     for f in sorted(forwards, key=lambda f: f.port))
    http = ""
    for port, kind in sorted(probes.items()):
        if port in ports:
            continue
        if kind == "http":
            http += f"server {{ listen {port}; location / {{ return 200 'ok'; }} }}\n"
        else:
            stream += f"server {{ listen {port}; return ''; }}\n"
    return stream, http


def probe_ports(container: client.V1Container) -> dict[int, str]:
    """Port -> "http" or "tcp" for the container's httpGet and tcpSocket probes (numeric ports)."""
    found: dict[int, str] = {}
    named = {p.name: p.container_port for p in container.ports or [] if p.name}
    for probe in (container.liveness_probe, container.readiness_probe, container.startup_probe):
        if probe is None:
            continue
        action, kind = (probe.http_get, "http") if probe.http_get else (probe.tcp_socket, "tcp")
        if action is not None:
            port = action.port if isinstance(action.port, int) else named.get(action.port)
            if isinstance(port, int):
                found[port] = kind
    return found


async def _patch(api: client.ApiClient, pod: client.V1Pod, body: dict[str, Any]) -> None:
    await kube.request(api, "PATCH", kube.pod_path(pod.metadata.namespace, pod.metadata.name), body,
                       content_type=kube.STRATEGIC_PATCH)


def _container(pod: client.V1Pod, name: str) -> client.V1Container | None:
    return next((c for c in pod.spec.containers if c.name == name), None)


def _running_id(pod: client.V1Pod, name: str) -> str:
    """The ID of the container ``name`` if it runs now, else ""."""
    state = container_status(pod, name)
    return str(state.container_id or "") if state is not None and state.state.running is not None else ""


class NginxInterceptor(Interceptor):
    name = "nginx"

    def __init__(self, image: str) -> None:
        self.image = image

    def validate(self, container: client.V1Container, ports: Sequence[int]) -> str | None:
        if container.command:
            return (f"container {container.name} sets its own command; carrier can only replace containers "
                    "that use their image's entrypoint")
        for probe in (container.liveness_probe, container.readiness_probe, container.startup_probe):
            if probe is not None and probe._exec is not None:  # "exec" is a keyword: the client names it _exec
                return f"container {container.name} has an exec probe, which carrier cannot answer"
        return None

    def bridge_of(self, pod: client.V1Pod, container: str) -> str | None:
        bridge: str | None = (pod.metadata.annotations or {}).get(ANN_BRIDGE)
        return bridge

    def is_active(self, pod: client.V1Pod, container: str) -> bool:
        annotations = pod.metadata.annotations or {}
        spec = _container(pod, container)
        running = _running_id(pod, container)
        return (spec is not None and spec.image == self.image and ANN_REPLACED in annotations
                and bool(running) and running != annotations[ANN_REPLACED])

    async def take_over(self, api: client.ApiClient, pod: client.V1Pod, container: str, bridge: str) -> None:
        current = _container(pod, container)
        if current is None or current.image == self.image:
            return
        replaced = str(getattr(container_status(pod, container), "container_id", None) or "")
        await _patch(api, pod, {"metadata": {"annotations": {ANN_BRIDGE: bridge, ANN_ORIGINAL: current.image,
                                                             ANN_REPLACED: replaced}},
                                "spec": {"containers": [{"name": container, "image": self.image}]}})
        log.info("carrier swapped in", bridge=bridge, pod=pod.metadata.name)

    async def configure(self, api: client.ApiClient, pod: client.V1Pod, container: str,
                        template: client.V1Container, forwards: Sequence[Forward]) -> bool:
        stream, http = carrier_config(forwards, probe_ports(template))
        digest = hashlib.sha256((stream + http).encode()).hexdigest()[:16]
        if (pod.metadata.annotations or {}).get(ANN_CONFIG) == digest:
            return True
        if not self.is_active(pod, container):
            return False
        script = ('mkdir -p /etc/gefyra-carrier/http && printf %s "$1" > /etc/gefyra-carrier/ports/gefyra.conf && '
                  'printf %s "$2" > /etc/gefyra-carrier/http/gefyra.conf && '
                  'nginx -c /etc/gefyra-carrier/nginx.conf -s reload && echo GEFYRA-CONFIGURED')
        try:
            output = await kube.exec_in_pod(api, pod.metadata.namespace, pod.metadata.name, container,
                                            ["sh", "-c", script, "sh", stream, http])
        except TimeoutError:
            return False  # the next round tries again
        if "GEFYRA-CONFIGURED" not in output:
            return False
        await _patch(api, pod, {"metadata": {"annotations": {ANN_CONFIG: digest}}})
        log.info("carrier configured", pod=pod.metadata.name)
        return True

    async def restore(self, api: client.ApiClient, pod: client.V1Pod, container: str) -> bool:
        annotations = pod.metadata.annotations or {}
        original = annotations.get(ANN_ORIGINAL)
        if original is not None:
            carrier = str(getattr(container_status(pod, container), "container_id", None) or "")
            await _patch(api, pod, {"metadata": {"annotations": {ANN_ORIGINAL: None, ANN_CONFIG: None, ANN_REPLACED: None,
                                                                 ANN_RESTORING: carrier}},
                                    "spec": {"containers": [{"name": container, "image": original}]}})
            log.info("original image restored", pod=pod.metadata.name)
            return False
        running, state = _running_id(pod, container), container_status(pod, container)
        if ANN_RESTORING in annotations and (not running or running == annotations[ANN_RESTORING]
                                             or state is None or not state.ready):
            return False  # carrier still runs, or the original is not ready yet
        if ANN_BRIDGE in annotations or ANN_RESTORING in annotations:
            await _patch(api, pod, {"metadata": {"annotations": {ANN_BRIDGE: None, ANN_RESTORING: None}}})
        return True
