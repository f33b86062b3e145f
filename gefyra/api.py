"""Function-style API: each call opens a :class:`gefyra.Gefyra`, runs one operation and closes it.
Programs that make several calls keep one ``Gefyra`` open instead (its connections stay open)."""

from __future__ import annotations

from gefyra import __version__
from gefyra.client.results import BridgeInfo, CheckResult, LocalContainer, Status
from gefyra.client.session import Gefyra
from gefyra.core.model.requests import BridgeRequest, RunRequest
from gefyra.core.model.settings import Settings

__all__ = ["BridgeRequest", "RunRequest", "bridge", "check", "down", "list_bridges", "list_containers", "run",
           "status", "unbridge", "up", "version"]


async def up(settings: Settings | None = None) -> Status:
    async with Gefyra(settings) as g:
        return await g.up()


async def down(settings: Settings | None = None) -> list[str]:
    async with Gefyra(settings) as g:
        return await g.down()


async def run(request: RunRequest, settings: Settings | None = None) -> LocalContainer:
    async with Gefyra(settings) as g:
        return await g.run(request)


async def bridge(request: BridgeRequest, settings: Settings | None = None) -> BridgeInfo:
    async with Gefyra(settings) as g:
        return await g.bridge(request)


async def unbridge(names: list[str] | None = None, settings: Settings | None = None) -> list[str]:
    async with Gefyra(settings) as g:
        return await g.unbridge(names)


async def rm(names: list[str] | None = None, settings: Settings | None = None) -> list[str]:
    async with Gefyra(settings) as g:
        return await g.rm(names)


async def list_bridges(settings: Settings | None = None) -> list[BridgeInfo]:
    async with Gefyra(settings) as g:
        return await g.bridges()


async def list_containers(settings: Settings | None = None) -> list[LocalContainer]:
    async with Gefyra(settings) as g:
        return await g.containers()


async def status(settings: Settings | None = None) -> Status:
    async with Gefyra(settings) as g:
        return await g.status()


async def check(settings: Settings | None = None) -> list[CheckResult]:
    async with Gefyra(settings) as g:
        return await g.check()


def version() -> str:
    return __version__
