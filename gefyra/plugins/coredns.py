"""Built-in plugin: cargo's DNS server is CoreDNS; cluster names go through the tunnel to the
cluster's DNS, everything else to the resolver cargo got from the container engine."""

from __future__ import annotations

from gefyra import hookimpl
from gefyra.core.config import Settings


@hookimpl(trylast=True)
def gefyra_dns_config(settings: Settings, cluster_dns_ip: str, cluster_domain: str) -> str | None:
    return (
        f"{cluster_domain}:53 in-addr.arpa:53 {{\n"
        f"    forward . {cluster_dns_ip}\n"
        "    cache 5\n"
        "}\n"
        ".:53 {\n"
        "    forward . /etc/resolv.conf\n"
        "    cache 30\n"
        "}\n"
    )
