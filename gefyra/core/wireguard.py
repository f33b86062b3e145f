"""WireGuard keys and configuration text (the tunnel between cargo and stowaway)."""

from __future__ import annotations

import base64
import dataclasses

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat


@dataclasses.dataclass(frozen=True)
class KeyPair:
    private: str
    public: str

    def __repr__(self) -> str:  # never print the private key
        return f"KeyPair(public={self.public!r})"


def generate_keypair() -> KeyPair:
    key = X25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KeyPair(base64.b64encode(private).decode(), base64.b64encode(public).decode())


def public_key_of(private: str) -> str:
    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private))
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def client_config(private_key: str, server_public_key: str, endpoint: str, allowed_ips: list[str]) -> str:
    """The ``wg setconf`` file of a client: one peer, the server, for the given ranges."""
    return (
        "[Interface]\n"
        f"PrivateKey = {private_key}\n\n"
        "[Peer]\n"
        f"PublicKey = {server_public_key}\n"
        f"Endpoint = {endpoint}\n"
        f"AllowedIPs = {', '.join(allowed_ips)}\n"
        "PersistentKeepalive = 5\n"  # also the operator's sign that the client lives
    )
