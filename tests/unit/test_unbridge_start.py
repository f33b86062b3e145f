"""What an unbridge does before its DELETE: the bridges as listed are deleted without being read
again, the cluster and the engine are connected at the same time (errors as before), the engine's
connection is one request, and kubernetes_asyncio's api_client comes without dateutil's parser."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any
from unittest.mock import AsyncMock

import anyio
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from gefyra import errors
from gefyra.client.session import Gefyra
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.settings import Settings
from gefyra.plugins.docker.runtime import DockerRuntime

BRIDGES = "/apis/gefyra.dev/v1alpha1/namespaces/gefyra/gefyrabridges"


def _bridge(name: str, client: str, proxy_port: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "finalizers": ["gefyra.dev/bridge"]},
            "spec": {"client": client, "localContainer": f"local-{name}",
                     "target": {"namespace": "ns", "kind": "deployment", "name": "web", "container": "server"},
                     "ports": [{"remote": 8080, "local": 8080}]},
            "status": {"proxyPorts": {"8080": proxy_port}}}


class _Cluster(Cluster):
    """The API as far as an unbridge needs it: the bridges, a ready operator; a DELETE takes the
    bridge away at once (the operator's part done). Every request is written down."""

    def __init__(self, settings: Settings, *bridges: dict[str, Any]) -> None:
        super().__init__(settings)
        self.bridges = {b["metadata"]["name"]: b for b in bridges}
        self.calls: list[str] = []

    async def _once(self, method: str, path: str, body: Any, query: list[tuple[str, str]], content_type: str,
                    accept: str) -> Any:
        self.calls.append(f"{method} {path.removeprefix(BRIDGES)}")
        if path == BRIDGES:
            return {"items": list(self.bridges.values())}
        if path.startswith(BRIDGES + "/"):
            name = path.rpartition("/")[2]
            if name not in self.bridges:
                raise ApiException(status=404, reason="Not Found")
            return self.bridges.pop(name) if method == "DELETE" else self.bridges[name]
        if "/deployments/" in path:
            return {"metadata": {}, "status": {"availableReplicas": 1}}
        raise AssertionError(f"unexpected request {method} {path}")


def _session(cluster: _Cluster, settings: Settings) -> tuple[Gefyra, AsyncMock]:
    g = Gefyra(settings, entry_points=False)
    runtime = AsyncMock()
    runtime.exec.return_value = (0, "")
    g.orchestrator._cluster, g.orchestrator._engine = cluster, runtime  # connected already
    return g, runtime


def test_unbridge_deletes_the_bridges_it_listed_without_reading_them_again() -> None:
    settings = Settings(client_id="me")
    cluster = _Cluster(settings, _bridge("mine", "me", 20001), _bridge("theirs", "other", 20002))
    g, runtime = _session(cluster, settings)

    assert anyio.run(g.unbridge, ["local-mine"]) == ["mine"]
    assert cluster.calls[:2] == ["GET ", "DELETE /mine"]  # the list, then at once the DELETE
    assert "GET /mine" not in cluster.calls and "theirs" in cluster.bridges
    # ... and its port is no longer steered, from what the list showed.
    assert runtime.exec.await_args.args[1][-1].endswith("/20001")


def test_a_bridge_given_by_name_is_still_read_first() -> None:
    settings = Settings(client_id="me")
    cluster = _Cluster(settings, _bridge("mine", "me", 20001))
    g, runtime = _session(cluster, settings)

    async def remove(names: list[str]) -> list[str]:
        from gefyra.client import unbridge

        return await unbridge.remove_bridges(unbridge.UnbridgeContext(g.orchestrator, cluster, runtime), names)

    assert anyio.run(remove, ["gone", "mine"]) == ["mine"]
    assert cluster.calls[:3] == ["GET /gone", "GET /mine", "DELETE /mine"]


class _Engine(DockerRuntime):
    def __init__(self, fails: bool = False, hangs: bool = False) -> None:
        super().__init__()
        self.fails, self.hangs, self.closed = fails, hangs, False

    async def connect(self) -> None:
        await anyio.sleep(30 if self.hangs else 0.1)
        if self.fails:
            raise errors.EngineUnavailableError("cannot reach docker")

    async def close(self) -> None:
        self.closed = True


def _both(cluster_fails: bool, engine: _Engine) -> tuple[Exception | None, float]:
    g = Gefyra(Settings(client_id="me"), entry_points=False)
    g.orchestrator.runtime = lambda: engine  # type: ignore[method-assign]

    async def cluster() -> Cluster:
        await anyio.sleep(0.1)
        if cluster_fails:
            raise errors.ConfigError("the kubeconfig is broken")
        return Cluster(g.settings)

    g.orchestrator.cluster = cluster  # type: ignore[method-assign]

    async def main() -> tuple[Exception | None, float]:
        started = anyio.current_time()
        try:
            await g.orchestrator.both()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            return exc, anyio.current_time() - started
        return None, anyio.current_time() - started

    return anyio.run(main)


def test_both_connections_are_made_at_once_and_the_clusters_error_comes_first() -> None:
    failure, took = _both(False, _Engine())
    assert failure is None and took < 0.17  # 0.1 s each: one after the other, 0.2 s
    assert isinstance(_both(False, _Engine(fails=True))[0], errors.EngineUnavailableError)
    assert isinstance(_both(True, _Engine(fails=True))[0], errors.ConfigError)
    # A broken cluster does not wait for an engine that does not answer, and that half-made
    # connection is closed.
    engine = _Engine(hangs=True)
    failure, took = _both(True, engine)
    assert isinstance(failure, errors.ConfigError) and took < 5 and engine.closed


def test_the_engine_is_asked_once_when_it_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    class Docker:
        api_version = "auto"

        def __init__(self, url: str | None = None) -> None:
            pass

        async def _check_version(self) -> None:
            asked.append("/version")
            self.api_version = "v1.47"

        async def version(self) -> dict[str, Any]:
            await self._check_version()
            asked.append(f"/{self.api_version}/version")
            return {}

    monkeypatch.setattr("gefyra.plugins.docker.runtime.aiodocker.Docker", Docker)
    anyio.run(DockerRuntime().connect)
    assert asked == ["/version"]


def test_the_api_client_comes_without_dateutils_parser_which_still_works_later() -> None:
    probe = ("import sys, gefyra.core.kube.cluster; from kubernetes_asyncio.client import api_client; "
             "before = 'dateutil.parser' in sys.modules; when = str(api_client.parse('2026-12-07T10:00:00Z')); "
             "import dateutil.parser, json; print(json.dumps([before, when, hasattr(dateutil.parser, 'parser')]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [False, "2026-12-07 10:00:00+00:00", True]  # the real module
