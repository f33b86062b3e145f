"""The interceptor ``recording``: gefyra's nginx interceptor, with every call recorded as one JSON
line in $GEFYRA_RECORDING_FILE (default /tmp/gefyra-recording.jsonl) of the process that made it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from gefyra import Settings, hookimpl
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.routing import Interception, Match, Route, Target
from gefyra.core.model.workload import Container
from gefyra.core.spi.interceptor import Interceptor
from gefyra.plugins.interceptor_nginx import NginxInterceptor


def _record(method: str, **fields: Any) -> None:
    path = os.environ.get("GEFYRA_RECORDING_FILE", "/tmp/gefyra-recording.jsonl")
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"method": method, **fields}) + "\n")


class RecordingInterceptor(NginxInterceptor):
    name = "recording"

    def validate(self, container: Container, ports: Sequence[int], matches: Sequence[Match],
                 in_place: bool = False) -> str | None:
        _record("validate", container=container.name, ports=list(ports), matches=[str(m) for m in matches],
                in_place=in_place)
        return super().validate(container, ports, matches, in_place)

    async def intercept(self, cluster: Cluster, target: Target, routes: Sequence[Route]) -> Interception:
        found = await super().intercept(cluster, target, routes)
        _record("intercept", target=str(target), routes=[r.bridge for r in routes], settled=found.settled,
                pods={name: list(state.pods) for name, state in found.routes.items()},
                ready={name: state.ready for name, state in found.routes.items()})
        return found


@hookimpl
def gefyra_interceptor(settings: Settings, name: str | None) -> Interceptor | None:
    return RecordingInterceptor(settings.image("carrier")) if name == "recording" else None
