#!/usr/bin/env bash
# `make cluster [NODES=N]`: brings the development cluster up (one node unless NODES says more), or
# checks that it is up. Idempotent: every step looks before it acts, so a second run returns in
# seconds.
source "$(dirname "$0")/common.sh"
source "$HACK_DIR/node-functions.sh"
NODES=${NODES:-1}
[[ $NODES =~ ^[1-9]$ ]] || die "NODES=$NODES: give a number of nodes from 1 to 9"

started=$(date +%s)
"$HACK_DIR/install-deps.sh"
"$HACK_DIR/build.sh"
mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" "$(dirname "$KUBECONFIG_OUT")"

ensure_docker() {
  # Docker pulls from the development registry over plain HTTP (a running dockerd reloads this on
  # SIGHUP). An existing daemon.json is kept; the registry is added to its list.
  local conf=/etc/docker/daemon.json
  mkdir -p /etc/docker
  python3 - "$conf" "$DEV_REGISTRY" <<'PY'
import json, pathlib, sys
path, registry = pathlib.Path(sys.argv[1]), sys.argv[2]
conf = json.loads(path.read_text() or "{}") if path.exists() else {}
if registry not in conf.setdefault("insecure-registries", []):
    conf["insecure-registries"].append(registry)
    path.write_text(json.dumps(conf, indent=2) + "\n")
PY
  if docker info >/dev/null 2>&1; then
    docker info -f '{{json .RegistryConfig.IndexConfigs}}' | grep -q "\"$DEV_REGISTRY\"" || {
      pkill -HUP -x dockerd
      wait_for 10 "dockerd reload" docker_trusts_registry
    }
    return 0
  fi
  log "starting dockerd"
  setsid dockerd >"$LOG_DIR/dockerd.log" 2>&1 < /dev/null &
  wait_for 60 dockerd docker info
}

docker_trusts_registry() {
  docker info -f '{{json .RegistryConfig.IndexConfigs}}' | grep -q "\"$DEV_REGISTRY\""
}

start_registry() {
  render "$HACK_DIR/registry.yml.in" "$STATE_DIR/registry.yml"
  mkdir -p "$STATE_DIR/registry"
  start_daemon registry docker-registry serve "$STATE_DIR/registry.yml"
  wait_for 30 "the registry" curl -fsS "http://$DEV_REGISTRY/v2/"
}

# component_flags NAME: the flags that controller-manager and scheduler share.
component_flags() {
  local kc="$PKI_DIR/$1.kubeconfig"
  echo "--kubeconfig=$kc --authentication-kubeconfig=$kc --authorization-kubeconfig=$kc" \
    "--leader-elect=false --bind-address=127.0.0.1"
}

start_control_plane() {
  start_daemon etcd etcd --name "$NODE_NAME" --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380"
  wait_for 30 etcd in_node curl -fsS http://127.0.0.1:2379/health

  start_daemon kube-apiserver kube-apiserver \
    --etcd-servers=http://127.0.0.1:2379 \
    --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port="$API_PORT" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --kubelet-client-certificate="$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI_DIR/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI_DIR/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file="$PKI_DIR/sa.pub" \
    --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=false
  wait_for 90 kube-apiserver "${KUBECTL[@]}" get --raw /readyz

  start_daemon kube-controller-manager kube-controller-manager $(component_flags controller-manager) \
    --allocate-node-cidrs --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 \
    --service-cluster-ip-range="$SERVICE_CIDR" --root-ca-file="$PKI_DIR/ca.crt" \
    --service-account-private-key-file="$PKI_DIR/sa.key" --use-service-account-credentials \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key"
  start_daemon kube-scheduler kube-scheduler $(component_flags scheduler)
}

install_dns() {
  render "$HACK_DIR/coredns.yaml.in" "$STATE_DIR/coredns.yaml"
  "${KUBECTL[@]}" apply -f "$STATE_DIR/coredns.yaml" >/dev/null
  wait_for 120 "cluster DNS" dns_answers
}

dns_answers() {
  [[ "$(in_node dig +short +time=1 +tries=1 @"$DNS_SERVICE_IP" "kubernetes.default.svc.$CLUSTER_DOMAIN")" == "$KUBE_API_SERVICE_IP" ]]
}

ensure_docker
"$HACK_DIR/podman.sh"
"$HACK_DIR/pki.sh"
"$HACK_DIR/base-images.sh"
setup_node_network
start_containerd
start_registry
for image in "$PAUSE_IMAGE" "gefyra-dev/coredns:$COREDNS_VERSION"; do load_image "$image"; done
start_control_plane
start_node
install_dns
for (( index = 2; index <= NODES; index++ )); do "$HACK_DIR/node.sh" add "$index"; done
cp "$STATE_DIR/admin.kubeconfig" "$KUBECONFIG_OUT"
log "cluster ready in $(( $(date +%s) - started ))s; kubeconfig: $KUBECONFIG_OUT"
ln -sf "$BIN_DIR/kubectl" "$(dirname "$KUBECONFIG_OUT")/kubectl"
echo "$CONTROL_PLANE_IP" > "$(dirname "$KUBECONFIG_OUT")/node-ip"
echo "$DEV_REGISTRY" > "$(dirname "$KUBECONFIG_OUT")/registry"
