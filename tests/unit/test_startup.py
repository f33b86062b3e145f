"""The CLI's start: aiohttp's default TLS contexts are made without parsing the CA bundle where
the hashed CA directory holds the same CAs, and they still verify through that directory."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: In a fresh interpreter: the CLI's import of aiohttp, then a TLS handshake with a server whose
#: certificate the test's CA signed, through aiohttp's verified default context.
_PROBE = """
import os, socket, ssl, sys, threading
before = os.environ.get("SSL_CERT_FILE")
import gefyra.cli
gefyra.cli._import_aiohttp_without_ca_bundle()
from aiohttp import connector
assert os.environ.get("SSL_CERT_FILE") == before, "the environment changed"
print(connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"])  # before any verification
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.create_server(("127.0.0.1", 0))
def serve():
    conn, _ = listener.accept()
    try:
        with server.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")
    except ssl.SSLError:
        pass
threading.Thread(target=serve, daemon=True).start()
with socket.create_connection(listener.getsockname()) as raw:
    with connector._SSL_CONTEXT_VERIFIED.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.recv(2) == b"ok"
"""


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA in a hashed directory (as OpenSSL names it) and a bundle beside it, the same CA in a
    bundle elsewhere, and a server certificate for "localhost" that it signed."""
    root = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def built(subject: str, public: ec.EllipticCurvePublicKey, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name("gefyra test CA"))
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    ca = root / "ca.pem"
    ca.write_bytes(_pem(built("gefyra test CA", ca_key.public_key(), True)))
    hashed = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca)], capture_output=True, text=True,
                            check=True).stdout.strip()
    directory = root / "certs"
    directory.mkdir()
    (directory / f"{hashed}.0").write_bytes(ca.read_bytes())
    (directory / "ca-certificates.crt").write_bytes(ca.read_bytes())
    (root / "server.pem").write_bytes(_pem(built("localhost", key.public_key(), False)))
    (root / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return {"root": root, "directory": directory}


def _probe(pki: dict[str, Path], bundle: Path | None) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    env["SSL_CERT_DIR"] = str(pki["directory"])
    if bundle is not None:
        env["SSL_CERT_FILE"] = str(bundle)
    result = subprocess.run([sys.executable, "-c", _PROBE, str(pki["root"] / "server.pem"), str(pki["root"] / "server.key")],
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout)  # the CAs parsed up front


@pytest.mark.parametrize("bundle", [None, "certs/ca-certificates.crt"])
def test_without_the_bundle_the_directory_still_verifies(pki: dict[str, Path], bundle: str | None) -> None:
    """No bundle chosen, or the one kept in the hashed directory: no CA parsed up front (0 in the
    store), and the handshake still verifies, the CA found in the directory when needed."""
    assert _probe(pki, None if bundle is None else pki["root"] / bundle) == 0


def test_a_bundle_of_the_users_own_is_loaded_as_before(pki: dict[str, Path]) -> None:
    assert _probe(pki, pki["root"] / "ca.pem") == 1
