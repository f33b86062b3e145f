"""Steps and plans: the unit of work of every gefyra operation.

A step is idempotent and has three parts: ``verify`` (is it already in place?), ``apply`` and
``undo``. It declares the facts it ``needs`` and the facts it ``provides``. :func:`run_plan` starts
every step of a plan at once; each waits until the facts it needs have been published on the bus,
then verifies or applies, then publishes what it provides, so steps that do not depend on each
other run concurrently. When one fails (or the operation is cancelled), the others are cancelled
and the steps that *this* run applied are undone, newest first and shielded from cancellation, so
that an error never leaves half a setup behind.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import uuid
from collections.abc import Sequence
from typing import Generic, TypeVar

import anyio
import structlog

from gefyra.core.engine.bus import Event, EventBus, EventKind

log = structlog.get_logger(__name__)

C = TypeVar("C")


class StepState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"  # verify() found it already in place
    FAILED = "failed"
    UNDONE = "undone"


class Step(abc.ABC, Generic[C]):
    """One idempotent piece of an operation, working on a shared context object ``C``."""

    #: Short machine name, used in events and logs; unique within a plan.
    name: str = "step"
    #: What the user sees while the step runs.
    title: str = ""
    #: Facts that must have been published before the step starts.
    needs: frozenset[str] = frozenset()
    #: Facts the step publishes once it is done (or found done).
    provides: frozenset[str] = frozenset()
    #: False for a step that only checks or waits: it leaves nothing behind to report or undo.
    changes: bool = True

    async def verify(self, ctx: C) -> bool:
        """True if the step's effect is already in place (then ``apply`` is skipped)."""
        return False

    @abc.abstractmethod
    async def apply(self, ctx: C) -> None:
        """Brings the step's effect about."""

    async def undo(self, ctx: C) -> None:
        """Removes what ``apply`` brought about. Must tolerate a half-applied state. A step that
        does not override it cannot be undone (a removal, a check): it is never reported undone."""

    @property
    def undoable(self) -> bool:
        return type(self).undo is not Step.undo


class PlanError(ValueError):
    """A plan whose steps can never all start (a need nobody provides, a cycle, a name twice)."""


@dataclasses.dataclass
class PlanResult:
    """The state each step of a finished plan ended in, by step name, in plan order."""

    states: dict[str, StepState]


def check_plan(steps: Sequence[Step[C]]) -> None:
    """Raises PlanError unless every step can start: each need is provided by an earlier-startable
    step."""
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise PlanError(f"step names repeat in the plan: {names}")
    known: set[str] = set()
    pending = list(steps)
    while pending:
        startable = [s for s in pending if s.needs <= known]
        if not startable:
            missing = {f"{s.name} needs {sorted(s.needs - known)}" for s in pending}
            raise PlanError(f"steps that can never start: {'; '.join(sorted(missing))}")
        for step in startable:
            known |= step.provides
            pending.remove(step)


async def run_plan(steps: Sequence[Step[C]], ctx: C, bus: EventBus) -> PlanResult:
    """Runs ``steps`` as their needs allow; on failure or cancellation undoes the applied ones.
    Raises the first step's error after the undo."""
    check_plan(steps)
    plan = {"plan": uuid.uuid4().hex}  # facts count only within their plan: plans may share a bus
    states = {s.name: StepState.PENDING for s in steps}
    published: dict[str, anyio.Event] = {need: anyio.Event() for s in steps for need in s.needs}

    def on_fact(event: Event) -> None:
        if event.kind is EventKind.FACT and event.data.get("plan") == plan["plan"] and event.message in published:
            published[event.message].set()

    applied: list[Step[C]] = []  # in the order their apply began
    failure: list[tuple[Step[C], Exception]] = []

    async def run_one(step: Step[C], scope: anyio.CancelScope) -> None:
        try:
            for need in sorted(step.needs):
                await published[need].wait()
            if await step.verify(ctx):
                states[step.name] = StepState.SKIPPED
                await bus.publish(Event(EventKind.STEP_SKIPPED, step.name, step.title))
            else:
                states[step.name] = StepState.RUNNING
                applied.append(step)  # undo must also run for a step that failed half-way
                await bus.publish(Event(EventKind.STEP_STARTED, step.name, step.title, {"changes": step.changes}))
                await step.apply(ctx)
                states[step.name] = StepState.DONE
                await bus.publish(Event(EventKind.STEP_DONE, step.name, step.title))
            for fact in sorted(step.provides):
                await bus.publish(Event(EventKind.FACT, step.name, fact, plan))
        except Exception as exc:  # noqa: BLE001 - the first failure stops the plan; raised after the undo
            states[step.name] = StepState.FAILED
            failure.append((step, exc))
            scope.cancel()

    unsubscribe = bus.subscribe(on_fact)
    await bus.publish(Event(EventKind.PLAN_STARTED, "", str(len(steps)), plan))
    try:
        async with anyio.create_task_group() as tg:
            for step in steps:
                tg.start_soon(run_one, step, tg.cancel_scope)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _undo(applied, ctx, bus, states)
        raise
    finally:
        unsubscribe()
    if failure:
        step, exc = failure[0]
        with anyio.CancelScope(shield=True):
            await bus.publish(Event(EventKind.STEP_FAILED, step.name, str(exc)))
            await _undo(applied, ctx, bus, states)
        raise exc
    await bus.publish(Event(EventKind.PLAN_DONE, "", str(len(steps)), plan))
    return PlanResult(states)


async def _undo(steps: Sequence[Step[C]], ctx: C, bus: EventBus, states: dict[str, StepState]) -> None:
    """Undoes ``steps`` newest first; an undo that fails is logged and the rest still run. Steps
    that cannot be undone stay as they are (and say nothing)."""
    for step in reversed([s for s in steps if s.undoable]):
        try:
            await step.undo(ctx)
        except Exception as exc:  # noqa: BLE001 - keep undoing the rest
            log.warning("undo failed", step=step.name, error=str(exc))
            continue
        states[step.name] = StepState.UNDONE
        await bus.publish(Event(EventKind.STEP_UNDONE, step.name, step.title))
