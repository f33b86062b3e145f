"""Where the tunnel's local end sends its packets: an address of a node (where the server end's UDP NodePort
listens), as reached from a container of the local engine. A pure decision, unit-tested case by
case; `up` hands it what it knows.

1. ``--host`` wins.
2. The engine runs in a VM whose containers reach the cluster's nodes only through the engine's
   gateway to the host (the runtime plugin names it), where the node's port must be published
   (kind's extraPortMappings, k3d's ``-p 31820:31820/udp@server:0``).
3. The NodePort's Service has ``externalTrafficPolicy: Local``: only the nodes that run the server
   end's pod answer on it, so the endpoint is such a node (the pod's node address).
4. minikube (a context named so): the node's address, which the host reaches.
5. The API server's host, when it is a node (it then carries the NodePort too) or when nothing
   is known of the nodes. With the default policy (Cluster) every node serves the NodePort and
   kube-proxy forwards to the node that runs the server end.
6. Else (a loopback address or a forwarded port, as kind and k3d write kubeconfigs; an API
   endpoint that is a load balancer): a node's ExternalIP, else its InternalIP.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any


@dataclasses.dataclass(frozen=True)
class Known:
    """What `up` knows when it chooses."""

    #: The API server's host, as the kubeconfig names it.
    api_host: str
    #: Node addresses, preferred first (ExternalIPs, then InternalIPs), as the cluster side was
    #: told at install; empty when unknown.
    node_addresses: tuple[str, ...] = ()
    #: Where the engine's containers reach the host, when the engine runs in a VM that reaches
    #: nodes only through it (ContainerRuntime.vm_host_gateway); None for an engine on this host.
    vm_gateway: str | None = None
    #: The kubeconfig's context name.
    context: str = ""
    #: The addresses of the nodes that run the server end's pod, when its NodePort is served by
    #: those nodes only (the Service's ``externalTrafficPolicy: Local``); empty when every node
    #: serves it.
    serving_nodes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Choice:
    host: str
    #: Why, for `up`'s progress and `check`.
    why: str


def _loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose(known: Known, given: str | None = None) -> Choice:
    if given:
        return Choice(given, "--host")
    if known.vm_gateway:
        return Choice(known.vm_gateway, "the engine runs in a VM: its containers reach nodes through its host gateway")
    if known.serving_nodes:
        host = known.api_host if known.api_host in known.serving_nodes else known.serving_nodes[0]
        return Choice(host, "externalTrafficPolicy Local: the node that runs the server end")
    if known.context == "minikube" and known.node_addresses:
        return Choice(known.node_addresses[0], "minikube's node")
    if not _loopback(known.api_host) and (not known.node_addresses or known.api_host in known.node_addresses):
        return Choice(known.api_host, "the API server's host is a node" if known.node_addresses
                      else "the API server's host (nodes unknown)")
    if known.node_addresses:
        why = "the API server is reached through a loopback address" if _loopback(known.api_host) \
            else "the API server's host is not a node"
        return Choice(known.node_addresses[0], f"{why}: a node's address")
    return Choice(known.api_host, "the API server's host (nodes unknown)")


def node_addresses(nodes: list[dict[str, Any]]) -> list[str]:
    """Ready nodes' IPv4 ExternalIPs, then their InternalIPs, from Node objects (as JSON)."""
    found: dict[str, list[str]] = {"ExternalIP": [], "InternalIP": []}
    for node in nodes:
        status = node.get("status") or {}
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
            continue
        for address in status.get("addresses") or []:
            try:
                ip = ipaddress.ip_address(str(address.get("address")))
            except ValueError:
                continue
            if ip.version == 4 and address.get("type") in found:
                found[address["type"]].append(str(ip))
    return found["ExternalIP"] + found["InternalIP"]
