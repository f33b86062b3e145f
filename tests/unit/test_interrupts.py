"""What the CLI says when an operation is interrupted: from the steps' events, never a guess."""

from __future__ import annotations

from gefyra.core.engine.bus import Event, EventKind
from gefyra.progress import Ledger


def _ledger(*events: tuple[EventKind, str]) -> Ledger:
    ledger = Ledger()
    for kind, step in events:
        ledger(Event(kind, step, f"title of {step}"))
    return ledger


def test_nothing_begun_is_nothing_changed() -> None:
    assert _ledger().interrupted("up") == "interrupted: `gefyra up` had changed nothing yet"


def test_an_undone_up_says_what_was_undone_and_that_nothing_is_left() -> None:
    ledger = _ledger((EventKind.STEP_STARTED, "a"), (EventKind.STEP_DONE, "a"), (EventKind.STEP_STARTED, "b"),
                     (EventKind.STEP_UNDONE, "b"), (EventKind.STEP_UNDONE, "a"))
    line = ledger.interrupted("up")
    assert "undone: title of b; title of a" in line and line.endswith("nothing of it is left") and "kept" not in line


def test_an_interrupted_down_says_what_it_did_and_how_to_finish() -> None:
    ledger = _ledger((EventKind.STEP_STARTED, "bridges"), (EventKind.STEP_DONE, "bridges"),
                     (EventKind.STEP_STARTED, "containers"))
    line = ledger.interrupted("down")
    assert "cut short: title of containers" in line and "done and kept: title of bridges" in line
    assert line.endswith("run `gefyra down` again to finish")


def test_an_interrupt_after_the_steps_were_done_says_they_stay() -> None:
    ledger = _ledger((EventKind.STEP_STARTED, "a"), (EventKind.STEP_DONE, "a"))
    assert ledger.interrupted("up") == "interrupted after `gefyra up` had done its steps (title of a): they stay"


def test_skipped_steps_count_as_nothing_done() -> None:
    assert _ledger((EventKind.STEP_SKIPPED, "a")).interrupted("up") == "interrupted: `gefyra up` had changed nothing yet"


def test_checks_and_waits_are_no_news() -> None:
    ledger = Ledger()
    ledger(Event(EventKind.STEP_STARTED, "target", "check the target", {"changes": False}))
    ledger(Event(EventKind.STEP_DONE, "target", "check the target"))
    ledger(Event(EventKind.STEP_STARTED, "bridge", "ask for the bridge", {"changes": True}))
    ledger(Event(EventKind.STEP_DONE, "bridge", "ask for the bridge"))
    ledger(Event(EventKind.STEP_STARTED, "ready", "wait until ready", {"changes": False}))
    ledger(Event(EventKind.STEP_UNDONE, "bridge", "ask for the bridge"))
    line = ledger.interrupted("bridge")
    assert "check the target" not in line and "wait until ready" not in line
    assert line.endswith("undone: ask for the bridge: nothing of it is left"), line


def test_an_interrupt_between_the_steps_of_a_plan_says_it_did_not_finish() -> None:
    ledger = _ledger((EventKind.PLAN_STARTED, ""), (EventKind.STEP_STARTED, "bridges"), (EventKind.STEP_DONE, "bridges"))
    line = ledger.interrupted("down")
    assert line.startswith("interrupted: `gefyra down` did not finish") and "done and kept: title of bridges" in line
    ledger(Event(EventKind.PLAN_DONE, "", "1"))
    assert ledger.interrupted("down").endswith("had done its steps (title of bridges): they stay")
