"""How long the operator waits before it tries again what failed (a round, a target)."""

from __future__ import annotations

#: The first wait, in seconds; each failure in a row doubles it, up to MAX.
FIRST = 1.0
MAX = 30.0


def backoff(failures: int) -> float:
    """Seconds before the next try after ``failures`` failures in a row (at least one)."""
    return float(min(FIRST * 2 ** min(max(failures, 1) - 1, 16), MAX))
