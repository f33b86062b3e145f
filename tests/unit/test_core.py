"""The orchestrator core: event bus, plans with rollback, hook dispatch, error messages."""

from __future__ import annotations

import inspect
from typing import Any

import aiohttp
import anyio
import pytest
from click.testing import CliRunner
from kubernetes_asyncio.client.exceptions import ApiException

from gefyra import errors, hookimpl
from gefyra.cli import main
from gefyra.core.engine import hookspecs
from gefyra.core.engine.bus import Event, EventBus, EventKind
from gefyra.core.engine.steps import PlanError, Step, StepState, check_plan, run_plan
from gefyra.core.kube.cluster import transient
from gefyra.core.model.settings import Settings
from gefyra.plugins.docker import DockerRuntime
from tests.unit.helpers import orchestrator_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder(Step[list[str]]):
    def __init__(self, name: str, *, needs: str = "", done: bool = False, fails: bool = False) -> None:
        self.name, self.title, self.done, self.fails = name, name, done, fails
        self.needs = frozenset(needs.split())
        self.provides = frozenset({name})

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


async def test_steps_start_when_the_facts_they_need_are_published_and_skipped_ones_still_provide() -> None:
    ctx: list[str] = []
    events: list[tuple[EventKind, str, str]] = []
    bus = EventBus()
    bus.subscribe(lambda e: events.append((e.kind, e.step, e.message)))
    # Listed in reverse: only the facts on the bus order them.
    result = await run_plan([Recorder("c", needs="b"), Recorder("b", needs="a"), Recorder("a", done=True)], ctx, bus)
    assert ctx == ["apply b", "apply c"]
    assert result.states == {"c": StepState.DONE, "b": StepState.DONE, "a": StepState.SKIPPED}
    facts = [e[2] for e in events if e[0] is EventKind.FACT]
    assert facts == ["a", "b", "c"]
    assert events.index((EventKind.FACT, "a", "a")) < events.index((EventKind.STEP_STARTED, "b", "b"))


async def test_independent_steps_run_concurrently() -> None:
    first, second = anyio.Event(), anyio.Event()

    class Meets(Recorder):
        def __init__(self, name: str, mine: anyio.Event, other: anyio.Event) -> None:
            super().__init__(name)
            self.mine, self.other = mine, other

        async def apply(self, ctx: list[str]) -> None:
            self.mine.set()
            await self.other.wait()  # never returns if the steps ran one after the other
            ctx.append(self.name)

    ctx: list[str] = []
    with anyio.fail_after(5):
        await run_plan([Meets("x", first, second), Meets("y", second, first), Recorder("z", needs="x y")], ctx,
                       EventBus())
    assert sorted(ctx[:2]) == ["x", "y"] and ctx[2] == "apply z"


async def test_failing_step_undoes_what_this_run_applied_newest_first() -> None:
    ctx: list[str] = []
    steps = [Recorder("pre", done=True), Recorder("a", needs="pre"), Recorder("b", needs="a"),
             Recorder("c", needs="b", fails=True), Recorder("d", needs="c")]
    with pytest.raises(errors.ReadinessTimeoutError, match="c failed"):
        await run_plan(steps, ctx, EventBus())
    # "pre" was already in place before the run: it stays; "c" failed half-way: it is undone too;
    # "d" never started.
    assert ctx == ["apply a", "apply b", "apply c", "undo c", "undo b", "undo a"]


async def test_cancellation_undoes_applied_steps() -> None:
    ctx: list[str] = []

    class Hangs(Recorder):
        async def apply(self, ctx: list[str]) -> None:
            ctx.append("apply hangs")
            await anyio.sleep_forever()

    with anyio.move_on_after(0.1):
        await run_plan([Recorder("a"), Hangs("hangs", needs="a")], ctx, EventBus())
    assert ctx == ["apply a", "apply hangs", "undo hangs", "undo a"]


