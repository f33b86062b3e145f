"""Cluster requests at once: results in order, the slowest bounds the wait, a failure is itself."""

from __future__ import annotations

import anyio
import pytest

from gefyra import errors
from gefyra.core.kube.at_once import at_once


def test_results_come_in_the_calls_order_and_the_calls_overlap() -> None:
    async def after(seconds: float, value: str) -> str:
        await anyio.sleep(seconds)
        return value

    async def main() -> tuple[list[str], float]:
        started = anyio.current_time()
        found = await at_once(lambda: after(0.2, "slow"), lambda: after(0.0, "fast"), lambda: after(0.1, "middle"))
        return found, anyio.current_time() - started

    found, took = anyio.run(main)
    assert found == ["slow", "fast", "middle"]
    assert took < 0.3  # one after the other: 0.3 s


def test_the_first_failure_is_raised_as_itself_and_cancels_the_others() -> None:
    cancelled: list[bool] = []

    async def slow() -> None:
        try:
            await anyio.sleep(5)
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async def fails() -> None:
        raise errors.NotFoundError("no such thing")

    with pytest.raises(errors.NotFoundError, match="no such thing"):
        anyio.run(lambda: at_once(slow, fails))
    assert cancelled == [True]
