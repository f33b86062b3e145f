"""HTTPS personal bridges, the pure parts: the certificate's checks, its copy and the operator's
check of it, the router's TLS configuration, and the sealed delivery of the files to a router pod."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from typing import Any

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from gefyra import errors
from gefyra.core.model import tls
from gefyra.core.model.crd import API_VERSION, parse_bridge, tls_copy_body
from gefyra.core.model.requests import BridgeRequest
from gefyra.core.model.routing import Forward, Match, Route
from gefyra.core.spi.interceptor import InvalidRoute
from gefyra.plugins.interceptor_nginx import router as router_module
from gefyra.plugins.interceptor_nginx import sealing
from gefyra.plugins.interceptor_nginx.board import ConfigBoard
from gefyra.plugins.interceptor_nginx.routing import Listener, router_config, tls_files

NOW = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _certificate(key: ec.EllipticCurvePrivateKey, issuer: str = "", days: int = 1) -> bytes:
    """A certificate for "web" with ``key``, signed by itself (no ``issuer``) or named as issued by one."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")])
    issued_by = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]) if issuer else name
    built = (x509.CertificateBuilder().subject_name(name).issuer_name(issued_by).public_key(key.public_key())
             .serial_number(1).not_valid_before(NOW - datetime.timedelta(days=1))
             .not_valid_after(NOW + datetime.timedelta(days=days)).sign(key, hashes.SHA256()))
    return built.public_bytes(serialization.Encoding.PEM)


KEY = ec.generate_private_key(ec.SECP256R1())
SELF_SIGNED = _certificate(KEY)


def test_a_self_signed_certificate_is_its_own_trust_and_a_good_one_has_no_problem() -> None:
    assert tls.trusted_for(SELF_SIGNED, b"") == SELF_SIGNED
    assert tls.problem(SELF_SIGNED, _pem_key(KEY), SELF_SIGNED, verify=True, now=NOW) == ""


@pytest.mark.parametrize(("certificate", "key", "trusted", "verify", "said"), [
    (b"", _pem_key(KEY), b"", True, "it has no certificate (tls.crt)"),
    (SELF_SIGNED, b"", b"", True, "it has no private key (tls.key)"),
    (b"not a certificate", _pem_key(KEY), b"", True, "tls.crt is not a PEM certificate"),
    (SELF_SIGNED, b"-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n", b"", True, "is not an unencrypted PEM"),
    (SELF_SIGNED, _pem_key(ec.generate_private_key(ec.SECP256R1())), SELF_SIGNED, True, "does not belong to its certificate"),
    (_certificate(KEY, days=-1), _pem_key(KEY), SELF_SIGNED, True, "not now"),
    # issued by a CA that the Secret does not name: nothing to verify the workload against ...
    (_certificate(KEY, issuer="some CA"), _pem_key(KEY), b"", True, "it has no CA bundle (ca.crt)"),
    # ... unless verification is off
    (_certificate(KEY, issuer="some CA"), _pem_key(KEY), b"", False, ""),
    (SELF_SIGNED, _pem_key(KEY), b"junk", True, "ca.crt is not a PEM certificate bundle"),
])
def test_what_is_wrong_with_a_certificate_is_said(certificate: bytes, key: bytes, trusted: bytes, verify: bool,
                                                  said: str) -> None:
    found = tls.problem(certificate, key, tls.trusted_for(certificate, trusted), verify, now=NOW)
    assert (said in found) if said else found == ""


def test_a_secrets_values_are_read_and_bad_ones_refused() -> None:
    data = {"tls.crt": base64.b64encode(SELF_SIGNED).decode(), "tls.key": base64.b64encode(b"k").decode()}
    assert tls.from_secret({"data": data}, "Secret s") == (SELF_SIGNED, b"k", b"")
    with pytest.raises(ValueError, match="Secret s: tls.key is not base64"):
        tls.from_secret({"data": {"tls.key": "%%%"}}, "Secret s")
    with pytest.raises(ValueError, match="at most 64 KiB"):
        tls.from_secret({"data": {"tls.crt": "A" * 100_000}}, "Secret s")


def test_the_copy_belongs_to_its_bridge_and_owner_and_the_operator_checks_both() -> None:
    material = tls.TlsMaterial(SELF_SIGNED, _pem_key(KEY), SELF_SIGNED)
    assert "BEGIN" not in repr(material)  # never in a log line
    copy = tls_copy_body("b1-tls-0a", material, bridge="b1", bridge_uid="u1", owner="alice", client="c1")
    assert copy["type"] == "gefyra.dev/tls" and copy["metadata"]["namespace"] == "gefyra"
    assert copy["metadata"]["ownerReferences"] == [{"apiVersion": API_VERSION, "kind": "GefyraBridge",
                                                    "name": "b1", "uid": "u1"}]
    assert tls.from_secret(copy, "copy") == (material.certificate, material.key, material.trusted)
    assert tls.owned_copy_problem(copy, "u1", "alice") == ""
    assert tls.owned_copy_problem(copy, "u2", "alice") == "it does not belong to this bridge"
    assert tls.owned_copy_problem(copy, "u1", "bob") == "it was not made by the bridge's owner"
    assert tls.owned_copy_problem({**copy, "type": "Opaque"}, "u1", "alice") == "it is not of type gefyra.dev/tls"


def _bridge(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "b1", "uid": "u1"}, "spec": {
        "client": "c1", "owner": "alice", "localContainer": "l",
        "target": {"namespace": "shop", "kind": "deployment", "name": "web", "container": "server"},
        "ports": [{"remote": 8443, "local": 8443}], **spec}}