async def test_two_plans_on_one_bus_do_not_take_each_others_facts() -> None:
    bus, first, second = EventBus(), [], []
    gate = anyio.Event()

    class Waits(Recorder):
        async def apply(self, ctx: list[str]) -> None:
            await gate.wait()
            await super().apply(ctx)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_plan, [Waits("a"), Recorder("b", needs="a")], first, bus)
        await anyio.sleep(0.05)
        # The same fact name, published by another plan, must not start "b" of the first.
        await run_plan([Recorder("a")], second, bus)
        await anyio.sleep(0.05)
        assert first == []
        gate.set()
    assert first == ["apply a", "apply b"] and second == ["apply a"]


async def test_a_plan_whose_steps_can_never_start_is_refused_before_anything_runs() -> None:
    ctx: list[str] = []
    with pytest.raises(PlanError, match="b needs .'nothing'."):
        await run_plan([Recorder("a"), Recorder("b", needs="nothing")], ctx, EventBus())
    with pytest.raises(PlanError, match="never start"):
        check_plan([Recorder("a", needs="b"), Recorder("b", needs="a")])
    with pytest.raises(PlanError, match="repeat"):
        check_plan([Recorder("a"), Recorder("a")])
    assert ctx == []


async def test_a_plugin_adds_a_step_to_an_operation_through_the_hook() -> None:
    class Plugin:
        @hookimpl
        def gefyra_plan_steps(self, operation: str, settings: Settings) -> list[Step[list[str]]] | None:
            return [Recorder("extra", needs="a")] if operation == "up" else None

    orchestrator = orchestrator_of(plugins=[Plugin()], entry_points=False)
    assert [s.name for s in orchestrator.plan("down", [Recorder("a")])] == ["a"]
    ctx: list[str] = []
    await orchestrator.run_plan("up", [Recorder("a")], ctx)
    assert ctx == ["apply a", "apply extra"]


def test_docker_is_the_default_runtime_and_a_plugin_can_replace_it() -> None:
    assert isinstance(orchestrator_of(Settings(runtime=None)).runtime(), DockerRuntime)

    class Custom(DockerRuntime):
        name = "custom"

    class Plugin:
        @hookimpl
        def gefyra_container_runtime(self, settings: Settings) -> DockerRuntime | None:
            return Custom() if settings.runtime == "custom" else None

    assert orchestrator_of(Settings(runtime="custom"), plugins=[Plugin()]).runtime().name == "custom"
    assert orchestrator_of(Settings(runtime="docker"), plugins=[Plugin()]).runtime().name == "docker"
    with pytest.raises(errors.UsageError, match="no plugin provides the container runtime 'nope'"):
        orchestrator_of(Settings(runtime="nope")).runtime()


def test_event_hook_sees_every_published_event() -> None:
    seen: list[str] = []

    class Listener:
        @hookimpl
        def gefyra_event(self, event: Event) -> None:
            seen.append(event.step)

    orchestrator = orchestrator_of(plugins=[Listener()])
    anyio.run(orchestrator.bus.publish, Event(EventKind.PROGRESS, "x"))
    assert seen == ["x"]


def test_default_dns_sends_the_cluster_domain_to_the_cluster_dns() -> None:
    setup = orchestrator_of().dns().setup("/etc/gefyra/dns", "10.96.0.10", "cluster.local")
    corefile = setup.files["Corefile"].decode()
    assert "cluster.local:53 in-addr.arpa:53 {\n    forward . 10.96.0.10" in corefile
    assert "forward . /etc/resolv.conf" in corefile
    assert setup.command == ("coredns", "-conf", "/etc/gefyra/dns/Corefile")
    with pytest.raises(errors.UsageError):
        orchestrator_of().dns().setup("/d", "10.96.0.10", "cluster.local\n}\nevil {")
    with pytest.raises(errors.UsageError):
        orchestrator_of().dns().setup("/d", "10.96.0.10; rm", "cluster.local")


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


def test_label_selector_keeps_the_whole_selector() -> None:
    from gefyra.core.model.workload import label_selector

    selector = {"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "env", "operator": "NotIn", "values": ["x"]},
        {"key": "team", "operator": "Exists"}, {"key": "old", "operator": "DoesNotExist"}]}
    assert label_selector(selector) == "app=web,tier in (a,b),env notin (x),team,!old"
    with pytest.raises(errors.UsageError):
        label_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]})


