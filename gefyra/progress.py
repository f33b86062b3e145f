"""How the CLI shows an operation's steps on stderr (stdout stays for data, `-o json`):

- on a terminal, with rich: a live line per step with a spinner while it runs, its elapsed time,
  and what it waits for (the step's PROGRESS news); done, skipped, failed or undone at its end;
- elsewhere (a pipe, a log file, CI): one plain line per change, as before;
- with -q: nothing. rich leaves colours out where NO_COLOR is set.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from gefyra.core.engine.bus import Event, EventKind

Renderer = Callable[[Event], None]

_SYMBOLS = {EventKind.STEP_DONE: "✓", EventKind.STEP_SKIPPED: "=", EventKind.STEP_FAILED: "✗",
            EventKind.STEP_UNDONE: "↺", EventKind.STEP_STARTED: "…", EventKind.PROGRESS: " "}


def _line(event: Event) -> str | None:
    """The plain line of an event, or None when it is no news for the user."""
    if event.kind not in _SYMBOLS or event.kind is EventKind.STEP_FAILED:
        return None  # facts connect the steps; a failure is printed once, at the end, as the error
    text = event.message
    if event.kind is EventKind.STEP_SKIPPED:
        text += " (already done)"
    elif event.kind is EventKind.STEP_UNDONE:
        text = f"undone: {text}"
    return f"{_SYMBOLS[event.kind]} {text}"


def plain(event: Event) -> None:
    line = _line(event)
    if line is not None:
        click.echo(line, err=True)


class _Live:
    """One rich task per step, keyed by the step's name."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(finished_text=" "), TextColumn("{task.description}"),
                                 TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self.tasks: dict[str, Any] = {}
        self.titles: dict[str, str] = {}
        self.started: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        step = event.step
        if event.kind is EventKind.STEP_STARTED:
            self.titles[step], self.started[step] = event.message, time.monotonic()
            self.tasks[step] = self.progress.add_task(event.message, total=None)
        elif event.kind is EventKind.PROGRESS and step in self.tasks:
            self.progress.update(self.tasks[step], description=f"{self.titles[step]} [dim]({event.message})[/dim]")
        elif event.kind in (EventKind.STEP_DONE, EventKind.STEP_FAILED, EventKind.STEP_UNDONE) and step in self.tasks:
            mark = {EventKind.STEP_DONE: "[green]✓[/green]", EventKind.STEP_FAILED: "[red]✗[/red]",
                    EventKind.STEP_UNDONE: "[yellow]↺ undone:[/yellow]"}[event.kind]
            self.progress.update(self.tasks[step], description=f"{mark} {self.titles.get(step, event.message)}",
                                 total=1, completed=1)
            self.progress.stop_task(self.tasks[step])
        elif event.kind is EventKind.STEP_SKIPPED:
            task = self.progress.add_task(f"[dim]= {event.message} (already done)[/dim]", total=1, completed=1)
            self.progress.stop_task(task)


@contextlib.contextmanager
def renderer(quiet: bool) -> Iterator[Renderer | None]:
    """The renderer for this process's stderr (None with ``quiet``), live while the block runs."""
    if quiet:
        yield None
    elif not sys.stderr.isatty():
        yield plain
    else:
        live = _Live()
        with live.progress:
            yield live


class Ledger:
    """What an operation did, step by step, from its events: on an interrupt (Ctrl-C) the CLI says
    truthfully what was done, what was undone and what was left, instead of guessing."""

    def __init__(self) -> None:
        self.titles: dict[str, str] = {}
        self.done: list[str] = []
        self.undone: list[str] = []
        self.running: list[str] = []
        self.unfinished_plans = 0

    def __call__(self, event: Event) -> None:
        step = event.step
        if event.kind is EventKind.PLAN_STARTED:
            self.unfinished_plans += 1
        elif event.kind is EventKind.PLAN_DONE:
            self.unfinished_plans -= 1
        elif event.kind is EventKind.STEP_STARTED:
            if event.data.get("changes") is False:
                return  # a check or a wait: nothing of it to report
            self.titles[step] = event.message
            self.running.append(step)
        elif event.kind in (EventKind.STEP_DONE, EventKind.STEP_FAILED) and step in self.titles:
            if step in self.running:
                self.running.remove(step)
            if event.kind is EventKind.STEP_DONE:
                self.done.append(step)
        elif event.kind is EventKind.STEP_UNDONE:
            if step in self.running:
                self.running.remove(step)
            self.undone.append(step)

    def interrupted(self, command: str) -> str:
        """The line shown when ``command`` is interrupted."""
        kept = [self.titles[s] for s in self.done if s not in self.undone]
        undone = [self.titles[s] for s in self.undone]
        cut = [self.titles[s] for s in self.running]
        if not (kept or undone or cut):
            return f"interrupted: `gefyra {command}` had changed nothing yet"
        if kept and not (undone or cut or self.unfinished_plans):
            return f"interrupted after `gefyra {command}` had done its steps ({'; '.join(kept)}): they stay"
        parts = [f"interrupted: `gefyra {command}` did not finish"]
        if cut:
            parts.append(f"cut short: {'; '.join(cut)}")
        if undone:
            parts.append(f"undone: {'; '.join(undone)}")
        if kept:
            parts.append(f"done and kept: {'; '.join(kept)}")
        again = f"run `gefyra {command}` again to finish" + (" (or `gefyra down` to remove it all)"
                                                               if command not in ("down", "unbridge", "uninstall") else "")
        return ". ".join(parts) + f". {again}" if kept or cut else ". ".join(parts) + ": nothing of it is left"