def test_the_bridge_object_names_its_copy() -> None:
    personal = {"match": [{"kind": "header-exact", "header": "x-dev", "value": "a"}]}
    found = parse_bridge(_bridge({**personal, "tls": {"secret": "b1-tls-0a", "insecureSkipVerify": True}}))
    assert (found.problem, found.uid, found.spec.tls_secret, found.spec.tls_verify) == (None, "u1", "b1-tls-0a", False)
    assert parse_bridge(_bridge({**personal, "tls": {"secret": "b1-tls-0a"}})).spec.tls_verify is True
    assert parse_bridge(_bridge({**personal, "tls": {"secret": "../x"}})).problem == \
        "spec.tls.secret is not the name of a Secret"
    assert parse_bridge(_bridge({"tls": {"secret": "b1-tls-0a"}})).problem == \
        "spec.tls: only personal bridges and mirrors end TLS"


def test_a_global_bridge_takes_no_certificate() -> None:
    with pytest.raises(errors.UsageError, match="only personal bridges and mirrors end TLS"):
        BridgeRequest(local="l", target="deploy/web", ports={8443: 8443}, namespace="shop", tls_secret="web-tls").validate()


def test_the_router_ends_tls_verifies_the_pods_and_not_the_developers() -> None:
    personal = (((Match("header-exact", "a", "x-dev"),), "10.0.0.9:20001"),)
    listener = Listener(8443, "tcp", ("10.0.0.5:8443",), personal=personal, tls=tls_files(8443))
    http = router_config("r1", [listener])[1]
    server = http[http.index("server {"):]
    assert "listen 8443 ssl;\n    http2 on;" in server
    assert 'ssl_certificate "tls/8443.crt";\n    ssl_certificate_key "tls/8443.key";' in server
    pods, developers = server.split("location @gefyra_developer {")
    developers, plain = developers.split("location @gefyra_plain {")
    assert "proxy_pass https://gefyra_8443_orig;" in pods and "proxy_ssl_verify on;" in pods
    assert 'proxy_ssl_trusted_certificate "tls/8443.ca";' in pods and "proxy_ssl_name $host;" in pods
    assert "proxy_pass https://$gefyra_8443_upstream;" in developers and "verify" not in developers
    # the probe comes as plain HTTP (error_page 497); any other plain request is refused
    assert "error_page 497 = @gefyra_plain;" in server and "X-Gefyra-Router" in plain and "return 400;" in plain
    unverified = router_config("r1", [Listener(8443, "tcp", ("10.0.0.5:8443",), personal=personal,
                                               tls=dataclasses.replace(tls_files(8443), verify=False))])[1]
    assert "proxy_ssl_verify on" not in unverified
    grpc = router_config("r1", [Listener(8443, "tcp", ("10.0.0.5:8443",), personal=personal, http2=True,
                                         tls=tls_files(8443))])[1]
    assert "grpc_pass grpcs://gefyra_8443_orig;" in grpc and "grpc_ssl_verify on;" in grpc


def test_the_plan_takes_the_certificate_of_the_first_bridge_and_refuses_https_without_one() -> None:
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "server", "ports": [{"containerPort": 8443}]}]}}
    service = {"metadata": {"name": "web", "namespace": "shop"},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}
    material = tls.TlsMaterial(b"CERT", b"KEY", b"CA", verify=True, version="u/1")
    route = Route("a", "server", (Forward(8443, "10.0.0.9", 20001),), (Match("header-exact", "a", "x-dev"),))
    with pytest.raises(InvalidRoute, match="port 8443 speaks HTTPS .* name its Secret with --tls-secret"):
        router_module.plan("r1", [route], template, [service], [], "shop")
    layout = router_module.plan("r1", [dataclasses.replace(route, tls=material)], template, [service], [], "shop")
    assert layout.listeners[0].tls == tls_files(8443)
    assert layout.files == {"tls/8443.crt": b"CERT", "tls/8443.key": b"KEY", "tls/8443.ca": b"CA"}
    assert layout.files_version == "8443:u/1:True"


def test_files_reach_a_router_pod_only_sealed_to_its_own_key() -> None:
    agent = X25519PrivateKey.generate()
    public = base64.urlsafe_b64encode(agent.public_key().public_bytes(*sealing._RAW)).decode().rstrip("=")
    board = ConfigBoard()
    board.want(("10.0.0.5", ""), "v1", json.dumps({"version": "v1", "stream": "", "http": ""}).encode(),
               {"tls/8443.key": b"-----BEGIN PRIVATE KEY----- secret"})

    async def ask(key: str) -> Any:
        return await board.answer("10.0.0.5", "", "", lambda: None, key)

    refused = anyio.run(ask, "")
    assert refused.status == 400  # an agent that sends no key gets no key
    answer = anyio.run(ask, public)
    assert answer.status == 200 and b"secret" not in answer.body
    sealed = json.loads(answer.body)["sealed"]["tls/8443.key"]
    assert sealing.open_sealed(agent, "tls/8443.key", sealed) == b"-----BEGIN PRIVATE KEY----- secret"
    with pytest.raises(Exception):  # noqa: B017,PT011 - bound to its name: it cannot pass for another file
        sealing.open_sealed(agent, "tls/8443.crt", sealed)
    with pytest.raises(Exception):  # noqa: B017,PT011 - nor be opened with another key
        sealing.open_sealed(X25519PrivateKey.generate(), "tls/8443.key", sealed)
    assert sealing.public_key("not base64!") is None and sealing.public_key(public) is not None
