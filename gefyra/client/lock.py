"""One operation at a time per client on this machine: two `up` started at once would otherwise
each make a key pair and undo what the other registered. A lock file per client id in the user's
config directory, held (flock) for the whole operation; the lock goes with the process, so a
killed `up` never leaves it held, and the file goes with the operation that held it last."""

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


def _same_file(fd: int, path: os.PathLike[str]) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@asynccontextmanager
async def client_lock(client_id: str, timeout: float) -> AsyncIterator[None]:
    """Waits (up to ``timeout`` seconds) until no other gefyra operation of ``client_id`` runs on
    this machine, and holds that until the block ends. The file is removed at the end: whoever
    waited on the removed file takes a new one (so a removal never lets two in at once)."""
    directory = config_dir() / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{client_id}.lock"
    try:
        with anyio.fail_after(timeout):
            while True:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await anyio.sleep(_POLL)
                if _same_file(fd, path):
                    break
                os.close(fd)  # its holder removed it when it was done: lock the file there now
    except TimeoutError as exc:
        os.close(fd)
        raise errors.ConflictError(f"another gefyra operation of client {client_id} is still running",
                                   "wait for it to end, or pass another --client-id") from exc
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # releases the lock
