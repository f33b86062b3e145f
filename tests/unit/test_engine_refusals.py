"""A refusal of the engine that passes by itself is asked again; others are one gefyra error at once.
Podman before 4.4 refuses to show a container whose process is just exiting (500 "read
/proc/PID/cgroup: no such process", containers/podman#16383)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiodocker
import anyio
import pytest

from gefyra import errors
from gefyra.plugins.docker.runtime import DockerRuntime
from gefyra.plugins.podman.runtime import PodmanRuntime

_EXITING = "read /proc/12848/cgroup: no such process"  # as aiodocker raises it: DockerError(status, message)


class _Containers:
    """Answers `get` with the given refusals first, then with a container."""

    def __init__(self, refusals: list[tuple[int, str]]) -> None:
        self.refusals = refusals
        self.asked = 0

    async def get(self, name: str) -> Any:
        self.asked += 1
        if self.refusals:
            raise aiodocker.DockerError(*self.refusals.pop(0))
        return {"name": name}


def _runtime(runtime: DockerRuntime, refusals: list[tuple[int, str]]) -> _Containers:
    containers = _Containers(refusals)
    runtime._docker = type("Engine", (), {"containers": containers})()  # type: ignore[assignment]
    return containers


def test_podman_is_asked_again_while_a_container_is_exiting() -> None:
    runtime = PodmanRuntime(Path("/nonexistent.sock"))
    containers = _runtime(runtime, [(500, _EXITING), (500, _EXITING)])
    assert anyio.run(runtime._container, "helper") == {"name": "helper"}
    assert containers.asked == 3


def test_a_refusal_that_stays_ends_the_asking() -> None:
    runtime = PodmanRuntime(Path("/nonexistent.sock"))
    containers = _runtime(runtime, [(500, _EXITING)] * 10)
    with pytest.raises(errors.GefyraError, match="podman refused: read /proc/12848/cgroup"):
        anyio.run(runtime._container, "helper")
    assert containers.asked == 4  # the first asking and one after each pause


@pytest.mark.parametrize(("runtime", "status", "error"), [
    (DockerRuntime(), 500, errors.GefyraError),  # Docker has no such passing refusal
    (PodmanRuntime(Path("/nonexistent.sock")), 404, errors.NotFoundError),
])
def test_other_refusals_are_not_asked_again(runtime: DockerRuntime, status: int, error: type[Exception]) -> None:
    containers = _runtime(runtime, [(status, _EXITING)])
    with pytest.raises(error):
        anyio.run(runtime._container, "helper")
    assert containers.asked == 1
