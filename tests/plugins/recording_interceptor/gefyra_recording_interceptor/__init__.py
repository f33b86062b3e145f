"""The interceptor ``recording``: gefyra's nginx interceptor, with every call recorded as one JSON
line in $GEFYRA_RECORDING_FILE (default /tmp/gefyra-recording.jsonl) of the process that made it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from kubernetes_asyncio import client

from gefyra import Settings, hookimpl
from gefyra.core.interceptor import Forward, Interceptor
from gefyra.plugins.interceptor_nginx import NginxInterceptor


def _record(method: str, **fields: Any) -> None:
    path = os.environ.get("GEFYRA_RECORDING_FILE", "/tmp/gefyra-recording.jsonl")
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"method": method, **fields}) + "\n")


class RecordingInterceptor(NginxInterceptor):
    name = "recording"

    def validate(self, container: client.V1Container, ports: Sequence[int]) -> str | None:
        _record("validate", container=container.name, ports=list(ports))
        return super().validate(container, ports)

    async def take_over(self, api: client.ApiClient, pod: client.V1Pod, container: str, bridge: str) -> None:
        _record("take_over", pod=pod.metadata.name, container=container, bridge=bridge)
        await super().take_over(api, pod, container, bridge)

    async def configure(self, api: client.ApiClient, pod: client.V1Pod, container: str,
                        template: client.V1Container, forwards: Sequence[Forward]) -> bool:
        done = await super().configure(api, pod, container, template, forwards)
        _record("configure", pod=pod.metadata.name, container=container, done=done)
        return done

    async def restore(self, api: client.ApiClient, pod: client.V1Pod, container: str) -> bool:
        _record("restore", pod=pod.metadata.name, container=container)
        return await super().restore(api, pod, container)


@hookimpl
def gefyra_interceptor(settings: Settings, name: str | None) -> Interceptor | None:
    return RecordingInterceptor(settings.image("carrier")) if name == "recording" else None
