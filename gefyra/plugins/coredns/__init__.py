"""Built-in plugin: cargo's DNS server is CoreDNS. Cluster names (and reverse lookups) go through
the tunnel to the cluster's DNS; every other name goes to the resolver cargo got from the engine."""

from __future__ import annotations

import ipaddress

from gefyra import errors, hookimpl
from gefyra.core.model import validation
from gefyra.core.model.settings import Settings
from gefyra.core.spi.dns import Dns, DnsSetup


def corefile(cluster_dns_ip: str, cluster_domain: str) -> str:
    """The Corefile; both values are checked, so nothing else can enter the configuration."""
    if not validation.is_dns_subdomain(cluster_domain):
        raise errors.UsageError(f"{cluster_domain!r} is not a DNS domain", "pass the cluster's domain, e.g. cluster.local")
    try:
        address = ipaddress.ip_address(cluster_dns_ip)
    except ValueError as exc:
        raise errors.UsageError(f"{cluster_dns_ip!r} is not the address of a DNS server") from exc
    return (
        f"{cluster_domain}:53 in-addr.arpa:53 {{\n"
        f"    forward . {address}\n"
        "    cache 5\n"
        "}\n"
        ".:53 {\n"
        "    forward . /etc/resolv.conf\n"
        "    cache 30\n"
        "}\n"
    )


class CoreDns(Dns):
    name = "coredns"

    def setup(self, config_dir: str, cluster_dns_ip: str, cluster_domain: str) -> DnsSetup:
        return DnsSetup(files={"Corefile": corefile(cluster_dns_ip, cluster_domain).encode()},
                        command=("coredns", "-conf", f"{config_dir}/Corefile"))


@hookimpl(trylast=True)
def gefyra_dns(settings: Settings) -> Dns | None:
    return CoreDns()
