"""The router mode, the default for every bridge: personal and global ones (in place only where a
bridge asks for it). The target's pods stay exactly as they are, running their own code; what
changes is where the workload's Services lead.

For a target, the operator runs a small Deployment in its own namespace, the router (carrier's
image: nginx and the agent that fetches its configuration, under the restricted Pod Security
profile). Every Service that sends traffic to a bridged port is made to lead to the router:

- bridge: the router runs and has its configuration; an EndpointSlice of gefyra's, with the
  router's pods, joins the Service (kube-proxy now sends new connections to both); then one key
  is added to the Service's selector that no pod carries, so that Kubernetes' own EndpointSlices
  of it empty and only the router is left. No moment without endpoints, no pod restarted.
- the router passes every request that no personal bridge takes, and every other port of those
  Services, to the workload's own pods (their IPs, ready ones, kept current each round).
- unbridge: the key comes off the selector (exactly the Service as it was), Kubernetes' slices
  fill again, and only then is gefyra's slice deleted and the router removed; the router drains
  (a few seconds) before it stops.

Adding or removing one developer's bridge only changes the router's configuration (nginx reloads
without dropping connections). Connections opened before the switch stay where they were opened."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import structlog

from gefyra import errors
from gefyra.core.kube.at_once import at_once
from gefyra.core.kube.cluster import Cluster
from gefyra.core.kube.paths import path, workload_path
from gefyra.core.model.names import GEFYRA_NAMESPACE, LABEL_MANAGED_BY, MANAGED_BY
from gefyra.core.model.routing import Route, RouteState, Target
from gefyra.core.model.validation import is_dns_subdomain
from gefyra.core.model.workload import WORKLOAD_KINDS, Pod
from gefyra.core.spi.interceptor import InvalidRoute
from gefyra.plugins.interceptor_nginx import identity
from gefyra.plugins.interceptor_nginx.board import ConfigBoard
from gefyra.plugins.interceptor_nginx.routing import COPY_RELAY, Listener, router_config, tls_files

log = structlog.get_logger("gefyra.operator")

#: On the router's pods, in gefyra's EndpointSlices and as the key added to a rerouted Service's
#: selector: the router's name.
ROUTER_LABEL = "gefyra.dev/router"
#: On the router Deployment: the target it stands in for.
TARGET_ANNOTATION = "gefyra.dev/target"
#: ``endpointslice.kubernetes.io/managed-by`` of gefyra's slices (Kubernetes' controller leaves
#: slices of other managers alone).
SLICE_MANAGER = "gefyra.dev"
_SERVICE_NAME = "kubernetes.io/service-name"
_MANAGED_SLICE = "endpointslice.kubernetes.io/managed-by"
_SLICES = "discovery.k8s.io/v1"
#: Two routers: one may restart or move while the other carries the traffic.
REPLICAS = 2
#: Seconds a stopping router keeps serving (kube-proxy lets go of it meanwhile) before nginx ends
#: gracefully.
DRAIN_SECONDS = 3


def router_name(target: Target) -> str:
    digest = hashlib.sha256(f"{target.namespace}/{target.kind}/{target.name}".encode()).hexdigest()[:10]
    return f"gefyra-router-{digest}"


def router_deployment(name: str, target: Target, image: str) -> dict[str, Any]:
    labels = {LABEL_MANAGED_BY: MANAGED_BY, ROUTER_LABEL: name}
    token = identity.container_spec()
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": GEFYRA_NAMESPACE, "labels": labels,
                     "annotations": {TARGET_ANNOTATION: f"{target.namespace}/{target.kind}/{target.name}"}},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {ROUTER_LABEL: name}},
            "template": {"metadata": {"labels": labels}, "spec": {
                # No API token: the agent asks the operator's endpoint, it never talks to the API;
                # its one token (audience: the operator) says which pod asks (see .identity).
                **identity.pod_spec(),
                "enableServiceLinks": False,
                "terminationGracePeriodSeconds": DRAIN_SECONDS + 10,
                "securityContext": {
                    "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                    # It listens on the target ports (80 too) without any capability: a sysctl
                    # that Kubernetes counts as safe and Pod Security "restricted" admits.
                    "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                },
                "containers": [{
                    "name": "router", "image": image, "imagePullPolicy": "IfNotPresent",
                    "env": [{"name": "GEFYRA_CARRIER_DRAIN_SECONDS", "value": str(DRAIN_SECONDS)},
                            # mirrors hand their copies to the agent (a Unix socket: nothing outside the pod reaches it)
                            {"name": "GEFYRA_CARRIER_COPIES", "value": COPY_RELAY},
                            *token["env"]],
                    "volumeMounts": token["volumeMounts"],
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                                  "limits": {"cpu": "1", "memory": "128Mi"}},
                }],
            }},
        },
    }


#: Service port ``appProtocol`` values that mean cleartext HTTP/2 (Kubernetes' own name, and the
#: names Istio and gateways use); a port without one counts by its name's prefix, as Istio reads it.
_HTTP2_APP_PROTOCOLS = frozenset({"kubernetes.io/h2c", "h2c", "http2", "grpc", "grpc-web"})
_HTTP2_NAME_PREFIXES = ("h2c", "http2", "grpc")


def _port_says(port: dict[str, Any], app_protocols: frozenset[str], name_prefixes: tuple[str, ...]) -> bool:
    """The Service port's ``appProtocol`` is one of ``app_protocols``; without one, its name is one
    of ``name_prefixes``, alone or followed by ``-``."""
    declared = str(port.get("appProtocol") or "").lower()
    if declared:
        return declared in app_protocols
    name = str(port.get("name") or "").lower()
    return any(name == p or name.startswith(p + "-") for p in name_prefixes)


def speaks_tls(port: dict[str, Any]) -> bool:
    """The Service port says its workload speaks HTTPS there (appProtocol, else a name that starts
    with https)."""
    return _port_says(port, frozenset({"https"}), ("https",))


def speaks_http2(port: dict[str, Any]) -> bool:
    """The Service port says its workload speaks cleartext HTTP/2 (h2c, gRPC) there."""
    return _port_says(port, _HTTP2_APP_PROTOCOLS, _HTTP2_NAME_PREFIXES)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _ready_ip(pod: dict[str, Any]) -> str:
    """The pod's IP if it is Ready and not terminating, else ""."""
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or not status.get("podIP"):
        return ""
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return str(status["podIP"]) if ready else ""


