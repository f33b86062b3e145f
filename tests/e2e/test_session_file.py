"""A session from one file: `up -f` makes two local containers (one built from a context here)
and three bridges (one global, two personal) on two workloads; editing one container's env and
applying again recreates only that container (its bridge follows it); a typo is one line with the
file, the line and the field, and nothing changes; `down -f` removes what the file made.

Tests run in order on the one module namespace."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import TEST_IMAGE, assert_equal, engine, eventually, kubectl, unique
from tests.e2e.gefyra_cli import caller_get, gefyra, ok, snapshot

pytestmark = pytest.mark.e2e

SESSION = """\
namespace: {ns}
containers:
  gfy-sess-a:
    build: ./context
    env: {{MESSAGE: {message}}}
  gfy-sess-b:
    image: {image}
    env: {{MESSAGE: B}}
bridges:
  - {{container: gfy-sess-b, target: deploy/other, ports: ["8080:8080"]}}
  - {{container: gfy-sess-a, target: deploy/web, ports: ["8080:8080"], match: {{header-exact: "x-dev:a"}}}}
  - {{container: gfy-sess-b, target: deploy/web, ports: ["8080:8080"], match: {{header-exact: "x-dev:b"}}}}
"""
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module")
def baseline() -> dict[str, list[str]]:
    gefyra("down")
    return snapshot()


@pytest.fixture(scope="module")
def ns(baseline: dict[str, list[str]]) -> Iterator[str]:
    name = unique("gfy-test-session")
    kubectl("create", "namespace", name)
    try:
        for workload in ("web", "other"):
            devcluster.apply(devcluster.http_workload(workload, name, replicas=1))
        devcluster.apply(devcluster.client_pod("caller", name))
        for workload in ("web", "other"):
            kubectl("-n", name, "rollout", "status", f"deploy/{workload}", "--timeout=90s")
        kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)
        print("\nsession measurements: " + json.dumps(MEASURED))


@pytest.fixture(scope="module")
def session(ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("session")
    (directory / "context").mkdir()
    (directory / "context" / "Dockerfile").write_text(f"FROM {TEST_IMAGE}\nLABEL dev.gefyra.test=built\n")
    path = directory / "gefyra.yaml"
    path.write_text(SESSION.format(ns=ns, message="A", image=TEST_IMAGE))
    yield path
    gefyra("down", "-f", str(path))


def _web(ns: str, developer: str) -> str:
    return caller_get(ns, f"x-dev: {developer}")[:len("hello from A2")]


def _other(ns: str) -> str:
    return kubectl("-n", ns, "exec", "caller", "--", "testserver", "get", "http://other/", "--timeout", "3s")


def _container_id(name: str) -> str:
    return engine("inspect", "-f", "{{.Id}}", name).stdout.strip()


def test_up_f_makes_the_containers_and_bridges(ns: str, session: Path) -> None:
    started = time.monotonic()
    made = ok("up", "-f", str(session))
    MEASURED["up -f: 2 containers (one built), 3 bridges (s)"] = round(time.monotonic() - started, 1)
    assert "session: " in made.stdout and made.stdout.count("bridge ") == 3, made.stdout
    assert engine("inspect", "-f", "{{index .Config.Labels \"dev.gefyra.test\"}}", "gfy-sess-a").stdout.strip() == "built"
    assert _other(ns).startswith("hello from B")
    assert _web(ns, "a").startswith("hello from A") and _web(ns, "b").startswith("hello from B")
    assert caller_get(ns).startswith("hello from web-")  # no header: the cluster


def test_applying_the_same_file_changes_nothing(session: Path) -> None:
    before = {n: _container_id(n) for n in ("gfy-sess-a", "gfy-sess-b")}
    assert ok("apply", "-f", str(session)).stdout.strip() == "session: nothing to change"
    assert {n: _container_id(n) for n in before} == before


def test_an_edited_env_recreates_only_that_container_and_its_bridge_follows(ns: str, session: Path) -> None:
    kept = _container_id("gfy-sess-b")
    session.write_text(SESSION.format(ns=ns, message="A2", image=TEST_IMAGE))
    started = time.monotonic()
    changed = ok("apply", "-f", str(session)).stdout
    MEASURED["apply after one env edit (s)"] = round(time.monotonic() - started, 1)
    assert "container gfy-sess-a" in changed and "gfy-sess-b" not in changed, changed
    assert _container_id("gfy-sess-b") == kept
    eventually(lambda: assert_equal(_web(ns, "a"), "hello from A2"), timeout=15)
    assert _web(ns, "b").startswith("hello from B") and _other(ns).startswith("hello from B")


def test_a_typo_is_one_line_with_file_line_and_field_and_changes_nothing(ns: str, session: Path) -> None:
    before = json.loads(ok("list", "-o", "json").stdout)
    bad = session.with_name("typo.yaml")
    bad.write_text(SESSION.format(ns=ns, message="A3", image=TEST_IMAGE).replace("    image:", "    imgae:"))
    refused = gefyra("apply", "-f", str(bad))
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert f"{bad}:7: containers.gfy-sess-b.imgae: unknown field" in lines[0], lines[0]
    assert json.loads(ok("list", "-o", "json").stdout) == before


def test_down_f_removes_what_the_file_made(ns: str, session: Path) -> None:
    removed = ok("down", "-f", str(session)).stdout
    assert "container gfy-sess-a" in removed and "container gfy-sess-b" in removed, removed
    listed = json.loads(ok("list", "-o", "json").stdout)
    assert listed["containers"] == [] and listed["bridges"] == [], listed
    eventually(lambda: assert_equal(caller_get(ns, "x-dev: a")[:14], "hello from web"), timeout=15)
    assert json.loads(ok("status", "-o", "json").stdout)["connected"]  # only the session went


def test_down_after_up_f_leaves_nothing(ns: str, session: Path, baseline: dict[str, list[str]]) -> None:
    ok("up", "-f", str(session))
    removed = ok("down").stdout
    assert "container gfy-sess-a" in removed and "records of session files" in removed, removed
    assert snapshot() == baseline
    sessions = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config", "gefyra", "sessions")
    assert not list(sessions.glob("*.json"))
