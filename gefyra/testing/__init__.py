"""Contract suites for gefyra's plugins, shipped with the package: a plugin's own tests subclass
the contract of the backend it provides and give it a few fixtures (each contract's docstring
names them); every test of the contract then runs against the plugin, on a real engine or
cluster. gefyra's built-in plugins pass the same suites (tests/contract/ in gefyra's source).

    from gefyra.testing import RuntimeContract

    class TestMyRuntime(RuntimeContract):
        @pytest.fixture
        async def runtime(self): ...

The suites need pytest and anyio's pytest plugin (``pytest.mark.anyio``, asyncio backend)."""

from __future__ import annotations

from gefyra.testing.interceptor import InterceptorContract, serve_http_paths
from gefyra.testing.runtime import RuntimeContract
from gefyra.testing.tunnel import TunnelContract

__all__ = ["InterceptorContract", "RuntimeContract", "TunnelContract", "serve_http_paths"]
