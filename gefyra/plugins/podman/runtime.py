"""Podman speaks the Docker Engine API (v1.41) on its service socket; what differs lives here."""

from __future__ import annotations

from pathlib import Path

from gefyra.plugins.docker.runtime import DockerRuntime


class PodmanRuntime(DockerRuntime):
    name = "podman"
    #: Podman takes the bridge driver's MTU option and shows it under its own name.
    _shown_mtu_option = "mtu"

    def __init__(self, socket: Path) -> None:
        super().__init__(url=f"unix://{socket}")

    def _is_conflict(self, status: int, message: str) -> bool:
        # Podman answers a name that is taken with 500 "... is already in use", not with 409.
        return status == 409 or "already in use" in message

    def _is_passing(self, status: int, message: str) -> bool:
        # Podman before 4.4 inspects a container that is exiting by reading its process's cgroup,
        # and answers 500 "read /proc/PID/cgroup: no such process" when the process has just gone
        # (containers/podman#16383); asked again a moment later, it shows the exited container.
        return status == 500 and "/proc/" in message and "no such process" in message

    async def image_exists(self, image: str) -> bool:
        # Images loaded from an archive are named localhost/NAME: accept either spelling (for a
        # name without a registry of its own).
        first = image.split("/", 1)[0]
        registry = "/" in image and ("." in first or ":" in first or first == "localhost")
        return await super().image_exists(image) or (not registry and await super().image_exists(f"localhost/{image}"))
