"""This machine's default client id: the host name (for people reading `kubectl get gfc`) and a
random part kept in the user's config directory, so that two laptops with the same host name and
uid never share a registration."""

from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path

from gefyra.core.model import validation


def config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "gefyra"


def default_client_id() -> str:
    """The id kept in the config directory; made (and kept) on first use. Falls back to a fresh
    random one for this process when the directory cannot be written."""
    path = config_dir() / "client-id"
    try:
        kept = path.read_text().strip()
        if validation.is_dns_label(kept):
            return kept
    except OSError:
        pass
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower()).strip("-")[:40].strip("-") or "client"
    made = f"{host}-{secrets.token_hex(4)}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}")
        temporary.write_text(made + "\n")
        try:
            os.link(temporary, path)  # never replaces: a concurrent first run keeps one id
        except FileExistsError:
            made = path.read_text().strip()
        finally:
            temporary.unlink()
    except OSError:
        pass
    return made