def _target_port(port: dict[str, Any], containers: Sequence[dict[str, Any]]) -> tuple[str, int] | None:
    """(container, number) a Service port sends to on a pod with these containers; the container
    is "" for a number no container declares. None for a name no container declares."""
    target = port.get("targetPort", port.get("port"))
    protocol = port.get("protocol", "TCP")
    for container in containers:
        for declared in container.get("ports") or []:
            if declared.get("protocol", "TCP") != protocol:
                continue
            if target in (declared.get("name"), declared.get("containerPort")):
                return container["name"], int(declared["containerPort"])
    return ("", int(target)) if isinstance(target, int) else None


#: What a round reads for a router's plan: the target's pod template, the namespace's Services
#: and pods.
_Read = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]


@dataclasses.dataclass
class _Plan:
    listeners: list[Listener]
    #: Service name -> its gefyra EndpointSlice's ports.
    services: dict[str, list[dict[str, Any]]]
    #: bridge -> the Services it routes.
    routed: dict[str, list[str]]
    #: The files that the listeners name (TLS certificates and keys), by name; and what changes
    #: whenever one of them does.
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    files_version: str = ""


def _takers(routed: dict[tuple[str, int], list[Route]], port: tuple[str, int] | None) -> list[Route]:
    """The routes of a Service port that leads to (container, number); a number no container
    declares ("" as the container) is any container's (the pod's containers share its ports)."""
    if port is None:
        return []
    if port[0]:
        return routed.get(port, [])
    return [r for (_, number), routes in routed.items() if number == port[1] for r in routes]


