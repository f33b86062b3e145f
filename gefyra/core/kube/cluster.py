"""The cluster connection: kubeconfig loading, error translation, and the few API calls gefyra
makes. kubernetes_asyncio's ApiException never leaves this module untranslated."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlparse

import aiohttp
import anyio
import structlog
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.stream import WsApiClient

from gefyra import errors
from gefyra.core.kube import kubeconfig
from gefyra.core.model.names import CRD_GROUP, CRD_VERSION
from gefyra.core.model.settings import Settings

log = structlog.get_logger(__name__)

#: (apiVersion, kind) -> (plural, namespaced) for every kind gefyra applies or deletes.
_KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Service"): ("services", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): ("validatingadmissionpolicies", False),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"):
        ("validatingadmissionpolicybindings", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("gefyra.dev/v1alpha1", "GefyraClient"): ("gefyraclients", True),
    ("gefyra.dev/v1alpha1", "GefyraBridge"): ("gefyrabridges", True),
}


def object_path(doc: Mapping[str, Any]) -> str:
    """The REST path of the object described by ``doc``."""
    api_version, kind = doc["apiVersion"], doc["kind"]
    plural, namespaced = _KINDS[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    meta = doc["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{prefix}{ns}/{plural}/{meta['name']}"


#: Seconds one API request or exec may take (kubernetes_asyncio's default is no limit at all).
REQUEST_TIMEOUT = 30
MERGE_PATCH = "application/merge-patch+json"
#: Accept header for an object's metadata only (a Secret read without its data).
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
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


async def request(api: client.ApiClient, method: str, path: str, body: Any = None, *,
                  query: list[tuple[str, str]] | None = None, content_type: str = "application/json",
                  accept: str = "application/json") -> Any:
    """A raw API request; returns the decoded JSON answer. Raises ApiException (and aiohttp's
    errors, TimeoutError) untranslated: :class:`Cluster` translates them for the client, the
    operator retries them."""
    with anyio.fail_after(REQUEST_TIMEOUT):
        response = await api.call_api(
            path, method, query_params=query or [], header_params={"Content-Type": content_type,
                                                                   "Accept": accept},
            body=body, auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
        )
        data = await response.read()
    if response.status >= 400:
        failure = ApiException(status=response.status, reason=response.reason)
        failure.body = data.decode(errors="replace")
        raise failure
    return json.loads(data) if data else None


def pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def custom_path(namespace: str, plural: str, name: str, subresource: str = "") -> str:
    """The path of one of gefyra's custom objects (or of its ``status`` subresource)."""
    return f"/apis/{CRD_GROUP}/{CRD_VERSION}/namespaces/{namespace}/{plural}/{name}" + (
        f"/{subresource}" if subresource else "")


async def exec_in_pod(api: client.ApiClient, namespace: str, pod: str, container: str, command: list[str]) -> str:
    """Runs ``command`` in a container of a pod; returns its output (stdout and stderr)."""
    async with WsApiClient(configuration=api.configuration) as ws:
        with anyio.fail_after(REQUEST_TIMEOUT):
            output = await client.CoreV1Api(ws).connect_get_namespaced_pod_exec(
                pod, namespace, container=container,
                command=command,  # type: ignore[arg-type]  # the client's hint says str; it takes a list
                stderr=True, stdin=False, stdout=True, tty=False)
    return str(output)


def _body(exc: ApiException) -> str:
    body = exc.body or ""
    return body.decode(errors="replace") if isinstance(body, bytes) else str(body)


def translate(exc: ApiException, what: str) -> errors.GefyraError:
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


