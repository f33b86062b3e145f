"""The ``nginx`` interceptor: chooses the mode of each route and hands it to that mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from kubernetes_asyncio import client

from gefyra.core.kube.workloads import pod_spec_and_selector
from gefyra.core.model.routing import Interception, Match, Route, Target
from gefyra.core.spi.interceptor import EndpointAnswer, EndpointHandler, EndpointRequest, Interceptor, InvalidRoute
from gefyra.plugins.interceptor_nginx.board import ConfigBoard
from gefyra.plugins.interceptor_nginx.carrier import InPlace, fits
from gefyra.plugins.interceptor_nginx.router import Router

log = structlog.get_logger("gefyra.operator")

#: Where carrier's agent asks for its configuration (see images/carrier/).
CONFIG_PATH = "/carrier/v1/config"


class NginxInterceptor(Interceptor):
    name = "nginx"

    def __init__(self, image: str) -> None:
        self.image = image
        self.board = ConfigBoard()
        self.in_place = InPlace(image, self.board)
        self.router = Router(image, self.board)

    def endpoints(self) -> Mapping[str, EndpointHandler]:
        return {CONFIG_PATH: self._config_request}

    async def _config_request(self, request: EndpointRequest) -> EndpointAnswer:
        def configured() -> None:
            log.info("carrier configured", pod_ip=request.peer)
            self.notify()

        return await self.board.answer(request.peer, request.query.get("container", ""),
                                       request.query.get("have", ""), configured)

    async def held(self, api: client.ApiClient) -> list[Target]:
        return await self.router.held(api)  # in place, a bridge's pods are given back with the bridge

    def validate(self, container: client.V1Container, ports: Sequence[int], matches: Sequence[Match]) -> str | None:
        return None  # the router takes any container, in both modes; in place where it can

    @staticmethod
    def mode(container: client.V1Container, matches: Sequence[Match]) -> str:
        """"in place" for a global bridge of a container carrier can replace, else "router"."""
        return "in place" if not matches and fits(container) else "router"

    async def intercept(self, api: client.ApiClient, target: Target, routes: Sequence[Route]) -> Interception:
        in_place: list[Route] = []
        routed: list[Route] = []
        if routes:
            try:
                spec, _ = await pod_spec_and_selector(api, target.namespace, target.kind, target.name)
            except client.ApiException as exc:
                if exc.status == 404:
                    raise InvalidRoute(routes[0].bridge, f"{target} does not exist") from exc
                raise
            containers = {c.name: c for c in spec.containers}
            for route in routes:
                container = containers.get(route.container)
                if container is None:
                    raise InvalidRoute(route.bridge, f"{target.kind}/{target.name} has no container {route.container!r}")
                (in_place if self.mode(container, route.matches) == "in place" else routed).append(route)
        states, settled = await self.in_place.intercept(api, target, in_place)
        routed_states, routed_settled = await self.router.intercept(api, target, routed)
        return Interception(routes={**states, **routed_states}, settled=settled and routed_settled)