def _original_selector(service: dict[str, Any], router: str) -> dict[str, str]:
    selector = dict((service.get("spec") or {}).get("selector") or {})
    if selector.get(ROUTER_LABEL) == router:
        del selector[ROUTER_LABEL]
    return selector


def plan(router: str, routes: Sequence[Route], template: dict[str, Any], services: Sequence[dict[str, Any]],
         pods: Sequence[dict[str, Any]], namespace: str) -> _Plan:
    """What the router listens on and which Services lead to it (pure: the cluster's objects as
    read). ``template`` is the target's pod template (metadata and spec), ``pods`` the namespace's
    pods. Raises InvalidRoute for a route that no Service leads to."""
    labels = (template.get("metadata") or {}).get("labels") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    routed_ports: dict[tuple[str, int], list[Route]] = {}
    for route in routes:
        for forward in route.forwards:
            routed_ports.setdefault((route.container, forward.port), []).append(route)
    chosen = [s for s in services if _selects(_original_selector(s, router), labels)
              and any(_takers(routed_ports, _target_port(p, containers)) for p in s["spec"].get("ports") or [])]
    routed: dict[str, list[str]] = {r.bridge: [] for r in routes}
    slice_ports: dict[str, list[dict[str, Any]]] = {}
    by_port: dict[tuple[int, str], dict[str, Any]] = {}
    for service in chosen:
        name = service["metadata"]["name"]
        selector = _original_selector(service, router)
        members = [p for p in pods if _selects(selector, (p["metadata"].get("labels") or {}))]
        slice_ports[name] = []
        for port in service["spec"].get("ports") or []:
            resolved = _target_port(port, containers)
            if resolved is None:
                continue
            protocol = str(port.get("protocol", "TCP")).lower()
            takers = _takers(routed_ports, resolved) if protocol == "tcp" else []
            entry = by_port.setdefault((resolved[1], protocol),
                                       {"routes": takers, "originals": set(), "http2": False, "https": False})
            entry["http2"] |= speaks_http2(port)
            entry["https"] |= speaks_tls(port)
            for pod in members:
                ip, on_pod = _ready_ip(pod), _target_port(port, (pod.get("spec") or {}).get("containers") or [])
                if ip and on_pod is not None:
                    entry["originals"].add(f"{ip}:{on_pod[1]}")
            for route in takers:
                if name not in routed[route.bridge]:
                    routed[route.bridge].append(name)
            slice_ports[name].append({"name": port.get("name", ""), "port": resolved[1], "protocol": port.get("protocol", "TCP"),
                                      **({"appProtocol": port["appProtocol"]} if port.get("appProtocol") else {})})
    for route in routes:
        if not routed[route.bridge]:
            ports = ", ".join(str(f.port) for f in route.forwards)
            raise InvalidRoute(route.bridge, f"no Service of namespace {namespace} sends traffic to port {ports} of "
                                             f"container {route.container}: a bridge takes what reaches the "
                                             "workload's Services" + ("" if route.matches else
                                                                      " (--in-place takes connections to its pods)"))
    listeners, files, versions = [], {}, []
    for (number, protocol), entry in sorted(by_port.items()):
        takers, originals = entry["routes"], tuple(sorted(entry["originals"]))
        personal = tuple((r.matches, _forward_to(r, number)) for r in takers if r.personal and not r.mirror)
        mirrors = tuple((r.matches, _forward_to(r, number)) for r in takers if r.mirror)
        everything = [r for r in takers if not r.personal]  # at most one, alone (the operator sees to it)
        # The first bridge that names the protocol decides, else the Service ports; the same for
        # the certificate of an HTTPS port.
        said = next((r.protocol for r in takers if r.protocol), "")
        routes_requests = bool(personal or mirrors) and not everything
        material = next((r.tls for r in takers if r.tls and r.personal), None) if routes_requests else None
        if routes_requests and entry["https"] and material is None:
            raise InvalidRoute(next(r.bridge for r in takers if r.personal),
                               f"port {number} speaks HTTPS (its Service port says so): the router can route its "
                               "requests only with the workload's certificate: name its Secret with --tls-secret")
        listener_tls = None
        if material is not None:
            listener_tls = dataclasses.replace(tls_files(number), verify=material.verify)
            files.update({listener_tls.certificate: material.certificate, listener_tls.key: material.key,
                          listener_tls.trusted: material.trusted or material.certificate})
            versions.append(f"{number}:{material.version}:{material.verify}")
        listeners.append(Listener(number, protocol, originals, personal=() if everything else personal,
                                  everything_to=_forward_to(everything[0], number) if everything else "",
                                  mirrors=() if everything else mirrors,
                                  http2=said in ("h2c", "grpc") if said else entry["http2"], tls=listener_tls))
    return _Plan(listeners, slice_ports, routed, files, ",".join(versions))


