"""The orchestrator core: event bus, plans with rollback, hook dispatch, error messages."""

from __future__ import annotations

import inspect

import anyio
import pytest
from click.testing import CliRunner

from gefyra import errors, hookimpl
from gefyra.cli import main
from gefyra.core import hookspecs
from gefyra.core.bus import Event, EventBus, EventKind
from gefyra.core.config import Settings
from gefyra.core.orchestrator import Orchestrator
from gefyra.core.steps import Step, run_plan
from gefyra.plugins.docker import DockerRuntime

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder(Step[list[str]]):
    def __init__(self, name: str, *, done: bool = False, fails: bool = False) -> None:
        self.name, self.title, self.done, self.fails = name, name, done, fails

    async def verify(self, ctx: list[str]) -> bool:
        return self.done

    async def apply(self, ctx: list[str]) -> None:
        ctx.append(f"apply {self.name}")
        if self.fails:
            raise errors.ReadinessTimeoutError(f"{self.name} failed")

    async def undo(self, ctx: list[str]) -> None:
        ctx.append(f"undo {self.name}")


async def test_bus_delivers_to_sync_and_async_subscribers_and_survives_a_broken_one() -> None:
    bus, seen = EventBus(), []

    async def async_subscriber(event: Event) -> None:
        seen.append(("async", event.step))

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append(("sync", e.step)))
    unsubscribe = bus.subscribe(async_subscriber)
    await bus.publish(Event(EventKind.PROGRESS, "one"))
    unsubscribe()
    await bus.publish(Event(EventKind.PROGRESS, "two"))
    assert seen == [("sync", "one"), ("async", "one"), ("sync", "two")]


async def test_plan_skips_verified_steps_and_applies_the_rest_in_order() -> None:
    ctx: list[str] = []
    events: list[tuple[EventKind, str]] = []
    bus = EventBus()
    bus.subscribe(lambda e: events.append((e.kind, e.step)))
    await run_plan([Recorder("a", done=True), Recorder("b"), Recorder("c")], ctx, bus)
    assert ctx == ["apply b", "apply c"]
    assert (EventKind.STEP_SKIPPED, "a") in events and (EventKind.STEP_DONE, "c") in events


async def test_failing_step_undoes_what_this_run_applied_in_reverse() -> None:
    ctx: list[str] = []
    steps = [Recorder("pre", done=True), Recorder("a"), Recorder("b"), Recorder("c", fails=True), Recorder("d")]
    with pytest.raises(errors.ReadinessTimeoutError):
        await run_plan(steps, ctx, EventBus())
    # "pre" was already in place before the run: it stays; "c" failed half-way: it is undone too.
    assert ctx == ["apply a", "apply b", "apply c", "undo c", "undo b", "undo a"]


async def test_cancellation_undoes_applied_steps() -> None:
    ctx: list[str] = []

    class Hangs(Recorder):
        async def apply(self, ctx: list[str]) -> None:
            ctx.append("apply hangs")
            await anyio.sleep_forever()

    with anyio.move_on_after(0.1):
        await run_plan([Recorder("a"), Hangs("hangs")], ctx, EventBus())
    assert ctx == ["apply a", "apply hangs", "undo hangs", "undo a"]


def test_docker_is_the_default_runtime_and_a_plugin_can_replace_it() -> None:
    assert isinstance(Orchestrator(Settings(runtime=None)).runtime(), DockerRuntime)

    class Custom(DockerRuntime):
        name = "custom"

    class Plugin:
        @hookimpl
        def gefyra_container_runtime(self, settings: Settings) -> DockerRuntime | None:
            return Custom() if settings.runtime == "custom" else None

    assert Orchestrator(Settings(runtime="custom"), plugins=[Plugin()]).runtime().name == "custom"
    assert Orchestrator(Settings(runtime="docker"), plugins=[Plugin()]).runtime().name == "docker"
    with pytest.raises(errors.UsageError, match="no plugin provides the container runtime 'nope'"):
        Orchestrator(Settings(runtime="nope")).runtime()


def test_event_hook_sees_every_published_event() -> None:
    seen: list[str] = []

    class Listener:
        @hookimpl
        def gefyra_event(self, event: Event) -> None:
            seen.append(event.step)

    orchestrator = Orchestrator(plugins=[Listener()])
    anyio.run(orchestrator.bus.publish, Event(EventKind.PROGRESS, "x"))
    assert seen == ["x"]


def test_default_dns_config_sends_the_cluster_domain_to_the_cluster_dns() -> None:
    corefile = Orchestrator().dns_config("10.96.0.10", "cluster.local")
    assert "cluster.local:53 in-addr.arpa:53 {\n    forward . 10.96.0.10" in corefile
    assert "forward . /etc/resolv.conf" in corefile


def test_every_hookspec_is_documented() -> None:
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("gefyra_")]
    assert specs
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert "Called" in doc and ":param" in doc, f"{spec.__name__} lacks the documented shape"


def test_error_messages_are_one_line_with_what_to_do_and_distinct_exit_codes() -> None:
    err = errors.NotConnectedError("gefyra is not connected", "run `gefyra up` first")
    assert str(err) == "gefyra is not connected; run `gefyra up` first"
    codes = [cls.exit_code for cls in errors.GefyraError.__subclasses__()]
    assert len(codes) == len(set(codes)) and 1 not in codes


def test_cli_turns_a_gefyra_error_into_one_line_and_its_exit_code() -> None:
    result = CliRunner().invoke(main, ["--kubeconfig", "/nonexistent/kubeconfig", "status"])
    assert result.exit_code == errors.ConfigError.exit_code
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output


def test_cli_rejects_malformed_flags() -> None:
    result = CliRunner().invoke(main, ["run", "-i", "img", "-N", "x", "-p", "notaport"])
    assert result.exit_code == 2 and "HOSTPORT:CONTAINERPORT" in result.output
