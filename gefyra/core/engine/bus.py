"""An async event bus: it connects the steps of a plan and tells everyone what they do.

Steps publish their progress and, when done, the facts they provide (``FACT`` events); the plan
runner listens for facts to start the steps that need them; the CLI, structlog and plugins listen
for the rest. Subscribers are awaited in order of subscription. A subscriber that raises is logged
and skipped: observers must never break the operation they observe.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class EventKind(enum.Enum):
    STEP_STARTED = "step.started"
    STEP_SKIPPED = "step.skipped"  # verify() found it already done
    STEP_DONE = "step.done"
    STEP_FAILED = "step.failed"
    STEP_UNDONE = "step.undone"
    PLAN_STARTED = "plan.started"  # ``message``: the number of steps
    PLAN_DONE = "plan.done"  # every step done or skipped
    PROGRESS = "progress"  # a long step tells how far it got
    FACT = "fact"  # a step provides a fact (``message`` names it) that other steps may need


@dataclasses.dataclass(frozen=True)
class Event:
    kind: EventKind
    step: str
    message: str = ""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


Subscriber = Callable[[Event], Awaitable[None] | None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Adds a subscriber (sync or async callable); returns a function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                result = subscriber(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - an observer must not break the operation
                log.exception("event subscriber failed", subscriber=repr(subscriber), event_kind=event.kind.value)
