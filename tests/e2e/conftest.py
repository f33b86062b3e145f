from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.e2e import devcluster


@pytest.fixture(scope="session", autouse=True)
def _cluster() -> None:
    devcluster.require_cluster()


@pytest.fixture
def make_namespace() -> Iterator[Callable[[str], str]]:
    """Creates uniquely named namespaces; deletes them after the test."""
    created: list[str] = []

    def make(prefix: str) -> str:
        name = devcluster.unique(prefix)
        devcluster.kubectl("create", "namespace", name)
        created.append(name)
        return name

    yield make
    for name in created:
        devcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module", params=["docker", "podman"])
def runtime(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a whole test module once per container runtime (GEFYRA_RUNTIME for gefyra and the
    tests' engine CLI)."""
    before = os.environ.get("GEFYRA_RUNTIME")
    os.environ["GEFYRA_RUNTIME"] = request.param
    yield request.param
    if before is None:
        os.environ.pop("GEFYRA_RUNTIME", None)
    else:
        os.environ["GEFYRA_RUNTIME"] = before
