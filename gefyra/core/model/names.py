"""Names that the client and the operator share: labels, annotations, custom resources, objects of
the cluster side, condition types. One place, so that both programs always agree."""

from __future__ import annotations

from typing import Final

#: Every object gefyra creates carries this label (and LABEL_CLIENT), so that `down` finds it.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "gefyra"
LABEL_CLIENT: Final = "gefyra.dev/client"
LABEL_ROLE: Final = "gefyra.dev/role"
#: On a `run` container: the cluster namespace it acts in.
LABEL_NAMESPACE: Final = "gefyra.dev/namespace"
#: On a `run` container: the container that holds its network namespace (routes and DNS are set
#: up there before the `run` container starts).
LABEL_NETNS: Final = "gefyra.dev/network-holder"
#: On the tunnel's local end: the public key it runs with (private keys never go into labels).
LABEL_PUBLIC_KEY: Final = "gefyra.dev/public-key"
#: On the tunnel's local end: HOST:PORT of the server end it sends to (`up --host` changes it).
LABEL_ENDPOINT: Final = "gefyra.dev/endpoint"
#: On the tunnel's local end: the ranges it routes into the tunnel (space separated), for `run`.
LABEL_ROUTES: Final = "gefyra.dev/cluster-routes"

GEFYRA_NAMESPACE: Final = "gefyra"
#: The namespace label by which Pod Security admission enforces a level.
POD_SECURITY_LABEL: Final = "pod-security.kubernetes.io/enforce"
#: Namespaces whose workloads are never bridged: the cluster's own and gefyra's.
PROTECTED_NAMESPACES: Final = frozenset({"kube-system", "kube-public", "kube-node-lease", GEFYRA_NAMESPACE})
#: On the Namespace: "install" (an admin installed the cluster side; `down` keeps it) or
#: "with-clients" (`up` installed it; the last client's `down` removes it).
ANNOTATION_LIFECYCLE: Final = "gefyra.dev/lifecycle"
#: On the cluster side's Deployment: a digest of its manifests, to tell an outdated install.
ANNOTATION_MANIFESTS: Final = "gefyra.dev/manifests"
#: On the cluster side's Deployment: the shared settings it was installed with (JSON), which every
#: client's `up` takes over.
ANNOTATION_SHARED: Final = "gefyra.dev/shared-settings"
#: What the tunnel routes and where cluster DNS is: written at install for developers who may not
#: discover it themselves.
CLUSTER_INFO_CONFIGMAP: Final = "gefyra-cluster"
CRD_GROUP: Final = "gefyra.dev"
CRD_VERSION: Final = "v1alpha1"
CLIENTS: Final = "gefyraclients"
BRIDGES: Final = "gefyrabridges"
#: The operator removes it from a GefyraBridge once the target's pods are restored.
BRIDGE_FINALIZER: Final = "gefyra.dev/restore-pods"
#: On a GefyraBridge: its client steers the bridged ports to the local container. A bridge without
#: it for STEER_BOUND seconds after it was made leads nowhere (its client died on the way): the
#: operator removes it, and the workload gets its traffic back.
ANNOTATION_STEERED: Final = "gefyra.dev/steered"
STEER_BOUND: Final = 30

#: The tunnel server end's ports that lead into the tunnel, one per bridged port.
PROXY_PORTS: Final = range(20000, 30000)
