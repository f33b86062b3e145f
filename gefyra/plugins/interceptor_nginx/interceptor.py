"""The ``nginx`` interceptor: chooses the mode of each route and hands it to that mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from gefyra import errors
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.workloads import read_workload
from gefyra.core.model.routing import Interception, Match, Route, Target
from gefyra.core.model.workload import Container
from gefyra.core.spi.interceptor import HttpAnswer, HttpHandler, HttpRequest, Interceptor, InvalidRoute
from gefyra.plugins.interceptor_nginx.board import ConfigBoard
from gefyra.plugins.interceptor_nginx.carrier import InPlace, unfit
from gefyra.plugins.interceptor_nginx.router import Router

log = structlog.get_logger("gefyra.operator")

#: Where carrier's agent asks for its configuration (see images/carrier/).
CONFIG_PATH = "/carrier/v1/config"


class NginxInterceptor(Interceptor):
    """Global bridges in place where carrier can take the container's place (:mod:`.carrier`),
    everything else through a router in front of the workload's Services (:mod:`.router`); both
    get their nginx configuration from the board (:mod:`.board`), served at CONFIG_PATH."""

    name = "nginx"

    def __init__(self, image: str) -> None:
        self.image = image
        self.board = ConfigBoard()
        self.in_place = InPlace(image, self.board)
        self.router = Router(image, self.board)

    def images(self) -> Sequence[str]:
        return (self.image,)

    def http_paths(self) -> Mapping[str, HttpHandler]:
        return {CONFIG_PATH: self._config_request}

    async def _config_request(self, request: HttpRequest) -> HttpAnswer:
        if request.token and not self.board.knows(request.peer) and await self.router.identify(request.peer,
                                                                                                 request.token):
            self.notify()  # the next round offers the pod its configuration

        def configured() -> None:
            log.info("carrier configured", pod_ip=request.peer)
            self.notify()

        return await self.board.answer(request.peer, request.query.get("container", ""),
                                       request.query.get("have", ""), configured, request.query.get("key", ""))

    async def held(self, cluster: Cluster) -> list[Target]:
        return await self.router.held(cluster)  # in place, a bridge's pods are given back with the bridge

    async def prepare(self, cluster: Cluster, target: Target, in_place: bool = False) -> None:
        """The router's pods start while the client steers its end (in place, nothing starts early)."""
        if not in_place:
            await self.router.prepare(cluster, target)

    def validate(self, container: Container, ports: Sequence[int], matches: Sequence[Match],
                 in_place: bool = False) -> str | None:
        """The router takes any container; in place only a global bridge of one carrier can replace."""
        if in_place and matches:
            return "a personal bridge cannot be in place"
        return unfit(container) if in_place else None

    @staticmethod
    def mode(route: Route) -> str:
        """"in place" where the route asks for it, else "router" (nothing restarts)."""
        return "in place" if route.in_place else "router"

    async def intercept(self, cluster: Cluster, target: Target, routes: Sequence[Route]) -> Interception:
        in_place: list[Route] = []
        routed: list[Route] = []
        if routes:
            try:
                workload = await read_workload(cluster, target.namespace, target.kind, target.name)
            except errors.NotFoundError as exc:
                raise InvalidRoute(routes[0].bridge, f"{target} does not exist") from exc
            for route in routes:
                container = workload.container(route.container)
                if container is None:
                    raise InvalidRoute(route.bridge, f"{target.kind}/{target.name} has no container {route.container!r}")
                if route.in_place and (reason := unfit(container)):
                    raise InvalidRoute(route.bridge, reason)
                (in_place if self.mode(route) == "in place" else routed).append(route)
        states, settled = await self.in_place.intercept(cluster, target, in_place)
        routed_states, routed_settled = await self.router.intercept(cluster, target, routed)
        return Interception(routes={**states, **routed_states}, settled=settled and routed_settled)
