"""Router pods that say who they are before the API does.

A router's new pod asks the operator for its configuration as soon as nginx runs; the kubelet
reports the pod's address to the API only at its next look at the pod (up to a second later,
its relist period), and until then the operator, which answers pods by their address, cannot
tell the caller from any other pod. So each router pod runs as ServiceAccount ``gefyra-router``
(no rights at all) with a projected token for the audience ``gefyra.dev/router``, which no API
server accepts for itself, and sends it along. The operator asks the API server whose token it is
(a TokenReview): only if it names one of the router pods whose address the API does not show yet
is the caller's address taken as that pod's, until the API shows it."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from typing import Any

import structlog

from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model.names import GEFYRA_NAMESPACE

log = structlog.get_logger("gefyra.operator")

#: The routers' ServiceAccount (manifests/gefyra.yaml): it has no rights, it only names them.
ACCOUNT = "gefyra-router"
#: The audience of the routers' tokens: the operator's, no API server's.
AUDIENCE = "gefyra.dev/router"
#: Where the token is in a router's container (the kubelet renews it before it expires).
TOKEN_FILE = "/var/run/gefyra-router/token"
_USER = f"system:serviceaccount:{GEFYRA_NAMESPACE}:{ACCOUNT}"
_POD_UID = "authentication.kubernetes.io/pod-uid"
#: A projected token is a JWT of about a kilobyte: anything much longer is not one.
_MAX_TOKEN = 8192
#: Seconds before the same address may have a token reviewed again.
_REVIEW_PAUSE = 1.0


def pod_spec() -> dict[str, Any]:
    """The router pod's part of this: its account (no token mounted the usual way) and the
    projected token (the shortest lifetime the API allows)."""
    return {"serviceAccountName": ACCOUNT, "automountServiceAccountToken": False,
            "volumes": [{"name": "identity", "projected": {"sources": [{"serviceAccountToken": {
                "audience": AUDIENCE, "expirationSeconds": 600, "path": "token"}}]}}]}


def container_spec() -> dict[str, Any]:
    """The router container's part of this: the token's mount, and where carrier finds it."""
    return {"volumeMounts": [{"name": "identity", "mountPath": TOKEN_FILE.rsplit("/", 1)[0], "readOnly": True}],
            "env": [{"name": "GEFYRA_CARRIER_TOKEN", "value": TOKEN_FILE}]}


class Identities:
    """The router pods waiting for the API to show their address, and those that proved theirs."""

    def __init__(self) -> None:
        #: router -> the UIDs of its running pods without an address, in the API or proved.
        self._waiting: dict[str, set[str]] = {}
        #: router -> pod UID -> the address the pod proved it has (while the API shows none).
        self._proved: dict[str, dict[str, str]] = {}
        #: address -> when a token from it was last reviewed.
        self._reviewed: dict[str, float] = {}

    def addresses(self, router: str, pods: Sequence[dict[str, Any]]) -> dict[str, str]:
        """The address of each of the router's running ``pods`` (by UID): the API's, else the one
        the pod proved; those with neither are waited for (:meth:`identify`)."""
        found: dict[str, str] = {}
        proved, kept, waiting = self._proved.get(router, {}), {}, set()
        for pod in pods:
            uid = str(pod["metadata"].get("uid") or "")
            shown = str((pod.get("status") or {}).get("podIP") or "")
            if shown:
                found[uid] = shown
            elif uid in proved:
                found[uid] = kept[uid] = proved[uid]
            elif uid:
                waiting.add(uid)
        self._proved[router], self._waiting[router] = kept, waiting
        return found

    def forget(self, router: str) -> None:
        self._proved.pop(router, None)
        self._waiting.pop(router, None)

    async def identify(self, cluster: Cluster, peer: str, token: str) -> bool:
        """Whether ``token``, from ``peer``, is the token of a router pod that waits for its
        address; if so, ``peer`` is that pod's address from now on (until the API shows one)."""
        if not any(self._waiting.values()) or not token or len(token) > _MAX_TOKEN or not token.isascii() \
                or not _is_ip(peer) or any(peer in proved.values() for proved in self._proved.values()):
            return False
        now = time.monotonic()
        if now - self._reviewed.get(peer, -_REVIEW_PAUSE) < _REVIEW_PAUSE:
            return False
        self._reviewed = {ip: at for ip, at in self._reviewed.items() if now - at < _REVIEW_PAUSE}
        self._reviewed[peer] = now
        review = await cluster.request("POST", path("tokenreviews"), {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": [AUDIENCE]}})
        status = (review or {}).get("status") or {}
        user = status.get("user") or {}
        uids = (user.get("extra") or {}).get(_POD_UID) or []
        if status.get("authenticated") is not True or user.get("username") != _USER \
                or AUDIENCE not in (status.get("audiences") or []) or len(uids) != 1:
            return False
        router = next((r for r, waiting in self._waiting.items() if uids[0] in waiting), None)
        if router is None:
            return False
        self._waiting[router].discard(uids[0])
        self._proved.setdefault(router, {})[uids[0]] = peer
        log.info("router pod proved its address before the API showed it", router=router, pod_ip=peer)
        return True


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
