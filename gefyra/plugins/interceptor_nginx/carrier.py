"""The in-place mode of global bridges (``--in-place``): the pod keeps its spec, IP and other
containers; only the bridged container's image is swapped for carrier's, which forwards the
bridged ports and answers the probes of the others. It takes every connection to the pod, its IP
included, but the container restarts (now and at unbridge), and carrier receives the container's
own command: a container that sets ``command``, or has exec probes, cannot be bridged in place
(:func:`unfit` says why).

What was replaced is kept per container in the pod's annotations
(``CONTAINER.bridged.gefyra.dev/...``), so that two bridges on two containers of one pod never
overwrite each other, and a pod is known as bridged by its annotations whatever carrier's tag.

Which container runs is told by container IDs, never by the image name in the pod's status: a node
that holds one image under two tags reports either tag (measured: spec ``gefyra/carrier:dev``,
status ``docker.io/gefyra/carrier:before``). The ID of the container that was replaced is kept while
carrier is on its way in, and carrier's own while the original is on its way back. A pod counts as
bridged only once carrier's agent in it has asked for its configuration and applied it."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Sequence
from typing import Any

import structlog

from gefyra import errors
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.kube.workloads import live_pods
from gefyra.core.model.routing import Forward, Route, RouteState, Target
from gefyra.core.model.workload import Container, Pod
from gefyra.plugins.interceptor_nginx.board import ConfigBoard

log = structlog.get_logger("gefyra.operator")

#: Annotation keys of a bridged container: ``{container}.bridged.gefyra.dev/{what}``.
_SUFFIX = ".bridged.gefyra.dev/"
BRIDGE, ORIGINAL, REPLACED, RESTORING = "bridge", "original-image", "replaced", "restoring-from"


def annotation(container: str, what: str) -> str:
    return f"{container}{_SUFFIX}{what}"


def bridged_containers(pod: Pod) -> dict[str, str]:
    """container -> the bridge whose carrier took its place (or is leaving it)."""
    found = {}
    for key, value in pod.annotations.items():
        if key.endswith(_SUFFIX + BRIDGE):
            found[key[: -len(_SUFFIX + BRIDGE)]] = value
    return found


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


def probe_ports(container: Container) -> dict[int, str]:
    """Port -> "http" or "tcp" for the container's httpGet and tcpSocket probes."""
    found: dict[int, str] = {}
    for probe in container.probes:
        port = container.port_number(probe.port)
        if probe.action in ("http", "tcp") and port is not None:
            found[port] = probe.action
    return found


def unfit(container: Container) -> str | None:
    """Why carrier cannot take this container's place in place, or None: the container must use its
    image's entrypoint (carrier would get its command), have no exec probe (carrier could not
    answer it), and may pull an image (the pull policy stays the container's: Never would find no
    carrier on a node without one)."""
    if container.command:
        return f"container {container.name} sets its command, which carrier would get: bridge it without --in-place"
    if any(p.action == "exec" for p in container.probes):
        return f"container {container.name} has an exec probe that carrier cannot answer: bridge it without --in-place"
    if container.pull_policy == "Never":
        return f"container {container.name} never pulls images, so carrier could not be pulled in its place"
    return None


def _running_id(pod: Pod, name: str) -> str:
    """The ID of the container ``name`` if it runs now, else ""."""
    state = pod.status(name)
    return state.container_id if state is not None and state.running else ""


async def _patch(cluster: Cluster, pod: Pod, body: dict[str, Any]) -> None:
    await cluster.patch(path("pods", pod.namespace, pod.name), body, strategic=True)


