"""Router pods that prove which pod they are before the API shows their address: only a token that
the API server says belongs to one of the router pods waiting for their address counts, and only
until the API shows the address (a small stand-in for the API server's TokenReview)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.routing import Target
from gefyra.plugins.interceptor_nginx import identity
from gefyra.plugins.interceptor_nginx.identity import Identities
from gefyra.plugins.interceptor_nginx.router import router_deployment

USER = "system:serviceaccount:gefyra:gefyra-router"


class _Reviews:
    """Answers TokenReviews: token -> (username, pod uid, audiences)."""

    def __init__(self, tokens: dict[str, tuple[str, str, list[str]]]) -> None:
        self.tokens = tokens
        self.asked: list[dict[str, Any]] = []

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        assert (method, path) == ("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
        self.asked.append(body)
        found = self.tokens.get(body["spec"]["token"])
        if found is None:
            return {"status": {"authenticated": False}}
        user, uid, audiences = found
        return {"status": {"authenticated": True, "audiences": audiences,
                           "user": {"username": user, "extra": {"authentication.kubernetes.io/pod-uid": [uid]}}}}


def _pod(uid: str, ip: str = "") -> dict[str, Any]:
    return {"metadata": {"uid": uid}, "status": {"podIP": ip} if ip else {}}


def _identify(identities: Identities, reviews: _Reviews, peer: str, token: str) -> bool:
    cluster: Cluster = reviews  # type: ignore[assignment]
    return anyio.run(identities.identify, cluster, peer, token)


def test_a_waiting_router_pod_is_known_by_its_proof_until_the_api_shows_its_address() -> None:
    identities, reviews = Identities(), _Reviews({"tok-a": (USER, "uid-a", [identity.AUDIENCE])})
    assert identities.addresses("r1", [_pod("uid-a"), _pod("uid-b", "10.244.0.7")]) == {"uid-b": "10.244.0.7"}
    assert _identify(identities, reviews, "10.244.0.9", "tok-a")
    assert reviews.asked[0]["spec"]["audiences"] == [identity.AUDIENCE]
    assert identities.addresses("r1", [_pod("uid-a"), _pod("uid-b", "10.244.0.7")]) == \
        {"uid-a": "10.244.0.9", "uid-b": "10.244.0.7"}
    # The API's address wins once it shows one, and the proof is forgotten.
    assert identities.addresses("r1", [_pod("uid-a", "10.244.0.10"), _pod("uid-b", "10.244.0.7")]) == \
        {"uid-a": "10.244.0.10", "uid-b": "10.244.0.7"}
    assert identities.addresses("r1", [_pod("uid-a"), _pod("uid-b", "10.244.0.7")]) == {"uid-b": "10.244.0.7"}


@pytest.mark.parametrize(("token", "peer", "why"), [
    ("tok-other-account", "10.244.0.9", "another ServiceAccount's token"),
    ("tok-api-audience", "10.244.0.9", "a token for the API server, not for the operator"),
    ("tok-other-pod", "10.244.0.9", "a router pod that does not wait for its address"),
    ("no-such-token", "10.244.0.9", "a token the API server does not know"),
    ("tok-a", "not-an-address", "a caller without an IP address"),
    ("tok-\u00e4", "10.244.0.9", "a token that is not ASCII (never sent for review)"),
])
def test_anything_else_proves_nothing(token: str, peer: str, why: str) -> None:
    identities = Identities()
    reviews = _Reviews({"tok-a": (USER, "uid-a", [identity.AUDIENCE]),
                        "tok-\u00e4": (USER, "uid-a", [identity.AUDIENCE]),
                        "tok-other-account": ("system:serviceaccount:gefyra:default", "uid-a", [identity.AUDIENCE]),
                        "tok-api-audience": (USER, "uid-a", ["https://kubernetes.default.svc"]),
                        "tok-other-pod": (USER, "uid-z", [identity.AUDIENCE])})
    identities.addresses("r1", [_pod("uid-a")])
    assert not _identify(identities, reviews, peer, token), why
    assert identities.addresses("r1", [_pod("uid-a")]) == {}


def test_no_review_while_no_router_pod_waits_and_none_twice_a_second_from_one_address() -> None:
    identities, reviews = Identities(), _Reviews({})
    assert not _identify(identities, reviews, "10.244.0.9", "tok")
    assert reviews.asked == []  # nothing waits: a token is not even looked at
    identities.addresses("r1", [_pod("uid-a")])
    assert not _identify(identities, reviews, "10.244.0.9", "tok")
    assert not _identify(identities, reviews, "10.244.0.9", "tok")
    assert len(reviews.asked) == 1


def test_a_router_pod_runs_as_the_router_account_with_a_token_for_the_operator_only() -> None:
    pod = router_deployment("gefyra-router-x", Target("shop", "deployment", "web"), "carrier:1")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == identity.ACCOUNT and pod["automountServiceAccountToken"] is False
    (source,) = pod["volumes"][0]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == identity.AUDIENCE
    (container,) = pod["containers"]
    assert {"name": "GEFYRA_CARRIER_TOKEN", "value": identity.TOKEN_FILE} in container["env"]
    assert container["volumeMounts"][0]["readOnly"] is True
