"""The sample third-party plugin passes gefyra's interceptor contract (gefyra.testing), found the
way gefyra finds it: installed into the test environment (make venv), through the `gefyra`
entry-point group."""

from __future__ import annotations

import pytest

from gefyra.core.engine.orchestrator import Orchestrator
from gefyra.core.model.settings import Settings
from gefyra.core.spi.interceptor import Interceptor
from gefyra.plugins import BUILTIN_PLUGINS
from gefyra.testing import InterceptorContract
from tests.contract.test_builtin_plugins import OnTheDevelopmentCluster

pytestmark = pytest.mark.e2e


class TestRecordingInterceptor(OnTheDevelopmentCluster, InterceptorContract):
    def make_interceptor(self) -> Interceptor:
        interceptor = Orchestrator(Settings(), builtins=BUILTIN_PLUGINS).interceptor("recording")
        assert type(interceptor).__module__ == "gefyra_recording_interceptor"
        return interceptor


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
