"""Files that only one router pod can read: a TLS key travels from the operator to a router's agent
over the cluster's network inside the configuration's answer, which is plain HTTP. So it travels
sealed to a key pair that the agent makes when it starts (its private half never leaves the pod's
memory), and the agent sends the public half with every request for its configuration.

The box: X25519 with a fresh key pair per file, HKDF-SHA256 over the shared secret (salt: both
public keys; info: :data:`_INFO`), AES-256-GCM with a random nonce, the file's name as associated
data (a box cannot be moved to another file). Sealed: ``ephemeral public key (32) | nonce (12) |
ciphertext``, base64. images/carrier/sealing.go opens it."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"gefyra carrier files v1"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def public_key(text: str) -> bytes | None:
    """An agent's public key as it sends it (base64 of 32 bytes, URL-safe or not), or None."""
    try:
        raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_").encode("ascii") + b"==")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    return raw if len(raw) == 32 else None


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO).derive(shared)


def seal(recipient: bytes, name: str, data: bytes) -> str:
    """``data`` (the file ``name``) sealed to the agent whose public key is ``recipient``."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(*_RAW)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    nonce = os.urandom(12)
    sealed = AESGCM(_key(shared, ephemeral_public, recipient)).encrypt(nonce, data, name.encode())
    return base64.b64encode(ephemeral_public + nonce + sealed).decode("ascii")


def open_sealed(private: X25519PrivateKey, name: str, text: str) -> bytes:
    """What :func:`seal` sealed (the agent's side, in Python: for tests and stand-ins)."""
    raw = base64.b64decode(text)
    ephemeral, nonce, sealed = raw[:32], raw[32:44], raw[44:]
    recipient = private.public_key().public_bytes(*_RAW)
    shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
    return AESGCM(_key(shared, ephemeral, recipient)).decrypt(nonce, sealed, name.encode())
