"""Built-in plugin: Podman, through its Docker-compatible API socket. Chosen with
``--runtime podman`` (or GEFYRA_RUNTIME=podman), or automatically when Podman's socket is there
and Docker's is not. Socket: GEFYRA_PODMAN_SOCKET if set, else the rootless, then the rootful default."""

from __future__ import annotations

import os
from pathlib import Path

from gefyra import hookimpl
from gefyra.core.model.settings import Settings
from gefyra.core.spi.runtime import ContainerRuntime
from gefyra.plugins.docker import docker_available
from gefyra.plugins.podman.runtime import PodmanRuntime

__all__ = ["PodmanRuntime", "podman_socket"]


def _candidates() -> list[Path]:
    if os.environ.get("GEFYRA_PODMAN_SOCKET"):  # named explicitly: nothing else is tried
        return [Path(os.environ["GEFYRA_PODMAN_SOCKET"].removeprefix("unix://"))]
    found = []
    if os.environ.get("XDG_RUNTIME_DIR"):
        found.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "podman" / "podman.sock")
    found.append(Path("/run/podman/podman.sock"))
    return found


def podman_socket() -> Path | None:
    """The first of Podman's socket locations that exists."""
    return next((p for p in _candidates() if p.is_socket()), None)


@hookimpl(trylast=True)
def gefyra_container_runtime(settings: Settings) -> ContainerRuntime | None:
    found = podman_socket()
    if settings.runtime == "podman" or (settings.runtime is None and found and not docker_available()):
        return PodmanRuntime(found or _candidates()[0])
    return None
