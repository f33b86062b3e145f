"""An HTTPS port's certificate, as a personal bridge brings it to the interceptor: the workload's
certificate chain and key (from a Secret of type ``kubernetes.io/tls``, as cert-manager and
``kubectl create secret tls`` make them) and the CAs its certificate chains to, checked before a
bridge is made (by the client) and again where it is used (by the operator: read back from the
cluster, it is untrusted input).

The client carries it into namespace gefyra as a Secret of :data:`SECRET_TYPE`
(:func:`gefyra.core.model.crd.tls_copy_body`), owned by the bridge (so that it goes with it) and
by its user (:data:`ANNOTATION_OWNER`, which an admission policy checks); only the operator reads
it there."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, Final

#: The keys of a ``kubernetes.io/tls`` Secret, and the CA bundle that cert-manager adds.
CERTIFICATE: Final = "tls.crt"
KEY: Final = "tls.key"
TRUSTED: Final = "ca.crt"
#: The type of the copies in namespace gefyra (nothing else mounts or reads such a Secret).
SECRET_TYPE: Final = "gefyra.dev/tls"
#: On a copy: the Kubernetes user who made it (the ownership policy admits only oneself).
ANNOTATION_OWNER: Final = "gefyra.dev/owner"
#: The most a Secret's value may hold (a chain of a few certificates is a few KiB).
MAX_BYTES: Final = 64 * 1024


@dataclasses.dataclass(frozen=True)
class TlsMaterial:
    """PEM texts: the certificate chain, its key, and the CAs that the workload's certificate must
    chain to (where the router verifies it)."""

    certificate: bytes = dataclasses.field(repr=False)
    key: bytes = dataclasses.field(repr=False)
    trusted: bytes = dataclasses.field(repr=False)
    #: The router checks the workload's certificate (chain and name) when it speaks TLS to it.
    verify: bool = True
    #: Changes whenever the material does (the copy's uid and resourceVersion), never derived from it.
    version: str = ""


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def from_secret(secret: Mapping[str, Any], what: str) -> tuple[bytes, bytes, bytes]:
    """(certificate, key, CA bundle) of a Secret as read from the cluster (b"" for what it lacks);
    ValueError with one line that names ``what`` for values that are not base64 or too large."""
    data = _mapping(secret.get("data"))
    values = []
    for name in (CERTIFICATE, KEY, TRUSTED):
        text = data.get(name, "")
        if not isinstance(text, str) or len(text) > MAX_BYTES * 4 // 3 + 4:
            raise ValueError(f"{what}: {name} is not a value of at most {MAX_BYTES // 1024} KiB")
        try:
            values.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise ValueError(f"{what}: {name} is not base64") from None
    return values[0], values[1], values[2]


def problem(certificate: bytes, key: bytes, trusted: bytes, verify: bool,
            now: datetime.datetime | None = None) -> str:
    """What is wrong with this material for serving HTTPS and re-encrypting towards the workload,
    as the end of a sentence ("" if nothing)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not certificate:
        return f"it has no certificate ({CERTIFICATE})"
    if not key:
        return f"it has no private key ({KEY})"
    try:
        chain = x509.load_pem_x509_certificates(certificate)
    except ValueError:
        return f"{CERTIFICATE} is not a PEM certificate"
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        return f"{KEY} is not an unencrypted PEM private key"
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    leaf = chain[0]
    if private.public_key().public_bytes(*raw) != leaf.public_key().public_bytes(*raw):
        return f"its key ({KEY}) does not belong to its certificate ({CERTIFICATE})"
    now = now or datetime.datetime.now(datetime.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        return (f"its certificate is valid from {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now")
    if verify and not trusted:
        return (f"it has no CA bundle ({TRUSTED}) to check the workload's certificate against, and its "
                "certificate is not self-signed")
    if trusted:
        try:
            x509.load_pem_x509_certificates(trusted)
        except ValueError:
            return f"{TRUSTED} is not a PEM certificate bundle"
    return ""


def trusted_for(certificate: bytes, trusted: bytes) -> bytes:
    """The CAs to verify the workload against: the Secret's bundle, else a self-signed certificate
    itself (b"" when there is neither)."""
    if trusted:
        return trusted
    from cryptography import x509

    try:
        leaf = x509.load_pem_x509_certificates(certificate)[0]
    except (ValueError, IndexError):
        return b""
    return certificate if leaf.issuer == leaf.subject else b""


def owned_copy_problem(secret: Mapping[str, Any], bridge_uid: str, owner: str) -> str:
    """Why the Secret (read back from namespace gefyra) is not the copy that the bridge with this
    uid and owner brought ("" if it is)."""
    metadata = _mapping(secret.get("metadata"))
    references = metadata.get("ownerReferences")
    references = references if isinstance(references, list) else []
    annotations = _mapping(metadata.get("annotations"))
    if secret.get("type") != SECRET_TYPE:
        return f"it is not of type {SECRET_TYPE}"
    if not any(isinstance(r, Mapping) and r.get("kind") == "GefyraBridge" and r.get("uid") == bridge_uid
               for r in references):
        return "it does not belong to this bridge"
    if annotations.get(ANNOTATION_OWNER, "") != owner:
        return "it was not made by the bridge's owner"
    return ""
