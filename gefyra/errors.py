"""Errors that reach the user: each says what failed, why, and what to do, in one line.

    GefyraError                   exit 1
    ├── UsageError                 exit 2   bad input: unknown workload, malformed flag
    ├── ConfigError                exit 3   kubeconfig or context missing or wrong
    │   └── ForbiddenError         exit 3   the cluster refuses these credentials a right
    ├── ClusterUnreachableError    exit 4   the API server does not answer
    ├── EngineUnavailableError     exit 5   no Docker/Podman to talk to
    ├── NotConnectedError          exit 6   `run` or `bridge` before `up`
    ├── ConflictError              exit 7   a name or port is already in use
    ├── NotFoundError              exit 8   image, namespace, workload or container missing
    └── ReadinessTimeoutError      exit 9   something did not become ready in time

Backend errors (aiodocker's DockerError, kubernetes_asyncio's ApiException) are translated into
these at the plugin edge with ``raise ... from exc``; a traceback never reaches the user.
"""

from __future__ import annotations


class GefyraError(Exception):
    """Base of all user-facing errors. ``str()`` is the one line shown to the user."""

    exit_code = 1

    def __init__(self, what: str, hint: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.what}; {self.hint}" if self.hint else self.what


class UsageError(GefyraError):
    exit_code = 2


class ConfigError(GefyraError):
    exit_code = 3


class ForbiddenError(ConfigError):
    pass


class ClusterUnreachableError(GefyraError):
    exit_code = 4


class EngineUnavailableError(GefyraError):
    exit_code = 5


class NotConnectedError(GefyraError):
    exit_code = 6


class ConflictError(GefyraError):
    exit_code = 7


class NotFoundError(GefyraError):
    exit_code = 8


class ReadinessTimeoutError(GefyraError):
    exit_code = 9
