"""Several requests to the cluster at once: a round that needs five independent reads waits for
the slowest, not for the sum (each is a round trip to the API server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio


async def at_once(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """The results of ``calls``, run concurrently, in their order. The first failure cancels the
    others and is raised as itself (not in an exception group), as if they had run one by one."""
    results: list[Any] = [None] * len(calls)

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await call()

    try:
        async with anyio.create_task_group() as group:
            for index, call in enumerate(calls):
                group.start_soon(run, index, call)
    except BaseExceptionGroup as failures:
        raise _first(failures) from None
    return results


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    found = group.exceptions[0]
    return _first(found) if isinstance(found, BaseExceptionGroup) else found
