"""Waiting for the cluster or the engine: every wait has a deadline and a clear error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from gefyra import errors

T = TypeVar("T")


async def wait_until(condition: Callable[[], Awaitable[T | None]], timeout: float, failure: errors.GefyraError,
                     interval: float = 0.3) -> T:
    """Polls ``condition`` until it returns something true, and returns that; raises ``failure``
    after ``timeout`` seconds."""
    try:
        with anyio.fail_after(timeout):
            while not (result := await condition()):
                await anyio.sleep(interval)
            return result
    except TimeoutError as exc:
        raise failure from exc
