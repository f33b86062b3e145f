"""The GefyraBridge objects as the client finds them (used by `bridge`, `unbridge`, `up`, `down`,
`list` and `status`)."""

from __future__ import annotations

from gefyra.core.engine.orchestrator import OperationContext
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path
from gefyra.core.model.crd import GefyraBridge, parse_bridge
from gefyra.core.model.names import BRIDGES, GEFYRA_NAMESPACE

_OPERATOR_LOGS = "check the operator's log: `kubectl -n gefyra logs deploy/{deployment} -c operator`"


def bridge_path(name: str = "") -> str:
    """A GefyraBridge (or, without a name, their collection)."""
    return path(BRIDGES, GEFYRA_NAMESPACE, name)


async def list_bridges(cluster: Cluster, client_id: str | None = None) -> list[GefyraBridge]:
    """The bridges (of ``client_id`` only, if given); none where gefyra is not installed."""
    found = [parse_bridge(b) for b in await cluster.objects(bridge_path())]
    return [b for b in found if client_id is None or b.spec.client == client_id]


def operator_logs(ctx: OperationContext) -> str:
    """Where to look when the operator does not do its part (a hint for an error)."""
    return _OPERATOR_LOGS.format(deployment=ctx.orchestrator.tunnel().server_side(ctx.settings).deployment)
