"""Built-in plugin: the Docker container runtime (the default, and the fallback of auto-detection)."""

from __future__ import annotations

import os
from pathlib import Path

from gefyra import hookimpl
from gefyra.core.model.settings import Settings
from gefyra.core.spi.runtime import ContainerRuntime
from gefyra.plugins.docker.runtime import DockerRuntime

__all__ = ["DockerRuntime", "docker_available"]

DOCKER_SOCKET = Path("/var/run/docker.sock")


def docker_available() -> bool:
    """True if Docker is configured (DOCKER_HOST) or its default socket exists."""
    return bool(os.environ.get("DOCKER_HOST")) or DOCKER_SOCKET.is_socket()


@hookimpl(trylast=True)
def gefyra_container_runtime(settings: Settings) -> ContainerRuntime | None:
    if settings.runtime in (None, "docker"):
        return DockerRuntime(url=os.environ.get("DOCKER_HOST"))
    return None
