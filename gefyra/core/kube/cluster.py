"""The one way gefyra reaches the cluster: :class:`Cluster`, over kubernetes_asyncio's connection
(kubeconfig or in-cluster), with every answer translated into :mod:`gefyra.errors` and requests
that fail with "not now" tried again. Objects are plain JSON (dicts), as the API has them; paths
come from :mod:`gefyra.core.kube.paths`."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlparse

import aiohttp
import anyio
import structlog
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from gefyra import errors
from gefyra.core.kube import kubeconfig
from gefyra.core.kube.paths import collection_path, object_path, path
from gefyra.core.kube.portforward import PortStream, open_port
from gefyra.core.model.settings import Settings

log = structlog.get_logger(__name__)

#: Seconds one API request or exec may take (kubernetes_asyncio's default is no limit at all).
REQUEST_TIMEOUT = 30
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
#: Accept header for an object's metadata only (a Secret read without its data).
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
#: Seconds between the tries of a request whose answer said "not now" rather than "no" (see
#: transient): about 8 s in all, what an API server takes to come back after a restart.
RETRY_WAITS = (0.25, 0.5, 1.0, 2.0, 4.0)


def transient(method: str, exc: BaseException) -> bool:
    """Whether a failed request is worth another try: the API server was busy (429), not ready
    (503), or, for requests that are safe to repeat, failed inside (5xx) or dropped the
    connection. A POST is repeated only when the server said it did not take it."""
    if isinstance(exc, ApiException):
        return exc.status in (429, 503) or (method != "POST" and exc.status in (500, 502, 504))
    return method != "POST" and isinstance(exc, aiohttp.ClientConnectionError)


def _body(exc: ApiException) -> str:
    body = exc.body or ""
    return body.decode(errors="replace") if isinstance(body, bytes) else str(body)


def _translate(exc: ApiException, what: str) -> errors.GefyraError:
    """Maps an API error to a gefyra error about ``what``."""
    try:
        reason = json.loads(_body(exc)).get("message", exc.reason)
    except (TypeError, ValueError, AttributeError):
        reason = exc.reason
    if exc.status == 401:
        return errors.ConfigError(f"the cluster rejected the credentials for {what}: {reason}",
                                  "check the kubeconfig and its context")
    if exc.status == 403:
        return errors.ForbiddenError(f"not allowed: {what}: {reason}",
                                     "ask a cluster admin for the rights (README: What gefyra installs and may do)")
    if exc.status == 404:
        return errors.NotFoundError(f"{what} not found")
    if exc.status == 409:
        return errors.ConflictError(f"{what}: {reason}")
    return errors.GefyraError(f"the cluster refused {what}: {reason}")


def _tls_reason(exc: aiohttp.ClientSSLError) -> str:
    """The certificate problem in a few words ("certificate verify failed: unable to get local
    issuer certificate", ...), not the whole connection dump."""
    cause = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
    return str(getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause)[:200]


Target = str | Mapping[str, Any]


def _path_of(target: Target) -> str:
    """A path as given, or the path of the object a manifest describes."""
    return target if isinstance(target, str) else object_path(target)


class Cluster:
    """An open connection to the cluster: of ``settings`` (kubeconfig and context, ``async with``),
    or of the pod it runs in (:meth:`in_cluster`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._api: client.ApiClient | None = None
        self._username: str | None = None
        self._context: kubeconfig.KubeContext | None = None
        #: What this connection cost the API server so far: requests made (a watch opened counts
        #: as one), and watch events received (what an embedder is sent, e.g. for benchmarks).
        self.requests = 0
        self.watch_events = 0

    @classmethod
    async def in_cluster(cls, settings: Settings) -> Cluster:
        """The connection of a program in a pod, with its service account's token (renewed as the
        kubelet renews the file)."""
        cluster = cls(settings)
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        cluster._api = client.ApiClient(configuration)
        return cluster

    @property
    def _client(self) -> client.ApiClient:
        assert self._api is not None, "cluster not connected"
        return self._api

    @property
    def server(self) -> str:
        """The API server's URL."""
        return str(self._client.configuration.host)

    @property
    def api_host(self) -> str:
        return urlparse(self.server).hostname or ""

    @property
    def context_name(self) -> str:
        """The kubeconfig context in use."""
        return self._context.name if self._context is not None else ""

    async def __aenter__(self) -> Self:
        self._context = kubeconfig.read(self.settings.kubeconfig, self.settings.context)  # one line for a bad one
        try:
            self._api = await config.new_client_from_config(
                config_file=self.settings.kubeconfig, context=self.settings.context, persist_config=False
            )
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise errors.ConfigError(
                f"cannot load the kubeconfig {self.settings.kubeconfig or '(default)'}"
                f"{' context ' + self.settings.context if self.settings.context else ''}: {exc}",
                "pass --kubeconfig FILE and --context NAME of a reachable cluster",
            ) from exc
        try:
            with anyio.fail_after(10):
                await self._once("GET", "/version/", None, [], "application/json", "application/json")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            host = self._api.configuration.host
            await self.close()
            if isinstance(exc, aiohttp.ClientSSLError):
                raise errors.ConfigError(
                    f"the cluster at {host} does not prove who it is: TLS failed ({_tls_reason(exc)})",
                    "check the kubeconfig's certificate-authority(-data) for this cluster, and its server address",
                ) from exc
            raise errors.ClusterUnreachableError(
                f"the cluster at {host} does not answer ({type(exc).__name__})",
                "check that it runs and that --kubeconfig/--context point at it",
            ) from exc
        except ApiException as exc:
            await self.close()
            raise _translate(exc, "the version request") from exc
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    @asynccontextmanager
    async def _calling(self, what: str) -> AsyncIterator[None]:
        """Translates API and connection errors raised inside the block."""
        try:
            yield
        except ApiException as exc:
            raise _translate(exc, what) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise errors.ClusterUnreachableError(f"lost the cluster while doing {what}: {exc or type(exc).__name__}") from exc

    async def _once(self, method: str, path: str, body: Any, query: list[tuple[str, str]], content_type: str,
                    accept: str) -> Any:
        self.requests += 1
        with anyio.fail_after(REQUEST_TIMEOUT):
            response = await self._client.call_api(
                path, method, query_params=query, header_params={"Content-Type": content_type, "Accept": accept},
                body=body, auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
            )
            data = await response.read()
        if response.status >= 400:
            failure = ApiException(status=response.status, reason=response.reason)
            failure.body = data.decode(errors="replace")
            raise failure
        return json.loads(data) if data else None

    async def request(self, method: str, path: str, body: Any = None, *,
                      query: list[tuple[str, str]] | None = None, content_type: str = "application/json",
                      accept: str = "application/json") -> Any:
        """One API request; returns the decoded JSON answer. A transient failure is tried again
        (RETRY_WAITS) before it is reported."""
        async with self._calling(f"{method} {path}"):
            for wait in (*RETRY_WAITS, None):
                try:
                    return await self._once(method, path, body, query or [], content_type, accept)
                except (ApiException, aiohttp.ClientError) as exc:
                    if wait is None or not transient(method, exc):
                        raise
                    log.debug("cluster request tried again", request=f"{method} {path}",
                              failure=exc.status if isinstance(exc, ApiException) else type(exc).__name__)
                await anyio.sleep(wait)

    # Objects, by path or by the manifest that describes them.

    async def get(self, target: Target, *, accept: str = "application/json") -> dict[str, Any] | None:
        """The object as the cluster has it, or None."""
        try:
            found: dict[str, Any] = await self.request("GET", _path_of(target), accept=accept)
        except errors.NotFoundError:
            return None
        return found

    async def exists(self, target: Target) -> bool:
        return await self.get(target) is not None

    async def objects(self, collection: str, *, label_selector: str = "") -> list[dict[str, Any]]:
        """The items of a collection (a path from :func:`paths.path` without a name); [] where the
        collection does not exist (a custom resource that is not installed)."""
        try:
            found = await self.request("GET", collection, query=[("labelSelector", label_selector)] if label_selector else [])
        except errors.NotFoundError:
            return []
        return list(found.get("items") or [])

    async def create(self, doc: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Creates the object ``doc``; ConflictError if it exists. ``dry_run``: the API server
        admits it (or refuses it, as it would) and stores nothing."""
        made: dict[str, Any] = await self.request("POST", collection_path(doc), doc,
                                                  query=[("dryRun", "All")] if dry_run else [])
        return made

    async def patch(self, target: Target, body: Mapping[str, Any], *, strategic: bool = False) -> dict[str, Any]:
        """A merge patch (a strategic one for built-in kinds where lists merge by name)."""
        patched: dict[str, Any] = await self.request("PATCH", _path_of(target), body,
                                                     content_type=STRATEGIC_PATCH if strategic else MERGE_PATCH)
        return patched

    async def apply(self, doc: Mapping[str, Any]) -> Any:
        """Server-side apply of one object (field manager ``gefyra``, conflicts forced)."""
        return await self.request("PATCH", object_path(doc), doc, query=[("fieldManager", "gefyra"), ("force", "true")],
                                  content_type=APPLY_PATCH)

    async def delete(self, target: Target, *, foreground: bool = True) -> bool:
        """Deletes one object; False if it did not exist. Foreground (the default) keeps the object
        until its dependents are gone; an object without dependents is better deleted in the
        background: the garbage collector learns a new CRD's kind only at its next resync (up to
        30 s), and a foreground-deleted custom object waits that long."""
        try:
            await self.request("DELETE", _path_of(target),
                               {"propagationPolicy": "Foreground" if foreground else "Background"})
        except errors.NotFoundError:
            return False
        return True

    async def watch(self, collection: str, *, seconds: int, grace: int) -> AsyncIterator[dict[str, Any]]:
        """The events of a collection (each ``{"type": ..., "object": ...}``), from now until the API
        server ends the watch (after ``seconds``); a watch that has not ended ``grace`` seconds
        later is cut (a connection dropped without a word). Raises gefyra errors."""
        async with self._calling(f"watching {collection}"):
            self.requests += 1
            response = await self._client.call_api(
                collection, "GET", query_params=[("watch", "true"), ("timeoutSeconds", str(seconds))],
                header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                _preload_content=False, _return_http_data_only=True, _request_timeout=seconds + grace)
            try:
                if response.status >= 400:
                    failure = ApiException(status=response.status, reason=response.reason)
                    failure.body = (await response.read()).decode(errors="replace")
                    raise failure
                while line := await response.content.readline():
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        failure = ApiException(status=int(status.get("code") or 500), reason=status.get("reason"))
                        failure.body = json.dumps(status).encode()
                        raise failure
                    self.watch_events += 1
                    yield event
            finally:
                response.close()

    def port_forward(self, namespace: str, pod: str, port: int) -> AbstractAsyncContextManager[PortStream]:
        """A byte stream to ``port`` of ``pod`` through the API server (pods/portforward), open for
        an ``async with`` block; over SPDY or a WebSocket as :attr:`Settings.api_stream` says."""
        return open_port(self._client.configuration, namespace, pod, port, self.settings.api_stream)

    async def username(self) -> str:
        """Who the cluster takes this kubeconfig's credentials for (SelfSubjectReview: any
        authenticated user may ask). gefyra's objects record it as their owner."""
        if self._username is None:
            review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            answer = await self.request("POST", path("selfsubjectreviews"), review)
            self._username = str(answer["status"]["userInfo"].get("username", ""))
        return self._username

    async def may(self, verb: str, group: str, resource: str, namespace: str = "") -> bool:
        """Whether these credentials may ``verb`` the ``resource`` (SelfSubjectAccessReview)."""
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"group": group, "verb": verb, "resource": resource,
                                                  **({"namespace": namespace} if namespace else {})}}}
        answer = await self.request("POST", path("selfsubjectaccessreviews"), review)
        return bool(answer.get("status", {}).get("allowed"))

    # Discovery of what the tunnel must route.

    async def service_cidr(self) -> str:
        """The Service range, from the API server's answer to a Service with an impossible
        clusterIP (dry run: nothing is created). Works on every Kubernetes version."""
        probe = {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "gefyra-cidr-probe", "namespace": "default"},
                 "spec": {"clusterIP": "1.1.1.1", "ports": [{"port": 443}]}}
        try:
            await self._once("POST", path("services", "default"), probe, [("dryRun", "All")], "application/json",
                             "application/json")
        except ApiException as exc:
            match = re.search(r"valid IPs is ([0-9a-f.:/]+)", _body(exc))
            if match:
                return match.group(1)
            raise _translate(exc, "the service range probe") from exc
        raise errors.GefyraError("cannot find the cluster's Service range", "pass --service-cidr")

    async def pod_cidrs(self) -> list[str]:
        cidrs: set[str] = set()
        for node in await self.objects(path("nodes")):
            spec = node.get("spec") or {}
            cidrs.update(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
        return sorted(c for c in cidrs if ipaddress.ip_network(c).version == 4)

    async def cluster_dns_ip(self) -> str:
        found = await self.request("GET", path("services", "kube-system", "kube-dns"))
        return str(found["spec"]["clusterIP"])

    async def kubernetes_service_ip(self) -> str:
        found = await self.request("GET", path("services", "default", "kubernetes"))
        return str(found["spec"]["clusterIP"])

    async def namespace_exists(self, name: str) -> bool:
        return await self.exists(path("namespaces", name=name))
