from __future__ import annotations

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
