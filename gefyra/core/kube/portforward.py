"""One port of a pod through the Kubernetes API, as `kubectl port-forward` reaches it: the
``pods/portforward`` subresource, with the kubeconfig's own credentials (client certificate,
token, exec plugin), so nothing new holds them. Over SPDY (:mod:`gefyra.core.kube.spdy`, what
kubectl speaks, and the cheaper one for the container runtime) where the API server is reached
directly; over a WebSocket (protocol ``v4.channel.k8s.io``) through a proxy, or where the upgrade to
SPDY is refused.

The WebSocket protocol: every message starts with a channel byte, 0 for the port's data and 1 for
its errors; the server's first message on each channel carries only the port (2 bytes, little
endian). What the client sends goes on channel 0."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import anyio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.stream import WsApiClient

from gefyra import errors
from gefyra.core.kube.spdy import HandshakeRefused, SpdyPortStream, connect
from gefyra.core.model import validation

_DATA, _ERROR = 0, 1
#: Seconds to connect to the API server and have the upgrade answered.
_CONNECT_TIMEOUT = 15.0
#: What the API server's refusal of the upgrade means, by HTTP status.
_REFUSALS = {401: "these credentials are not accepted", 403: "these credentials may not open it (pods/portforward)",
             404: "no such pod"}


class PortStream(Protocol):
    """A byte stream to one port of a pod. :meth:`receive` returns the next bytes the pod sent;
    it raises :class:`~gefyra.errors.ClusterUnreachableError` when the stream ends or the API
    server reports an error (the pod went away, say); so does :meth:`send` when it breaks."""

    #: "spdy" or "websocket".
    protocol: str

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...


class _WebSocketPortStream:
    """A :class:`PortStream` over a WebSocket."""

    protocol = "websocket"

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

    async def __aenter__(self) -> _WebSocketPortStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._ws.close()


def _tls(configuration: client.Configuration) -> ssl.SSLContext:
    """The TLS context that the Kubernetes client makes of the same configuration."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if getattr(configuration, "disable_strict_ssl_verification", False):
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


def _proxied(configuration: client.Configuration) -> bool:
    """Whether the API server is reached through a proxy (the kubeconfig's, or $HTTPS_PROXY's as
    the Kubernetes client takes it): then the WebSocket, which the client carries through it."""
    host = urlsplit(str(configuration.host)).hostname or ""
    return bool(configuration.proxy) or (bool(urllib.request.getproxies_environment())
                                         and not urllib.request.proxy_bypass(host))


@asynccontextmanager
async def open_port(configuration: client.Configuration, namespace: str, pod: str, port: int,
                    protocol: str = "auto") -> AsyncIterator[PortStream]:
    """A stream to ``port`` of ``pod``, open for the block, over ``protocol`` ("spdy",
    "websocket", or "auto": SPDY, but over a WebSocket where that cannot be (:func:`_proxied`, or
    the API server does not upgrade to SPDY))."""
    if not (validation.is_dns_label(namespace) and validation.is_dns_subdomain(pod) and validation.is_port(port)):
        raise errors.UsageError(f"cannot open a stream to {validation.shown(namespace)}/{validation.shown(pod)} port "
                                f"{validation.shown(port)}: not a namespace, pod and port")
    what = f"pod {namespace}/{pod} port {port}"
    spdy = None
    if protocol == "spdy" or (protocol == "auto" and not _proxied(configuration)):
        spdy = await _connect_spdy(configuration, what, namespace, pod, port, fall_back=protocol == "auto")
    if spdy is not None:
        async with spdy:
            yield spdy
        return
    async with _open_websocket(configuration, what, namespace, pod, port) as stream:
        yield stream


async def _connect_spdy(configuration: client.Configuration, what: str, namespace: str, pod: str, port: int, *,
                        fall_back: bool) -> SpdyPortStream | None:
    """The SPDY stream; with ``fall_back``, None if the API server does not upgrade to SPDY (but for
    a refusal that the WebSocket would meet too)."""
    authorization = (await configuration.auth_settings()).get("BearerToken", {}).get("value")
    try:
        with anyio.fail_after(_CONNECT_TIMEOUT):
            return await connect(str(configuration.host), _tls(configuration), configuration.tls_server_name,
                                 authorization, namespace, pod, port, what)
    except HandshakeRefused as exc:
        if exc.status in _REFUSALS or not fall_back:
            raise errors.ClusterUnreachableError(
                f"cannot open {what} through the Kubernetes API over SPDY: {_REFUSALS.get(exc.status, exc)}") from exc
        return None
    except (ssl.SSLError, OSError) as exc:  # TimeoutError included
        raise errors.ClusterUnreachableError(
            f"cannot open {what} through the Kubernetes API: {exc or type(exc).__name__}") from exc


@asynccontextmanager
async def _open_websocket(configuration: client.Configuration, what: str, namespace: str, pod: str,
                          port: int) -> AsyncIterator[PortStream]:
    api = WsApiClient(configuration=configuration)
    try:
        try:
            connecting: Any = await api.call_api(
                f"/api/v1/namespaces/{namespace}/pods/{pod}/portforward", "GET", query_params=[("ports", str(port))],
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True)
            ws = await connecting.__aenter__()
        except aiohttp.WSServerHandshakeError as exc:
            raise errors.ClusterUnreachableError(
                f"cannot open {what} through the Kubernetes API: {_REFUSALS.get(exc.status, f'HTTP {exc.status}')}"
            ) from exc
        except (ApiException, aiohttp.ClientError, OSError) as exc:
            raise errors.ClusterUnreachableError(f"cannot open {what} through the Kubernetes API: {exc}") from exc
        async with _WebSocketPortStream(ws, what) as stream:
            yield stream
    finally:
        await api.close()