class InPlace:
    def __init__(self, image: str, board: ConfigBoard) -> None:
        self.image = image
        self.board = board

    @staticmethod
    def is_active(pod: Pod, container: str) -> bool:
        """True when a container runs that is not the one carrier replaced. (A pod taken over
        before its first container started may still run the original: only carrier's agent asking
        for its configuration proves carrier runs.)"""
        running = _running_id(pod, container)
        return bool(running) and pod.annotations.get(annotation(container, REPLACED), running) != running

    async def intercept(self, cluster: Cluster, target: Target, routes: Sequence[Route]
                        ) -> tuple[dict[str, RouteState], bool]:
        """Each live pod of ``target``: the routes' containers taken over and configured, every
        other container bridged before given back. Returns the routes' states and whether nothing
        is left of other routes."""
        wanted = {r.container: r for r in routes}
        try:
            pods = await live_pods(cluster, target.namespace, target.kind, target.name)
        except errors.NotFoundError:
            if routes:
                raise
            pods = []  # the workload is gone: nothing of it is left to give back
        forwarding: dict[str, list[str]] = {r.bridge: [] for r in routes}
        settled = True
        for pod in pods:
            if pod.ip:
                self.board.know_containers(pod.ip, {s.container_id: s.name for s in pod.statuses if s.container_id})
            for container, bridge in bridged_containers(pod).items():
                route = wanted.get(container)
                if route is None or route.bridge != bridge:
                    settled = await self._restore(cluster, pod, container) and settled
            for route in routes:
                if await self._take_over(cluster, pod, route):
                    forwarding[route.bridge].append(pod.name)
        serving = await _serving(cluster, target.namespace, [p for names in forwarding.values() for p in names])
        states = {}
        for route in routes:
            ready = bool(pods) and len(forwarding[route.bridge]) == len(pods) and serving
            stuck = [s.cannot_start for p in pods if (s := p.status(route.container)) is not None and s.cannot_start]
            states[route.bridge] = RouteState(
                ready=ready, pods=tuple(sorted(forwarding[route.bridge])), namespace=target.namespace,
                sources=tuple(sorted(p.ip for p in pods if p.ip)),
                mode="in place", message=f"{len(forwarding[route.bridge])} of {len(pods)} pods forward to the client",
                failure=f"carrier cannot start in the target's pods: {stuck[0]}" if stuck and not ready else "")
        return states, settled

    async def _take_over(self, cluster: Cluster, pod: Pod, route: Route) -> bool:
        """carrier in ``route.container``'s place, told where to forward; True once it forwards and
        is ready."""
        name = route.container
        current = pod.container(name)
        annotations = pod.annotations
        if current is None:
            return False
        if annotations.get(annotation(name, BRIDGE)) != route.bridge or annotation(name, ORIGINAL) not in annotations:
            if annotation(name, RESTORING) in annotations:
                return False  # another bridge's carrier is still leaving
            if current.image == self.image:
                log.warning("container runs carrier without gefyra's notes; left alone", pod=pod.name, container=name)
                return False
            state = pod.status(name)
            replaced = state.container_id if state is not None else ""
            await _patch(cluster, pod, {"metadata": {"annotations": {annotation(name, BRIDGE): route.bridge,
                                                                     annotation(name, ORIGINAL): current.image,
                                                                     annotation(name, REPLACED): replaced}},
                                        "spec": {"containers": [{"name": name, "image": self.image}]}})
            log.info("carrier swapped in", bridge=route.bridge, pod=pod.name, container=name)
            return False
        if current.image != self.image:  # carrier's image changed (an upgrade): the original stays noted
            await _patch(cluster, pod, {"spec": {"containers": [{"name": name, "image": self.image}]}})
            return False
        if not pod.ip:
            return False
        stream, http = carrier_config(route.forwards, probe_ports(current))
        version = hashlib.sha256((stream + http).encode()).hexdigest()[:16]
        # Wanted before carrier runs: its first request gets the configuration.
        self.board.want((pod.ip, name), version, json.dumps({"version": version, "stream": stream, "http": http}).encode())
        state = pod.status(name)
        return (self.is_active(pod, name) and self.board.applied((pod.ip, name)) == version
                and state is not None and state.ready)

    async def _restore(self, cluster: Cluster, pod: Pod, name: str) -> bool:
        """Gives ``pod`` back exactly the container that carrier replaced; True once it runs again,
        is ready, and nothing of carrier is left on the pod."""
        annotations = pod.annotations
        original = annotations.get(annotation(name, ORIGINAL))
        state = pod.status(name)
        if original is not None:
            carrier = state.container_id if state is not None else ""
            if pod.ip:
                self.board.forget((pod.ip, name))
            await _patch(cluster, pod, {"metadata": {"annotations": {annotation(name, ORIGINAL): None,
                                                                     annotation(name, REPLACED): None,
                                                                     annotation(name, RESTORING): carrier}},
                                        "spec": {"containers": [{"name": name, "image": original}]}})
            log.info("original image restored", pod=pod.name, container=name)
            return False
        running = _running_id(pod, name)
        if annotation(name, RESTORING) in annotations and (
                not running or running == annotations[annotation(name, RESTORING)] or state is None or not state.ready):
            return False  # carrier still runs, or the original is not ready yet
        await _patch(cluster, pod, {"metadata": {"annotations": {annotation(name, BRIDGE): None,
                                                                 annotation(name, RESTORING): None}}})
        return await _serving(cluster, pod.namespace, [pod.name])


async def _serving(cluster: Cluster, namespace: str, pod_names: list[str]) -> bool:
    """True once every Service endpoint of these pods is ready (a restarted container drops out
    of its Services until then)."""
    if not pod_names:
        return True
    for endpoint_slice in await cluster.objects(path("endpointslices", namespace)):
        for endpoint in endpoint_slice.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            if ref.get("name") in pod_names and not (endpoint.get("conditions") or {}).get("ready"):
                return False
    return True
