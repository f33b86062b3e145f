"""The DNS backend interface: the DNS server that runs in the tunnel's local end.

It answers the cluster's names like the cluster DNS does (through the tunnel) and forwards every
other name to the resolver the local end got from the container engine. Chosen by the ``gefyra_dns`` hook.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class DnsSetup:
    """How the local end starts the DNS server: its files (name -> content, put into its configuration
    directory before it starts) and the command that serves DNS on port 53 with them."""

    files: Mapping[str, bytes]
    command: tuple[str, ...]


class Dns(abc.ABC):
    """A DNS server for the tunnel's local end. Its program must exist in the tunnel's local-end image."""

    #: Name shown by ``status``.
    name: str = "?"

    @abc.abstractmethod
    def setup(self, config_dir: str, cluster_dns_ip: str, cluster_domain: str) -> DnsSetup:
        """The files and the command for a DNS server whose files live in ``config_dir``, that sends
        names under ``cluster_domain`` (and reverse lookups) to ``cluster_dns_ip``."""
