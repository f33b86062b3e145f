"""Status conditions, as Kubernetes objects carry them (``status.conditions``): the operator sets
them on gefyra's objects, the client waits on them."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any, Final

#: The condition types of a GefyraBridge.
READY: Final = "Ready"  # every live pod of the target forwards to the client
INVALID: Final = "Invalid"  # the bridge cannot be made; the reason is in the message
RESTORING: Final = "Restoring"  # the bridge is going away; pods get their containers back
RESTORED: Final = "Restored"  # every pod runs its own container again
#: The reason of a False Ready condition that waiting will not change (the message says why).
FAILING: Final = "Failing"
#: The reason of a False Ready condition while the bridge's client is silent (a laptop asleep): the
#: workload answers meanwhile, and the bridge takes over again when the client speaks.
CLIENT_SILENT: Final = "ClientSilent"


@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition of an object's status."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""

    @classmethod
    def of(cls, data: Any) -> Condition | None:
        """From its JSON; None unless it has a type and a status (read back: untrusted)."""
        if not isinstance(data, dict) or not isinstance(data.get("type"), str) or not isinstance(data.get("status"), str):
            return None
        text = {k: v if isinstance(v := data.get(k), str) else "" for k in ("reason", "message", "lastTransitionTime")}
        return cls(data["type"], data["status"], text["reason"], text["message"], text["lastTransitionTime"])

    def to_json(self) -> dict[str, str]:
        found = {"type": self.type, "status": self.status, "reason": self.reason, "message": self.message}
        return found | ({"lastTransitionTime": self.last_transition_time} if self.last_transition_time else {})


def parse_conditions(value: Any) -> tuple[Condition, ...]:
    return tuple(c for c in (Condition.of(item) for item in (value if isinstance(value, list) else [])) if c)


def true_condition(conditions: Sequence[Condition], kind: str) -> Condition | None:
    """The condition ``kind`` if it is True, else None."""
    return next((c for c in conditions if c.type == kind and c.status == "True"), None)


def with_condition(current: Sequence[Condition], kind: str, status: bool, reason: str,
                   message: str = "") -> tuple[Condition, ...]:
    """``current`` with condition ``kind`` set; its transition time changes only with its status."""
    value = "True" if status else "False"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result, found = [], False
    for c in current:
        if c.type == kind:
            found = True
            when = c.last_transition_time or now if c.status == value else now
            c = Condition(kind, value, reason, message, when)
        result.append(c)
    if not found:
        result.append(Condition(kind, value, reason, message, now))
    return tuple(result)
