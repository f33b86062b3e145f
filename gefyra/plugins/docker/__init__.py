"""Built-in plugin: the Docker container runtime (the default)."""

from __future__ import annotations

import os

from gefyra import hookimpl
from gefyra.core.config import Settings
from gefyra.core.runtime import ContainerRuntime
from gefyra.plugins.docker.runtime import DockerRuntime

__all__ = ["DockerRuntime"]


@hookimpl(trylast=True)
def gefyra_container_runtime(settings: Settings) -> ContainerRuntime | None:
    if settings.runtime not in (None, "docker"):
        return None
    return DockerRuntime(url=os.environ.get("DOCKER_HOST"))
