"""Steps and plans: the unit of work of every gefyra operation.

A step is idempotent and has three parts: ``verify`` (is it already in place?), ``apply`` and
``undo``. :func:`run_plan` runs steps in order, skips those that verify as done, and when one
fails (or the operation is cancelled) undoes, in reverse and shielded from cancellation, the
steps that *this* run applied, so that an error never leaves half a setup behind.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Generic, TypeVar

import anyio
import structlog

from gefyra.core.bus import Event, EventBus, EventKind

log = structlog.get_logger(__name__)

C = TypeVar("C")


class Step(abc.ABC, Generic[C]):
    """One idempotent piece of an operation, working on a shared context object ``C``."""

    #: Short machine name, used in events and logs.
    name: str = "step"
    #: What the user sees while the step runs.
    title: str = ""

    async def verify(self, ctx: C) -> bool:
        """True if the step's effect is already in place (then ``apply`` is skipped)."""
        return False

    @abc.abstractmethod
    async def apply(self, ctx: C) -> None:
        """Brings the step's effect about."""

    async def undo(self, ctx: C) -> None:
        """Removes what ``apply`` brought about. Must tolerate a half-applied state."""


async def run_plan(steps: Sequence[Step[C]], ctx: C, bus: EventBus) -> None:
    """Runs ``steps`` in order; on failure or cancellation undoes the applied ones in reverse."""
    applied: list[Step[C]] = []
    try:
        for step in steps:
            if await step.verify(ctx):
                await bus.publish(Event(EventKind.STEP_SKIPPED, step.name, step.title))
                continue
            await bus.publish(Event(EventKind.STEP_STARTED, step.name, step.title))
            applied.append(step)  # undo must also run for a step that failed half-way
            await step.apply(ctx)
            await bus.publish(Event(EventKind.STEP_DONE, step.name, step.title))
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            failed = applied[-1].name if applied else "?"
            await bus.publish(Event(EventKind.STEP_FAILED, failed, str(exc)))
            await undo_steps(applied, ctx, bus)
        raise


async def undo_steps(steps: Sequence[Step[C]], ctx: C, bus: EventBus) -> None:
    """Undoes ``steps`` in reverse order; an undo that fails is logged and the rest still run."""
    for step in reversed(steps):
        try:
            await step.undo(ctx)
        except Exception as exc:  # noqa: BLE001 - keep undoing the rest
            log.warning("undo failed", step=step.name, error=str(exc))
            continue
        await bus.publish(Event(EventKind.STEP_UNDONE, step.name, step.title))