def _service_of(endpoint_slice: dict[str, Any]) -> str:
    return str((endpoint_slice["metadata"].get("labels") or {}).get(_SERVICE_NAME, ""))


def _stood_in_for(router: str, services: Sequence[dict[str, Any]], slices: Sequence[dict[str, Any]]) -> set[str]:
    """The names of the Services that ``router`` stands in for, or did: its key is on their
    selector, or one of its ``slices`` belongs to them."""
    keyed = {s["metadata"]["name"] for s in services if (s["spec"].get("selector") or {}).get(ROUTER_LABEL) == router}
    return keyed | {_service_of(s) for s in slices}


def _forward_to(route: Route, port: int) -> str:
    forward = next(f for f in route.forwards if f.port == port)
    return f"{forward.host}:{forward.host_port}"


async def _delete(cluster: Cluster, where: str) -> bool:
    """Deletes what is at ``where``; False if it was not there. An embedder without the right to
    (a developer's `down` while the operator is gone) leaves it to the operator."""
    try:
        await cluster.request("DELETE", where)
    except errors.ForbiddenError:
        log.warning("not allowed to delete; the operator will", path=where)
        return False
    except errors.NotFoundError:
        return False
    return True


class Router:
    """The router mode of the nginx interceptor (see the module's docstring)."""

    def __init__(self, image: str, board: ConfigBoard) -> None:
        self.image = image
        self.board = board
        #: router -> the pod IPs it was last given configurations for.
        self._ips: dict[str, set[str]] = {}
        self.identities = identity.Identities()
        #: The cluster of the operator's rounds (a router pod's token is checked there).
        self._cluster: Cluster | None = None
        #: router -> its listeners as last planned (what its routes come off from when it goes).
        self._listeners: dict[str, tuple[Listener, ...]] = {}
        #: router -> the routes and what it read for them in its last round (see intercept).
        self._last: dict[str, tuple[tuple[Route, ...], _Read]] = {}

    async def held(self, cluster: Cluster) -> list[Target]:
        """The targets of the routers that run."""
        targets = []
        for deployment in await cluster.objects(path("deployments", GEFYRA_NAMESPACE), label_selector=ROUTER_LABEL):
            parts = str((deployment["metadata"].get("annotations") or {}).get(TARGET_ANNOTATION, "")).split("/")
            # Read back from the cluster: only names Kubernetes could have go into paths.
            if len(parts) == 3 and is_dns_subdomain(parts[0]) and parts[1] in WORKLOAD_KINDS \
                    and is_dns_subdomain(parts[2]):
                targets.append(Target(*parts))
        return targets

    async def prepare(self, cluster: Cluster, target: Target) -> None:
        """The router's Deployment, with no configuration offered yet: its pods start (and ask for
        one) while the first bridge of the target is on its way; those without an address in the
        API yet are waited for (:meth:`identify`)."""
        self._cluster = cluster
        await self._ensure_deployment(cluster, router_name(target), target)
        await self._router_pods(cluster, router_name(target))

    async def identify(self, peer: str, token: str) -> bool:
        """Whether the pod at ``peer`` proved with ``token`` that it is a router pod whose address
        the API does not show yet (see :mod:`.identity`)."""
        if self._cluster is None:
            return False
        try:
            return await self.identities.identify(self._cluster, peer, token)
        except errors.GefyraError as exc:  # the pod is answered once the API shows its address
            log.warning("a router pod's token could not be checked", error=exc.what)
            return False

    async def intercept(self, cluster: Cluster, target: Target, routes: Sequence[Route]
                        ) -> tuple[dict[str, RouteState], bool]:
        name = router_name(target)
        self._cluster = cluster
        if not routes:
            self._last.pop(name, None)
            return {}, await self._routes_off(cluster, name) and await self._give_back(cluster, target.namespace, name)
        self._offer_early(name, tuple(routes), target.namespace)
        template, services, pods, routers = await at_once(
            lambda: self._template(cluster, target, routes), lambda: cluster.objects(path("services", target.namespace)),
            lambda: cluster.objects(path("pods", target.namespace)), lambda: self._router_pods(cluster, name))
        self._last[name] = (tuple(routes), (template, services, pods))
        layout = plan(name, routes, template, services, pods, target.namespace)
        ips = {p["status"]["podIP"] for p in routers}
        self._listeners[name] = tuple(layout.listeners)
        version = self._publish(name, layout.listeners, ips, layout.files, layout.files_version)
        await self._ensure_deployment(cluster, name, target)  # once the routes are known to be good
        serving = sorted(ip for ip in ips if self.board.applied((ip, "")))
        current = [ip for ip in serving if self.board.applied((ip, "")) == version]

        rerouted = {s["metadata"]["name"]: s for s in services if s["metadata"]["name"] in layout.services}
        if serving:
            for service_name, ports in layout.services.items():
                await self._reroute(cluster, rerouted[service_name], name, serving, ports)
        no_longer = _stood_in_for(name, services, await self._router_slices(cluster, target.namespace, name)) \
            - layout.services.keys()  # Services no bridge needs any more
        for service in services:
            if service["metadata"]["name"] in no_longer:
                await self._give_back_service(cluster, service, name)
        switched = bool(serving) and all([await self._switched(cluster, target.namespace, s, name)
                                          for s in layout.services])
        ready = switched and len(current) == len(ips)
        failure = "" if ready else await self._failure(cluster, name, routers)
        states = {r.bridge: RouteState(
            ready=ready, pods=tuple(sorted(p["metadata"]["name"] for p in routers)), namespace=GEFYRA_NAMESPACE,
            sources=tuple(sorted(ips)), services=tuple(sorted(layout.routed[r.bridge])),
            mode="router (mirror)" if r.mirror else "router",
            message=f"{len(current)} of {REPLICAS} routers carry the bridge"
                    + ("" if switched else "; the Services do not lead to them yet"), failure=failure) for r in routes}
        return states, bool(ips) and len(current) == len(ips)

    def _offer_early(self, name: str, routes: tuple[Route, ...], namespace: str) -> None:
        """Routes that changed since the router's last round go at once to the pods that round
        offered to, planned with what it read (the workload's template, Services and pods): a
        bridge that comes or goes is carried 15-40 ms sooner than after this round's reads, which
        then plan again; a difference (a pod changed meanwhile, which also woke this round) is
        offered a moment later. Nothing is offered early that the last read cannot route."""
        last = self._last.get(name)
        if last is None or last[0] == routes:
            return
        try:
            layout = plan(name, routes, *last[1], namespace)
        except InvalidRoute:
            return  # this round's reads decide, and say why
        self._publish(name, layout.listeners, self._ips.get(name, set()), layout.files, layout.files_version)

    async def _failure(self, cluster: Cluster, name: str, routers: list[dict[str, Any]]) -> str:
        """Why the router will not run by waiting longer (its pods cannot pull their image, or
        admission refuses them), or ""."""
        for pod in map(Pod.of, routers):
            for state in pod.statuses:
                if state.cannot_start:
                    return f"the router's pods cannot start: {state.cannot_start}"
        found = await cluster.get(path("deployments", GEFYRA_NAMESPACE, name))
        for condition in ((found or {}).get("status") or {}).get("conditions") or []:
            if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
                return f"the router's pods cannot be made: {str(condition.get('message', ''))[:300]}"
        return ""

    async def _router_pods(self, cluster: Cluster, name: str) -> list[dict[str, Any]]:
        """The router's pods that run and have an address (not those on their way out): the one
        the API shows, else the one the pod proved (its ``status.podIP`` here)."""
        found = await cluster.objects(path("pods", GEFYRA_NAMESPACE), label_selector=f"{ROUTER_LABEL}={name}")
        running = [p for p in found if not p["metadata"].get("deletionTimestamp")]
        addresses = self.identities.addresses(name, running)
        return [{**p, "status": {**(p.get("status") or {}), "podIP": addresses[uid]}} for p in running
                if (uid := str(p["metadata"].get("uid") or "")) in addresses]

    def _publish(self, name: str, listeners: Sequence[Listener], ips: set[str], files: dict[str, bytes] | None = None,
                 files_version: str = "") -> str:
        """Offers the router's pods at ``ips`` the configuration of ``listeners`` with the ``files``
        they name (pods gone since are forgotten); returns its version."""
        stream, http = router_config(name, listeners)
        version = hashlib.sha256((stream + http + files_version).encode()).hexdigest()[:16]
        body = json.dumps({"version": version, "stream": stream, "http": http}).encode()
        for gone in self._ips.get(name, set()) - ips:
            self.board.forget((gone, ""))
        self._ips[name] = ips
        for ip in ips:
            self.board.want((ip, ""), version, body, files)
        return version

    async def _routes_off(self, cluster: Cluster, name: str) -> bool:
        """Before a router's Services are given back, its routes come off: what still reaches it
        while kube-proxy catches up, and while it drains, goes to the workload's own pods, never to
        a developer whose bridge is gone. True once every router pod that serves runs that."""
        listeners = self._listeners.get(name)
        if listeners is None:  # not planned since the operator started: nothing known to take off
            return True
        ips = {p["status"]["podIP"] for p in await self._router_pods(cluster, name)}
        passing = [dataclasses.replace(listener, personal=(), mirrors=(), everything_to="") for listener in listeners]
        version = self._publish(name, passing, ips)
        return all(self.board.applied((ip, "")) in (None, version) for ip in ips)

    async def _template(self, cluster: Cluster, target: Target, routes: Sequence[Route]) -> dict[str, Any]:
        """The target's pod template (metadata, spec); InvalidRoute if the workload is gone."""
        try:
            found = await cluster.request("GET", workload_path(target.namespace, target.kind, target.name))
        except errors.NotFoundError as exc:
            raise InvalidRoute(routes[0].bridge, f"{target.kind} {target.name} does not exist in namespace "
                                                 f"{target.namespace}") from exc
        return found if target.kind == "pod" else dict(found["spec"]["template"])

    async def _ensure_deployment(self, cluster: Cluster, name: str, target: Target) -> None:
        wanted = router_deployment(name, target, self.image)
        found = await cluster.get(wanted)
        if found is None:
            await cluster.create(wanted)
            log.info("router started", router=name, target=str(target))
            return
        image = found["spec"]["template"]["spec"]["containers"][0].get("image")
        if found["metadata"].get("deletionTimestamp"):
            return  # the last bridge's router is leaving; the next round makes a new one
        if image != self.image or found["spec"].get("replicas") != REPLICAS:
            await cluster.patch(wanted, {"spec": wanted["spec"]})

    async def _reroute(self, cluster: Cluster, service: dict[str, Any], router: str, ips: Sequence[str],
                       ports: list[dict[str, Any]]) -> None:
        """gefyra's EndpointSlice with the routers first, then the selector key."""
        namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
        wanted = {
            "apiVersion": _SLICES, "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-gefyra", "namespace": namespace,
                         "labels": {_SERVICE_NAME: name, _MANAGED_SLICE: SLICE_MANAGER,
                                    LABEL_MANAGED_BY: MANAGED_BY, ROUTER_LABEL: router}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True, "serving": True, "terminating": False}}
                          for ip in ips],
            "ports": ports,
        }
        found = await cluster.get(wanted)
        if found is None:
            await cluster.create(wanted)
            log.info("service leads to the router", service=name, namespace=namespace, router=router)
        else:
            if (found["metadata"].get("labels") or {}).get(ROUTER_LABEL) != router:
                raise RuntimeError(f"EndpointSlice {namespace}/{name}-gefyra is not this router's")
            if found.get("endpoints") != wanted["endpoints"] or found.get("ports") != ports:
                await cluster.patch(wanted, {"endpoints": wanted["endpoints"], "ports": ports})
        if (service["spec"].get("selector") or {}).get(ROUTER_LABEL) != router:
            await cluster.patch(path("services", namespace, name), {"spec": {"selector": {ROUTER_LABEL: router}}})

    async def _router_slices(self, cluster: Cluster, namespace: str, router: str) -> list[dict[str, Any]]:
        """gefyra's EndpointSlices that list this router, in the target's namespace."""
        return await cluster.objects(path("endpointslices", namespace), label_selector=f"{ROUTER_LABEL}={router}")

    async def _switched(self, cluster: Cluster, namespace: str, service: str, router: str) -> bool:
        """Only gefyra's slice of the Service has endpoints left."""
        slices = await cluster.objects(path("endpointslices", namespace), label_selector=f"{_SERVICE_NAME}={service}")
        ours = [s for s in slices if (s["metadata"].get("labels") or {}).get(ROUTER_LABEL) == router]
        others = [s for s in slices if s not in ours]
        return bool(ours) and not any(s.get("endpoints") for s in others)

    async def _give_back_service(self, cluster: Cluster, service: dict[str, Any], router: str) -> bool:
        """The Service's selector as it was; once Kubernetes' own slices list its ready pods again,
        gefyra's slice goes. True when nothing of gefyra's is left on it."""
        namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
        selector = (service["spec"].get("selector") or {})
        if selector.get(ROUTER_LABEL) == router:
            await cluster.patch(path("services", namespace, name), {"spec": {"selector": {ROUTER_LABEL: None}}})
            log.info("service selector given back", service=name, namespace=namespace)
            return False
        slices = await cluster.objects(path("endpointslices", namespace), label_selector=f"{_SERVICE_NAME}={name}")
        ours = [s for s in slices if (s["metadata"].get("labels") or {}).get(ROUTER_LABEL) == router]
        if not ours:
            return True
        pods = await cluster.objects(path("pods", namespace))
        wanted = {_ready_ip(p) for p in pods if _selects(selector, p["metadata"].get("labels") or {})} - {""}
        listed = {a for s in slices if s not in ours for e in s.get("endpoints") or []
                  if (e.get("conditions") or {}).get("ready") for a in e.get("addresses") or []}
        if not wanted <= listed:
            return False  # Kubernetes has not put the pods back yet: the router keeps serving
        for found in ours:
            await _delete(cluster, path("endpointslices", namespace, found["metadata"]["name"]))
        return True

    async def _give_back(self, cluster: Cluster, namespace: str, router: str) -> bool:
        """Every Service the router stood in for given back, then the router removed. True once
        nothing of it is left (its pods may still be draining)."""
        services = await cluster.objects(path("services", namespace))
        slices = await self._router_slices(cluster, namespace, router) if services else []
        involved = _stood_in_for(router, services, slices)
        done = [await self._give_back_service(cluster, s, router) for s in services if s["metadata"]["name"] in involved]
        if not all(done):
            return False
        for orphan in slices:  # slices whose Service is gone
            if _service_of(orphan) not in {s["metadata"]["name"] for s in services}:
                await _delete(cluster, path("endpointslices", namespace, orphan["metadata"]["name"]))
        if await _delete(cluster, path("deployments", GEFYRA_NAMESPACE, router)):
            log.info("router removed", router=router)
        for ip in self._ips.pop(router, set()):
            self.board.forget((ip, ""))
        self._listeners.pop(router, None)
        self.identities.forget(router)
        return True
