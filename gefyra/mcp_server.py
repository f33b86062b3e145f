"""`gefyra mcp`: a Model Context Protocol server on stdio, for coding agents. Its tools are thin:
each opens a :class:`gefyra.Gefyra` with the settings the command was started with and calls one
public operation; the arguments' JSON schemas come from the API's own request types
(:class:`RunRequest`, :class:`BridgeRequest`), and a gefyra error comes back as a tool error with
gefyra's one-line message (what, why, what to do).

Needs the ``mcp`` package (``pip install gefyra[mcp]``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from gefyra import __version__, errors
from gefyra.client.results import plain
from gefyra.client.session import Gefyra
from gefyra.core.model.requests import BridgeRequest, RunRequest
from gefyra.core.model.settings import Settings

#: What an agent reads first: what gefyra is for and the order of the tools.
_INSTRUCTIONS = (
    "gefyra runs containers on this machine as if they were pods of the Kubernetes cluster of the "
    "kubeconfig: they reach the cluster's Services by name, and a bridge sends a workload's traffic "
    "to one of them. Use status first (it says what to fix), then run a container, bridge a workload "
    "to it (global, or personal with matches such as a header), read its logs, unbridge, rm, and "
    "down when done (it removes everything gefyra made).")


def server(settings: Settings) -> Any:
    """The MCP server with gefyra's tools, for ``settings`` (kubeconfig, context, runtime, client id)."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as exc:
        raise errors.UsageError("`gefyra mcp` needs the mcp package, which is not installed",
                                "pip install 'gefyra[mcp]'") from exc

    mcp = MCPServer("gefyra", instructions=_INSTRUCTIONS, version=__version__)

    async def call(operation: Callable[[Gefyra], Awaitable[Any]]) -> Any:
        try:
            async with Gefyra(settings) as g:
                return plain(await operation(g))
        except errors.GefyraError as exc:
            raise ToolError(str(exc)) from exc

    @mcp.tool()
    async def status() -> dict[str, Any]:
        """What is installed and connected, measured now: the cluster side, this client, the tunnel
        and its transport, the local containers, the bridges, and every problem with what to do."""
        found: dict[str, Any] = await call(lambda g: g.status())
        return found

    @mcp.tool()
    async def run(request: RunRequest) -> dict[str, Any]:
        """Start a local container that behaves like a pod of request.namespace (detached): it
        reaches the cluster's Services by name; env_from takes a workload's environment
        ("deploy/NAME[/CONTAINER]"). Needs a connected client (`status`; `gefyra up` connects)."""
        found: dict[str, Any] = await call(lambda g: g.run(request))
        return found

    @mcp.tool()
    async def bridge(request: BridgeRequest) -> dict[str, Any]:
        """Send the traffic of request.target's ports ({remote: local}) to the local container
        request.local; with matches (e.g. {"kind": "header-exact", "header": "x-dev", "value": "me"}),
        only the matching requests (a personal bridge). Returns once the bridge is Ready."""
        found: dict[str, Any] = await call(lambda g: g.bridge(request))
        return found

    @mcp.tool()
    async def unbridge(names: list[str] | None = None, namespace: str | None = None) -> list[str]:
        """Remove bridges by bridge or local container name (all of this client's without names);
        returns once the workloads have their traffic back."""
        removed: list[str] = await call(lambda g: g.unbridge(names, namespace=namespace))
        return removed

    @mcp.tool()
    async def logs(name: str, tail: int | None = 200, since_seconds: float | None = None) -> str:
        """The output of the local container ``name``: its last ``tail`` lines, of those written in
        the last ``since_seconds`` if given."""
        since = time.time() - since_seconds if since_seconds else None

        async def lines(g: Gefyra) -> str:
            return "".join([line async for line in g.logs(name, since=since, tail=tail)])

        text: str = await call(lines)
        return text

    @mcp.tool()
    async def rm(names: list[str] | None = None, all: bool = False) -> list[str]:  # noqa: A002 - the CLI's --all
        """Remove local containers started with run (by name, or all of them with all=true), each
        after its bridges."""
        if bool(names) == all:
            raise ToolError("name the containers, or pass all=true")
        removed: list[str] = await call(lambda g: g.rm(None if all else names))
        return removed

    @mcp.tool()
    async def down() -> list[str]:
        """Remove everything gefyra made, on this machine and in the cluster."""
        removed: list[str] = await call(lambda g: g.down())
        return removed

    return mcp
