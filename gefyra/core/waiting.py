"""Waiting for the cluster or the engine: every wait has a deadline and a clear error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from gefyra import errors


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float, failure: errors.GefyraError,
                     interval: float = 0.3) -> None:
    """Polls ``condition`` until it is true; raises ``failure`` after ``timeout`` seconds."""
    try:
        with anyio.fail_after(timeout):
            while not await condition():
                await anyio.sleep(interval)
    except TimeoutError as exc:
        raise failure from exc
