"""Choosing the container runtime: built-in Docker and Podman, auto-detection, third-party plugins."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import gefyra.plugins.docker as docker_plugin
from gefyra import hookimpl
from gefyra.core.model.settings import Settings
from gefyra.plugins.docker import DockerRuntime
from gefyra.plugins.podman import PodmanRuntime
from tests.unit.helpers import orchestrator_of


@pytest.fixture
def podman_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A listening unix socket where Podman's would be, and no Docker socket."""
    path = tmp_path / "podman.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    monkeypatch.setenv("GEFYRA_PODMAN_SOCKET", str(path))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker_plugin, "DOCKER_SOCKET", tmp_path / "no-docker.sock")
    yield path
    server.close()


def test_podman_is_chosen_by_name() -> None:
    assert isinstance(orchestrator_of(Settings(runtime="podman")).runtime(), PodmanRuntime)
    assert type(orchestrator_of(Settings(runtime="docker")).runtime()) is DockerRuntime


def test_podman_is_detected_when_only_its_socket_exists(podman_socket: Path) -> None:
    runtime = orchestrator_of(Settings(runtime=None)).runtime()
    assert isinstance(runtime, PodmanRuntime) and runtime._url == f"unix://{podman_socket}"


def test_docker_wins_when_both_are_there(podman_socket: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert type(orchestrator_of(Settings(runtime=None)).runtime()) is DockerRuntime


def test_third_party_runtime_plugin_is_found_through_the_entry_point_group(tmp_path: Path) -> None:
    package = tmp_path / "src"
    (package / "tiny_runtime").mkdir(parents=True)
    (package / "tiny_runtime" / "__init__.py").write_text(textwrap.dedent('''
        from gefyra import hookimpl
        from gefyra.plugins.docker import DockerRuntime

        class TinyRuntime(DockerRuntime):
            name = "tiny"

        @hookimpl
        def gefyra_container_runtime(settings):
            return TinyRuntime() if settings.runtime == "tiny" else None
    '''))
    (package / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "tiny-runtime"
        version = "1.0"
        [project.entry-points.gefyra]
        tiny = "tiny_runtime"
    '''))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(package)], check=True)
    probe = "from tests.unit.helpers import orchestrator_of; from gefyra.core.model.settings import Settings; " \
            "print(orchestrator_of(Settings(runtime='tiny')).runtime().name)"
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "tiny"
    # Without the package, the name is unknown: one clear line.
    env.pop("PYTHONPATH")
    cli = subprocess.run([sys.executable, "-m", "gefyra", "--runtime", "tiny", "list"], capture_output=True,
                         text=True, env=env)
    assert cli.returncode == 2 and "no plugin provides the container runtime 'tiny'" in cli.stderr


def test_the_plugins_in_use_are_listed_with_where_they_came_from_and_their_hooks() -> None:
    class Embedded:
        @hookimpl
        def gefyra_dns(self, settings: Settings) -> None:
            return None

    listed = {p.name: p for p in orchestrator_of(plugins=[Embedded()], entry_points=False).plugins()}
    assert listed["gefyra.plugins.wireguard"].source == "built-in"
    assert listed["gefyra.plugins.wireguard"].hooks == ("gefyra_tunnel",)
    embedded = next(p for p in listed.values() if p.source == "embedder")
    assert embedded.hooks == ("gefyra_dns",) and embedded.distribution == ""


def test_hook_calls_are_traced_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import structlog
    from structlog.testing import capture_logs

    saved = structlog.get_config()
    structlog.reset_defaults()  # the CLI's tests configure a level that hides these (-v shows them)
    monkeypatch.setenv("GEFYRA_TRACE_PLUGINS", "1")
    orchestrator = orchestrator_of(entry_points=False)
    with capture_logs() as logs:
        orchestrator.tunnel()
    called = [e for e in logs if e["event"] == "hook called"]
    returned = [e for e in logs if e["event"] == "hook returned"]
    assert called and called[0]["hook"] == "gefyra_tunnel" and "gefyra.plugins.wireguard" in called[0]["plugins"]
    assert "WireGuardTunnel" in returned[0]["result"]
    monkeypatch.delenv("GEFYRA_TRACE_PLUGINS")
    with capture_logs() as quiet:
        orchestrator_of(entry_points=False).tunnel()
    assert not quiet
    structlog.configure(**saved)


def test_gefyra_plugins_lists_the_sample_third_party_plugin_beside_the_built_ins() -> None:
    """The sample plugin (tests/plugins/recording_interceptor) is pip-installed into the test
    environment by `make venv`, and found through its entry point."""
    import json

    result = subprocess.run([sys.executable, "-m", "gefyra", "plugins", "-o", "json"], capture_output=True, text=True,
                            check=True)
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert listed["recording"] == {"name": "recording", "source": "entry point",
                                   "distribution": "gefyra-recording-interceptor 1.0", "hooks": ["gefyra_interceptor"]}
    assert listed["gefyra.plugins.interceptor_nginx"]["source"] == "built-in"
    assert {"gefyra.plugins.docker", "gefyra.plugins.podman", "gefyra.plugins.wireguard",
            "gefyra.plugins.coredns"} <= set(listed)
