"""One port of a pod through the Kubernetes API, as `kubectl port-forward` reaches it: the
``pods/portforward`` subresource over a WebSocket (protocol ``v4.channel.k8s.io``), with the
kubeconfig's own credentials (client certificate, token, exec plugin), so nothing new holds them.

The protocol: every WebSocket message starts with a channel byte, 0 for the port's data and 1 for
its errors; the server's first message on each channel carries only the port (2 bytes, little
endian). What the client sends goes on channel 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.stream import WsApiClient

from gefyra import errors
from gefyra.core.model import validation

_DATA, _ERROR = 0, 1


class PortStream:
    """A byte stream to one port of a pod. :meth:`receive` returns the next bytes the pod sent;
    it raises :class:`~gefyra.errors.ClusterUnreachableError` when the stream ends or the API
    server reports an error (the pod went away, say)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, what: str) -> None:
        self._ws = ws
        self._what = what
        self._port_seen = {_DATA: False, _ERROR: False}

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(b"\x00" + data)
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise errors.ClusterUnreachableError(f"the stream to {self._what} broke: {exc}") from exc

    async def receive(self) -> bytes:
        while True:
            message = await self._ws.receive()
            if message.type != aiohttp.WSMsgType.BINARY:
                raise errors.ClusterUnreachableError(f"the stream to {self._what} ended ({message.type.name.lower()})")
            data: bytes = message.data
            if not data or data[0] not in self._port_seen:
                continue
            channel, payload = data[0], data[1:]
            if not self._port_seen[channel]:  # the first message on a channel names the port
                self._port_seen[channel] = True
                payload = payload[2:]
            if channel == _ERROR and payload:
                raise errors.ClusterUnreachableError(
                    f"the stream to {self._what} failed: {payload[:300].decode(errors='replace')}")
            if channel == _DATA and payload:
                return payload

    async def __aenter__(self) -> PortStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._ws.close()


@asynccontextmanager
async def open_port(configuration: client.Configuration, namespace: str, pod: str,
                    port: int) -> AsyncIterator[PortStream]:
    """A stream to ``port`` of ``pod``, open for the block."""
    if not (validation.is_dns_label(namespace) and validation.is_dns_subdomain(pod) and validation.is_port(port)):
        raise errors.UsageError(f"cannot open a stream to {validation.shown(namespace)}/{validation.shown(pod)} port "
                                f"{validation.shown(port)}: not a namespace, pod and port")
    what = f"pod {namespace}/{pod} port {port}"
    api = WsApiClient(configuration=configuration)
    try:
        try:
            connecting: Any = await api.call_api(
                f"/api/v1/namespaces/{namespace}/pods/{pod}/portforward", "GET", query_params=[("ports", str(port))],
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True)
            ws = await connecting.__aenter__()
        except aiohttp.WSServerHandshakeError as exc:
            status = {403: "these credentials may not open it (pods/portforward)", 404: "no such pod"}
            raise errors.ClusterUnreachableError(
                f"cannot open {what} through the Kubernetes API: {status.get(exc.status, f'HTTP {exc.status}')}"
            ) from exc
        except (ApiException, aiohttp.ClientError, OSError) as exc:
            raise errors.ClusterUnreachableError(f"cannot open {what} through the Kubernetes API: {exc}") from exc
        async with PortStream(ws, what) as stream:
            yield stream
    finally:
        await api.close()
