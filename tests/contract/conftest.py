from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiodocker and kubernetes_asyncio are asyncio-only