@pytest.mark.parametrize(("method", "failure", "again"), [
    ("GET", ApiException(status=503), True),
    ("PATCH", ApiException(status=500), True),
    ("DELETE", aiohttp.ServerDisconnectedError(), True),
    ("POST", ApiException(status=429), True),
    ("POST", ApiException(status=500), False),  # it may have been taken: a second create would conflict
    ("POST", aiohttp.ServerDisconnectedError(), False),
    ("GET", ApiException(status=404), False),
    ("PATCH", ApiException(status=422), False),
    ("GET", ApiException(status=403), False),
])
def test_only_failures_that_say_not_now_are_tried_again(method: str, failure: BaseException, again: bool) -> None:
    assert transient(method, failure) is again


def test_a_step_without_an_undo_is_never_reported_undone() -> None:
    class Removes(Step[dict[str, Any]]):
        name, title = "removes", "remove something"

        async def apply(self, ctx: dict[str, Any]) -> None:
            ctx["removed"] = True

    class Fails(Step[dict[str, Any]]):
        name, title, needs = "fails", "fail", frozenset({"x"})
        provides = frozenset()

        async def apply(self, ctx: dict[str, Any]) -> None:
            raise RuntimeError("no")

    first = Removes()
    first.provides = frozenset({"x"})
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await run_plan([first, Fails()], {}, bus)

    anyio.run(main)
    assert not [e for e in events if e.kind is EventKind.STEP_UNDONE]
    assert not first.undoable


