#!/usr/bin/env bash
# `make cluster`: brings the single-node development cluster up, or checks that it is up.
# Idempotent: every step looks before it acts, so a second run returns in seconds.
source "$(dirname "$0")/common.sh"

started=$(date +%s)
"$HACK_DIR/install-deps.sh"
"$HACK_DIR/build.sh"
mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/cni/net.d" "$(dirname "$KUBECONFIG_OUT")"

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

# render TEMPLATE OUT: replaces @VAR@ with the value of the shell variable VAR. OUT is only
# rewritten when its content changes (kube-proxy exits when its configuration file is touched).
render() {
  local text
  text=$(<"$1")
  local var
  for var in $(grep -o '@[A-Z_]*@' "$1" | sort -u | tr -d @); do
    text=${text//@$var@/${!var}}
  done
  [[ -f $2 && "$(<"$2")" == "$text" ]] && return 0
  printf '%s\n' "$text" > "$2"
}

setup_netns() {
  if [[ ! -e /run/netns/$NETNS ]]; then
    log "creating the node's network namespace $NETNS ($NODE_IP)"
    ip netns add "$NETNS"
    ip link add "$VETH_HOST" type veth peer name "$VETH_NODE" netns "$NETNS"
    ip addr add "$HOST_SIDE_IP/24" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    in_node ip addr add "$NODE_IP/24" dev "$VETH_NODE"
    in_node ip link set lo up
    in_node ip link set "$VETH_NODE" up
    in_node ip route add default via "$HOST_SIDE_IP"
  fi
  # Cluster addresses that kube-proxy did not translate must fail here, never leave the machine.
  local cidr chain rule
  for cidr in "$SERVICE_CIDR" "$POD_CIDR"; do
    for chain in FORWARD OUTPUT; do
      rule=("$chain" -o "$VETH_NODE" -d "$cidr" -m conntrack ! --ctstate DNAT -j REJECT)
      in_node iptables -C "${rule[@]}" 2>/dev/null || in_node iptables -A "${rule[@]}"
    done
  done
  # A fresh namespace forwards nothing, and kube-proxy needs bridged traffic to see iptables.
  in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # The host forwards the node's traffic (Docker sets the FORWARD policy to DROP) and masquerades
  # what leaves the machine. These are the only host rules; make cluster-down removes them.
  iptables -N "$FW_CHAIN" 2>/dev/null || true
  iptables -C "$FW_CHAIN" -i "$VETH_HOST" -j ACCEPT 2>/dev/null || iptables -A "$FW_CHAIN" -i "$VETH_HOST" -j ACCEPT
  iptables -C "$FW_CHAIN" -o "$VETH_HOST" -j ACCEPT 2>/dev/null || iptables -A "$FW_CHAIN" -o "$VETH_HOST" -j ACCEPT
  iptables -C FORWARD -j "$FW_CHAIN" 2>/dev/null || iptables -I FORWARD 1 -j "$FW_CHAIN"
  local masq=(POSTROUTING -t nat -s "$NODE_NET" ! -o "$VETH_HOST" -m comment --comment "$FW_CHAIN" -j MASQUERADE)
  iptables -C "${masq[@]}" 2>/dev/null || iptables -A "${masq[@]}"
}

start_containerd() {
  render "$HACK_DIR/containerd.toml.in" "$STATE_DIR/containerd.toml"
  render "$HACK_DIR/cni.conflist.in" "$STATE_DIR/cni/net.d/10-gefyra-devcluster.conflist"
  start_daemon containerd containerd --config "$STATE_DIR/containerd.toml"
  wait_for 30 containerd ctr_k8s version
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

start_node() {
  render "$HACK_DIR/kubelet.yaml.in" "$STATE_DIR/kubelet.yaml"
  render "$HACK_DIR/kube-proxy.yaml.in" "$STATE_DIR/kube-proxy.yaml"
  start_daemon kubelet kubelet --config="$STATE_DIR/kubelet.yaml" \
    --kubeconfig="$PKI_DIR/kubelet.kubeconfig" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" --root-dir="$STATE_DIR/kubelet" --cert-dir="$STATE_DIR/kubelet/pki"
  start_daemon kube-proxy kube-proxy --config="$STATE_DIR/kube-proxy.yaml"
  wait_for 120 "node $NODE_NAME" node_ready
}

node_ready() {
  [[ "$("${KUBECTL[@]}" get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
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
setup_netns
start_containerd
start_registry
for image in "$PAUSE_IMAGE" "gefyra-dev/coredns:$COREDNS_VERSION"; do load_image "$image"; done
start_control_plane
start_node
install_dns
cp "$STATE_DIR/admin.kubeconfig" "$KUBECONFIG_OUT"
log "cluster ready in $(( $(date +%s) - started ))s; kubeconfig: $KUBECONFIG_OUT"
ln -sf "$BIN_DIR/kubectl" "$(dirname "$KUBECONFIG_OUT")/kubectl"
echo "$NODE_IP" > "$(dirname "$KUBECONFIG_OUT")/node-ip"
echo "$DEV_REGISTRY" > "$(dirname "$KUBECONFIG_OUT")/registry"
