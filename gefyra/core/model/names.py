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
#: On the tunnel's local end: the ranges it routes into the tunnel (space separated), for `run`.
LABEL_ROUTES: Final = "gefyra.dev/cluster-routes"

GEFYRA_NAMESPACE: Final = "gefyra"
#: Namespaces whose workloads are never bridged: the cluster's own and gefyra's.
PROTECTED_NAMESPACES: Final = frozenset({"kube-system", "kube-public", "kube-node-lease", GEFYRA_NAMESPACE})
#: On the Namespace: "install" (an admin installed the cluster side; `down` keeps it) or
#: "with-clients" (`up` installed it; the last client's `down` removes it).
ANNOTATION_LIFECYCLE: Final = "gefyra.dev/lifecycle"
#: On the stowaway Deployment: a digest of the cluster side's manifests, to tell an outdated install.
ANNOTATION_MANIFESTS: Final = "gefyra.dev/manifests"
#: What the tunnel routes and where cluster DNS is: written at install for developers who may not
#: discover it themselves.
CLUSTER_INFO_CONFIGMAP: Final = "gefyra-cluster"
CRD_GROUP: Final = "gefyra.dev"
CRD_VERSION: Final = "v1alpha1"
CLIENTS: Final = "gefyraclients"
BRIDGES: Final = "gefyrabridges"
CLIENTS_PATH: Final = f"/apis/{CRD_GROUP}/{CRD_VERSION}/namespaces/{GEFYRA_NAMESPACE}/{CLIENTS}"
BRIDGES_PATH: Final = f"/apis/{CRD_GROUP}/{CRD_VERSION}/namespaces/{GEFYRA_NAMESPACE}/{BRIDGES}"
#: The operator removes it from a GefyraBridge once the target's pods are restored.
BRIDGE_FINALIZER: Final = "gefyra.dev/restore-pods"
#: On a GefyraBridge: its client steers the bridged ports to the local container. A bridge without
#: it for STEER_BOUND seconds after it was made leads nowhere (its client died on the way): the
#: operator removes it, and the workload gets its traffic back.
ANNOTATION_STEERED: Final = "gefyra.dev/steered"
STEER_BOUND: Final = 30

#: The cluster side's tunnel server (Deployment, Service) and the Secret with its key pair.
STOWAWAY: Final = "gefyra-stowaway"
STOWAWAY_KEY_SECRET: Final = "gefyra-stowaway-key"
OPERATOR_CONTAINER: Final = "operator"

#: The tunnel's own range: stowaway is .1, each client gets one address. RFC 2544's benchmarking
#: range, chosen because local and cluster networks practically never use it.
TUNNEL_NETWORK: Final = "198.18.0.0/16"
TUNNEL_SERVER_ADDRESS: Final = "198.18.0.1"
#: Stowaway's ports that lead into the tunnel, one per bridged port.
PROXY_PORTS: Final = range(20000, 30000)

#: Condition types on a GefyraBridge's status (``status.conditions``), set by the operator.
READY: Final = "Ready"  # every live pod of the target forwards to the client
INVALID: Final = "Invalid"  # the bridge cannot be made; the reason is in the message
RESTORING: Final = "Restoring"  # the bridge is going away; pods get their containers back
RESTORED: Final = "Restored"  # every pod runs its own container again
