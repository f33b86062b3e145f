#!/usr/bin/env bash
# Creates the cluster's CA, serving and client certificates, the service-account key pair and the
# kubeconfigs of every component, once. Identities follow Kubernetes' bootstrap RBAC.
# `pki.sh node N`: node N's kubelet identities (client and serving), once (node.sh add N).
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/node-functions.sh"

mkdir -p "$PKI_DIR"
cd "$PKI_DIR"

# issue NAME SUBJECT USAGE [SANS]
issue() {
  local name=$1 subject=$2 usage=$3 sans=${4:-}
  openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# kubeconfig NAME: a kubeconfig for the client certificate NAME.
kubeconfig() {
  local name=$1 out=$2
  cat > "$out" <<KC
apiVersion: v1
kind: Config
clusters:
- name: gefyra-dev
  cluster:
    server: https://$CONTROL_PLANE_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 ca.crt)
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$name.crt")
    client-key-data: $(base64 -w0 "$name.key")
contexts:
- name: gefyra-dev
  context: {cluster: gefyra-dev, user: $name}
current-context: gefyra-dev
KC
  chmod 600 "$out"
}

# node_identities: the chosen node's kubelet client certificate (and kubeconfig) and serving
# certificate for its name and address.
node_identities() {
  issue "$(basename "$(node_pki kubelet-serving)")" "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth \
    "DNS:$NODE_NAME,IP:$NODE_IP"
  local client
  client=$(basename "$(node_pki kubelet)")
  issue "$client" "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  kubeconfig "$client" "$client.kubeconfig"
  chmod 600 ./*.key
}

if [[ ${1:-} == node ]]; then
  select_node "$2"
  [[ -f $(node_pki kubelet).kubeconfig ]] || node_identities
  exit 0
fi
[[ -f .complete ]] && exit 0

openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj "/CN=gefyra-devcluster-ca" -days 3650 -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

issue apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,IP:$KUBE_API_SERVICE_IP,IP:$CONTROL_PLANE_IP,IP:127.0.0.1"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
issue admin "/O=system:masters/CN=gefyra-devcluster-admin" clientAuth
issue controller-manager "/CN=system:kube-controller-manager" clientAuth
issue scheduler "/CN=system:kube-scheduler" clientAuth
issue kube-proxy "/CN=system:kube-proxy" clientAuth

openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null

node_identities
for c in controller-manager scheduler kube-proxy; do kubeconfig "$c" "$c.kubeconfig"; done
kubeconfig admin "$STATE_DIR/admin.kubeconfig"
chmod 600 ./*.key
touch .complete
