"""Helper processes on this machine that outlive the command that starts them (the tunnel's relay
through the Kubernetes API, the keeper of `run --volumes-from` copies): started in a session of
their own (a Ctrl-C at the terminal does not reach them), found again by pid, and recognised by
their module in the command line (a pid that the system gave to another process since is not
theirs)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio


def spawn(module: str, arguments: Sequence[str], logfile: Path) -> subprocess.Popen[bytes]:
    """``python -m module arguments``, its output in ``logfile`` (whose directory is made private)."""
    logfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(logfile, "w") as output:
        return subprocess.Popen([sys.executable, "-m", module, *arguments], stdin=subprocess.DEVNULL, stdout=output,
                                stderr=output, start_new_session=True)


def alive(pid: int, module: str) -> bool:
    """The process ``pid`` runs and is one of ``module``."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or module.encode() in cmdline.read_bytes()


async def terminate(pid: int, module: str) -> bool:
    """Ends the process ``pid`` of ``module`` (SIGTERM, after 3 s SIGKILL); False if none ran."""
    if not alive(pid, module):
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(60):
        if not alive(pid, module):
            return True
        await anyio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True
