"""One operation at a time per client on this machine: two `up` started at once would otherwise
each make a key pair and undo what the other registered. A lock file per client id in the user's
config directory, held (flock) for the whole operation; the lock goes with the process, so a
killed `up` never leaves it behind."""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from gefyra import errors
from gefyra.core.model.identity import config_dir

#: Seconds between two tries while another operation of the same client runs.
_POLL = 0.1


@asynccontextmanager
async def client_lock(client_id: str, timeout: float) -> AsyncIterator[None]:
    """Waits (up to ``timeout`` seconds) until no other gefyra operation of ``client_id`` runs on
    this machine, and holds that until the block ends."""
    directory = config_dir() / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{client_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await anyio.sleep(_POLL)
    except TimeoutError as exc:
        os.close(fd)
        raise errors.ConflictError(f"another gefyra operation of client {client_id} is still running",
                                   "wait for it to end, or pass another --client-id") from exc
    try:
        yield
    finally:
        os.close(fd)  # releases the lock
