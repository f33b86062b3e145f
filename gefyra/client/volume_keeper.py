"""The keeper of a local container's copies of its workload's volumes (`run --volumes-from`): a
process on this machine that reads the volumes again every few seconds and writes what changed, as
the kubelet keeps a pod's ConfigMap and Secret volumes in step. It ends when its directory is gone
(`rm`, `down`), or on SIGTERM. It reads the cluster with the user's kubeconfig, as `run` did, so
no credential is copied anywhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import structlog

from gefyra.client import volumes
from gefyra.core.kube.cluster import Cluster
from gefyra.core.model.settings import Settings

log = structlog.get_logger(__name__)

#: Seconds between two readings.
_INTERVAL = 2.0


async def _keep(base: Path) -> None:
    while (config := volumes.read_keeper_config(base)) is not None:
        try:
            async with Cluster(Settings(kubeconfig=config.kubeconfig, context=config.context)) as cluster:
                while volumes.read_keeper_config(base) == config:
                    found = await volumes.workload_volumes(cluster, config.namespace, config.ref)
                    for name, files in found.files.items():
                        target = volumes.volume_directory(base.name, name)
                        if target.is_dir() and volumes.write(target, files):
                            log.info("volume changed in the cluster: written again", volume=name)
                    await anyio.sleep(_INTERVAL)
        except Exception as exc:  # noqa: BLE001 - the keeper outlives a failed reading (the API restarting, say)
            log.warning("reading the volumes failed; trying again", why=repr(exc)[:300])
            await anyio.sleep(_INTERVAL)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gefyra-volume-keeper", description=__doc__.splitlines()[0])
    parser.add_argument("--directory", type=Path, required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    anyio.run(_keep, args.directory)


if __name__ == "__main__":
    main()