class Cluster:
    """An open connection to the cluster of ``settings`` (kubeconfig and context)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._api: client.ApiClient | None = None
        self._username: str | None = None
        self._context: kubeconfig.KubeContext | None = None

    @property
    def api(self) -> client.ApiClient:
        assert self._api is not None, "cluster not connected"
        return self._api

    @property
    def api_host(self) -> str:
        return urlparse(str(self.api.configuration.host)).hostname or ""

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
                await client.VersionApi(self._api).get_code()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            host = self._api.configuration.host
            await self.close()
            raise errors.ClusterUnreachableError(
                f"the cluster at {host} does not answer ({type(exc).__name__})",
                "check that it runs and that --kubeconfig/--context point at it",
            ) from exc
        except ApiException as exc:
            await self.close()
            raise translate(exc, "the version request") from exc
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
    async def calling(self, what: str) -> AsyncIterator[None]:
        """Translates API and connection errors raised inside the block."""
        try:
            yield
        except ApiException as exc:
            raise translate(exc, what) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise errors.ClusterUnreachableError(f"lost the cluster while doing {what}: {exc or type(exc).__name__}") from exc

    async def request(self, method: str, path: str, body: Any = None, *,
                      query: list[tuple[str, str]] | None = None, content_type: str = "application/json",
                      accept: str = "application/json") -> Any:
        """A raw API request; returns the decoded JSON answer. A transient failure is tried again
        (RETRY_WAITS) before it is reported."""
        async with self.calling(f"{method} {path}"):
            for wait in (*RETRY_WAITS, None):
                try:
                    return await request(self.api, method, path, body, query=query, content_type=content_type,
                                         accept=accept)
                except (ApiException, aiohttp.ClientError) as exc:
                    if wait is None or not transient(method, exc):
                        raise
                    log.debug("cluster request tried again", request=f"{method} {path}",
                              failure=exc.status if isinstance(exc, ApiException) else type(exc).__name__)
                await anyio.sleep(wait)

    async def username(self) -> str:
        """Who the cluster takes this kubeconfig's credentials for (SelfSubjectReview: any
        authenticated user may ask). gefyra's objects record it as their owner."""
        if self._username is None:
            review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            answer = await self.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)
            self._username = str(answer["status"]["userInfo"].get("username", ""))
        return self._username

    async def apply(self, doc: Mapping[str, Any]) -> Any:
        """Server-side apply of one object (field manager ``gefyra``, conflicts forced)."""
        return await self.request("PATCH", object_path(doc), doc,
                                  query=[("fieldManager", "gefyra"), ("force", "true")],
                                  content_type="application/apply-patch+yaml")

    async def delete(self, doc: Mapping[str, Any], *, foreground: bool = True) -> bool:
        """Deletes one object; False if it did not exist. Foreground (the default) keeps the object
        until its dependents are gone; an object without dependents is better deleted in the
        background: the garbage collector learns a new CRD's kind only at its next resync (up to
        30 s), and a foreground-deleted custom object waits that long."""
        try:
            await self.request("DELETE", object_path(doc),
                               {"propagationPolicy": "Foreground" if foreground else "Background"})
        except errors.NotFoundError:
            return False
        return True

    async def get(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """The object described by ``doc`` as the cluster has it, or None."""
        try:
            found: dict[str, Any] = await self.request("GET", object_path(doc))
        except errors.NotFoundError:
            return None
        return found

    async def exists(self, doc: Mapping[str, Any]) -> bool:
        return await self.get(doc) is not None

    # Discovery of what the tunnel must route.

    async def service_cidr(self) -> str:
        """The Service range, from the API server's answer to a Service with an impossible
        clusterIP (dry run: nothing is created). Works on every Kubernetes version."""
        probe = {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "gefyra-cidr-probe", "namespace": "default"},
                 "spec": {"clusterIP": "1.1.1.1", "ports": [{"port": 443}]}}
        try:
            await request(self.api, "POST", "/api/v1/namespaces/default/services", probe, query=[("dryRun", "All")])
        except ApiException as exc:
            match = re.search(r"valid IPs is ([0-9a-f.:/]+)", _body(exc))
            if match:
                return match.group(1)
            raise translate(exc, "the service range probe") from exc
        raise errors.GefyraError("cannot find the cluster's Service range", "pass --service-cidr")

    async def pod_cidrs(self) -> list[str]:
        async with self.calling("listing nodes"):
            nodes = await client.CoreV1Api(self.api).list_node()
        cidrs: set[str] = set()
        for node in nodes.items:
            cidrs.update(node.spec.pod_cidrs or ([node.spec.pod_cidr] if node.spec.pod_cidr else []))
        return sorted(c for c in cidrs if ipaddress.ip_network(c).version == 4)

    async def cluster_dns_ip(self) -> str:
        async with self.calling("reading kube-system/kube-dns"):
            service = await client.CoreV1Api(self.api).read_namespaced_service("kube-dns", "kube-system")
        return str(service.spec.cluster_ip)

    async def namespace_exists(self, name: str) -> bool:
        return await self.exists({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
