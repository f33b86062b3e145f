"""carrier: the pod keeps its spec, IP and other containers; only the bridged container's image is
swapped for carrier's. carrier's agent fetches its nginx configuration from the operator's
endpoint (a long poll: it asks again at once with the version it runs, and the answer comes when
there is a newer one), so the operator needs no exec rights. The original image is kept in an
annotation of the pod, so that it can be put back exactly.

Which container runs is told by container IDs, never by the image name in the pod's status: a node
that holds one image under two tags reports either tag (measured: spec ``gefyra/carrier:dev``,
status ``docker.io/gefyra/carrier:before``). The ID of the container that was replaced is kept while
carrier is on its way in, and carrier's own while the original is on its way back."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import structlog
from kubernetes_asyncio import client

from gefyra.core import kube
from gefyra.core.interceptor import EndpointAnswer, EndpointHandler, EndpointRequest, Forward, Interceptor
from gefyra.core.workloads import container_status

log = structlog.get_logger("gefyra.operator")

ANN_BRIDGE = "gefyra.dev/bridge"
ANN_ORIGINAL = "gefyra.dev/original-image"
#: Where carrier's agent asks for its configuration (see images/carrier/).
CONFIG_PATH = "/carrier/v1/config"
#: Seconds the endpoint holds a request that has nothing new (carrier's agent waits 35 s).
LONG_POLL = 25.0
#: The container that carrier replaces (taking over), and carrier's container (restoring).
ANN_REPLACED = "gefyra.dev/replaced-container"
ANN_RESTORING = "gefyra.dev/restoring-from"


def carrier_config(forwards: Sequence[Forward], probes: dict[int, str]) -> tuple[str, str]:
    """(stream config, http config) for carrier: each bridged port forwards to its host and port;
    probe ports that are not bridged are answered by carrier itself (HTTP 200, or a bare accept)."""
    ports = {f.port for f in forwards}
    stream = "".join(f"server {{ listen {int(f.port)}; proxy_pass {ipaddress.ip_address(f.host)}:{int(f.host_port)}; }}\n"
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


class _Board:
    """What each carrier should run, by its pod's IP, and the version it last said it runs."""

    def __init__(self) -> None:
        self.wanted: dict[str, tuple[str, bytes]] = {}
        self.applied: dict[str, str] = {}
        self._changed: dict[str, anyio.Event] = {}

    def want(self, ip: str, version: str, body: bytes) -> None:
        if self.wanted.get(ip, ("", b""))[0] != version:
            self.wanted[ip] = (version, body)
            self._wake(ip)

    def forget(self, ip: str) -> None:
        self.wanted.pop(ip, None)
        self.applied.pop(ip, None)
        self._wake(ip)

    def _wake(self, ip: str) -> None:
        event = self._changed.pop(ip, None)
        if event is not None:
            event.set()

    async def answer(self, ip: str, have: str, on_news: Callable[[], None]) -> EndpointAnswer:
        """The answer to carrier at ``ip`` that runs version ``have``. ``on_news`` is called at once
        when that report is news (the version it was to apply, not known to be applied before),
        before the request is held."""
        wanted = self.wanted.get(ip)
        if wanted is None:
            return EndpointAnswer(404)
        news = have == wanted[0] and self.applied.get(ip) != have
        self.applied[ip] = have
        if news:
            on_news()
        with anyio.move_on_after(LONG_POLL):
            while (current := self.wanted.get(ip)) is not None and current[0] == have:
                await self._changed.setdefault(ip, anyio.Event()).wait()
        current = self.wanted.get(ip)
        if current is None:
            return EndpointAnswer(404)
        return EndpointAnswer(304) if current[0] == have else EndpointAnswer(200, current[1])


class NginxInterceptor(Interceptor):
    name = "nginx"

    def __init__(self, image: str) -> None:
        self.image = image
        self._board = _Board()

    def endpoints(self) -> Mapping[str, EndpointHandler]:
        return {CONFIG_PATH: self._config_request}

    async def _config_request(self, request: EndpointRequest) -> EndpointAnswer:
        def configured() -> None:
            log.info("carrier configured", pod_ip=request.peer)
            self.notify()

        return await self._board.answer(request.peer, request.query.get("have", ""), configured)

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
        ip = pod.status.pod_ip if pod.status is not None else None
        if not ip:
            return False
        stream, http = carrier_config(forwards, probe_ports(template))
        version = hashlib.sha256((stream + http).encode()).hexdigest()[:16]
        # Wanted before carrier runs: its first request gets the configuration.
        self._board.want(ip, version, json.dumps({"version": version, "stream": stream, "http": http}).encode())
        return self.is_active(pod, container) and self._board.applied.get(ip) == version

    async def restore(self, api: client.ApiClient, pod: client.V1Pod, container: str) -> bool:
        annotations = pod.metadata.annotations or {}
        original = annotations.get(ANN_ORIGINAL)
        if original is not None:
            carrier = str(getattr(container_status(pod, container), "container_id", None) or "")
            if pod.status is not None and pod.status.pod_ip:
                self._board.forget(pod.status.pod_ip)
            await _patch(api, pod, {"metadata": {"annotations": {ANN_ORIGINAL: None, ANN_REPLACED: None,
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