async def test_the_operator_watches_only_where_bridges_have_their_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Watches of pods, Services and EndpointSlices per bridged namespace, opened and closed as the
    set changes (a small stand-in for the cluster: only which watches are open is looked at)."""
    import gefyra.operator as operator

    monkeypatch.setattr(operator, "INTERVAL", 0.01)
    open_now: set[str] = set()

    class _Cluster:
        async def watch(self, collection: str, **_: Any) -> Any:
            open_now.add(collection)
            try:
                await anyio.sleep_forever()
            finally:
                open_now.discard(collection)
            yield {}  # pragma: no cover - makes this an async generator

    namespaces = {"gefyra", "shop"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(operator._watch_namespaces, _Cluster(), lambda: namespaces, operator._Wakeup())

        def watched(*names: str) -> set[str]:
            return {f"/api/v1/namespaces/{n}/{p}" for n in names for p in ("pods", "services")} \
                | {f"/apis/discovery.k8s.io/v1/namespaces/{n}/endpointslices" for n in names}

        await anyio.sleep(0.1)
        assert open_now == watched("gefyra", "shop")
        namespaces = {"gefyra", "orders"}
        await anyio.sleep(0.1)
        assert open_now == watched("gefyra", "orders")
        tg.cancel_scope.cancel()


def test_the_operator_looks_at_bridges_when_something_changed_and_seldom_otherwise() -> None:
    import gefyra.operator as operator

    idle = operator.IDLE_BRIDGES_INTERVAL
    assert not operator._bridges_due(woken=False, busy=False, clients_changed=False, since=idle / 2)
    assert operator._bridges_due(woken=False, busy=False, clients_changed=False, since=idle)
    assert operator._bridges_due(woken=True, busy=False, clients_changed=False, since=0)
    assert operator._bridges_due(woken=False, busy=True, clients_changed=False, since=0)
    assert operator._bridges_due(woken=False, busy=False, clients_changed=True, since=0)


async def test_the_operators_wait_says_whether_a_change_ended_it() -> None:
    import gefyra.operator as operator

    wakeup = operator._Wakeup()
    assert not await wakeup.wait(0.01)
    wakeup.set()
    assert await wakeup.wait(5)
    assert not await wakeup.wait(0.01)


async def test_the_operator_says_what_it_has_cost_so_far() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from gefyra.operator import http

    application = http.app(http.Health(), lambda: [], lambda: {"api_requests": 7, "watch_events": 3})
    async with TestClient(TestServer(application)) as client:
        answer = await client.get("/stats")
        found = await answer.json()
    assert (found["api_requests"], found["watch_events"]) == (7, 3)
    assert found["resident_mib"] > 10 and found["peak_mib"] > 10 and found["cpu_seconds"] > 0


async def test_a_pod_that_asks_before_the_operator_knows_it_is_answered_when_a_round_offers_it_something(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A router's new pod asks as soon as it starts: the request is held and asked about again after
    each round, so that it is answered as soon as a round has made its configuration (not after a
    404 and the agent's retry pause); one that no round ever offers anything gets 404 in the end."""
    from aiohttp.test_utils import TestClient, TestServer

    from gefyra.core.spi.interceptor import HttpAnswer, HttpRequest
    from gefyra.operator import http

    known: set[str] = set()

    class _Interceptor:
        def http_paths(self) -> dict[str, Any]:
            async def config(request: HttpRequest) -> HttpAnswer:
                return HttpAnswer(200, b"{}") if request.query.get("pod") in known else HttpAnswer(404)
            return {"/carrier/v1/config": config}

    health = http.Health()
    application = http.app(health, lambda: [_Interceptor()])  # type: ignore[list-item]
    async with TestClient(TestServer(application)) as client:
        answers: list[tuple[int, float]] = []

        async def ask() -> None:
            answer = await client.get("/carrier/v1/config", params={"pod": "p1"})
            answers.append((answer.status, anyio.current_time()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await anyio.sleep(0.1)
            health.round_done()  # a round that made nothing for it: still held
            await anyio.sleep(0.1)
            assert answers == []
            known.add("p1")
            offered = anyio.current_time()
            health.round_done()
        assert answers[0][0] == 200 and answers[0][1] - offered < 0.1
        monkeypatch.setattr(http, "UNKNOWN_WAIT", 0.2)
        assert (await client.get("/carrier/v1/config", params={"pod": "p2"})).status == 404


async def test_a_known_carriers_long_poll_is_not_cut_by_the_wait_for_unknown_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A carrier that runs the current configuration is held until it changes (the board's long
    poll), longer than an unknown caller waits for a round: it gets the change, not a 404 (which
    cost it its agent's retry pause, and a change that came meanwhile waited that long)."""
    from aiohttp.test_utils import TestClient, TestServer

    from gefyra.core.spi.interceptor import HttpAnswer, HttpRequest
    from gefyra.operator import http

    monkeypatch.setattr(http, "UNKNOWN_WAIT", 0.2)
    changed = anyio.Event()

    class _Interceptor:
        def http_paths(self) -> dict[str, Any]:
            async def config(request: HttpRequest) -> HttpAnswer:
                await changed.wait()  # the long poll: held until the configuration changes
                return HttpAnswer(200, b'{"version": "2"}')
            return {"/carrier/v1/config": config}

    application = http.app(http.Health(), lambda: [_Interceptor()])  # type: ignore[list-item]
    async with TestClient(TestServer(application)) as client:
        async with anyio.create_task_group() as tg:
            answers: list[int] = []

            async def ask() -> None:
                answers.append((await client.get("/carrier/v1/config", params={"have": "1"})).status)

            tg.start_soon(ask)
            await anyio.sleep(0.5)  # past UNKNOWN_WAIT
            assert answers == []
            changed.set()
        assert answers == [200]


def test_the_operator_keeps_one_object_per_interceptor_however_bridges_name_it() -> None:
    """The CRD fills in "nginx" where a bridge names none; the operator asks for the default one by
    None: both are the same interceptor, with one board of what its pods run."""
    from gefyra.operator.bridges import Bridges

    bridges = Bridges(None, "gefyra", orchestrator_of(Settings()), None, "10.0.0.1", lambda: None)  # type: ignore[arg-type]
    assert bridges._interceptor(None) is bridges._interceptor("nginx")
    assert [i.name for i in bridges.interceptors()] == ["nginx"]
