#!/usr/bin/env bash
# `make demo`: the tour of what gefyra does, on the development cluster, from a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

owned=0
[[ -f .devcluster/kubeconfig ]] || owned=1
cleanup() {
  say "cleaning up: gefyra down removes everything gefyra made"
  .venv/bin/gefyra --client-id demo-colleague down >/dev/null 2>&1 || true
  .venv/bin/gefyra down || true
  .devcluster/kubectl --kubeconfig .devcluster/kubeconfig delete namespace demo --ignore-not-found >/dev/null 2>&1 || true
  if (( owned )); then hack/devcluster/down.sh; fi
}
trap cleanup EXIT

say "development cluster (first run builds Kubernetes from source: ~15 min; later runs: seconds)"
hack/devcluster/up.sh
hack/devcluster/images.sh
export KUBECONFIG=$PWD/.devcluster/kubeconfig
# gefyra's images come from the development registry (`make images` pushed them there).
export GEFYRA_REGISTRY=$(<.devcluster/registry)
kubectl=.devcluster/kubectl

say "sample service 'hello' (2 replicas) in namespace demo"
$kubectl create namespace demo --dry-run=client -o yaml | $kubectl apply -f - >/dev/null
.venv/bin/python - <<'PY' | $kubectl apply -f -
from tests.e2e.devcluster import client_pod, http_workload
print(http_workload("hello", "demo", env={"MESSAGE": "the cluster"}))
print("---")
print(client_pod("caller", "demo"))
PY
$kubectl -n demo rollout status deploy/hello --timeout=120s
$kubectl -n demo wait --for=condition=Ready pod/caller --timeout=60s
# kube-proxy puts Ready pods behind their Service a moment later (its sync period is 1 s).
service_answers() {
  for _ in $(seq 60); do
    $kubectl -n demo exec caller -- testserver get http://hello/ >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "the Service hello did not answer within 30 s" >&2; return 1
}
service_answers

say "a request from inside the cluster (pod 'caller' -> http://hello)"
$kubectl -n demo exec caller -- testserver get http://hello/

say "gefyra up: connect this machine to the cluster"
.venv/bin/gefyra up

say "gefyra run: a local container that lives in namespace demo"
.venv/bin/gefyra run -i gefyra/testserver:dev -N hello-local -n demo -d --env-from deploy/hello -e MESSAGE="my laptop"
.venv/bin/gefyra list

say "from the local container, cluster names resolve like in a pod: http://hello"
docker exec hello-local testserver get http://hello/
say "...and by FQDN"
docker exec hello-local testserver get http://hello.demo.svc.cluster.local/
say "its environment came from deploy/hello (MESSAGE overridden with -e)"
docker exec hello-local sh -c 'env | grep -E "^(MESSAGE|HELLO_SERVICE_HOST)="'

say "gefyra bridge: deploy/hello's traffic now goes to the local container"
.venv/bin/gefyra bridge -N hello-local -n demo --target deploy/hello -p 8080:8080
say "a request from inside the cluster (pod 'caller' -> http://hello), answered locally"
for _ in 1 2 3; do $kubectl -n demo exec caller -- testserver get http://hello/; done

say "status"
.venv/bin/gefyra status
.venv/bin/gefyra list

say "gefyra unbridge: the cluster's own pods answer again, exactly as before"
.venv/bin/gefyra unbridge --all
service_answers
$kubectl -n demo exec caller -- testserver get http://hello/

say "personal bridges: two developers share deploy/hello; each gets only the requests with their header"
.venv/bin/gefyra bridge -N hello-local -n demo --target deploy/hello -p 8080:8080 --match-header-exact x-dev:me
# A colleague on another machine (here: a second client on this one, with its own tunnel).
colleague=(.venv/bin/gefyra --client-id demo-colleague)
"${colleague[@]}" up
"${colleague[@]}" run -i gefyra/testserver:dev -N colleague-local -n demo -d -e MESSAGE="my colleague's laptop"
"${colleague[@]}" bridge -N colleague-local -n demo --target deploy/hello -p 8080:8080 --match-header-exact x-dev:colleague
say "requests with 'x-dev: me', with 'x-dev: colleague' and without the header, through the Service"
for header in "x-dev: me" "x-dev: colleague" ""; do
  printf '%-18s ' "${header:-(no header)}"
  $kubectl -n demo exec caller -- testserver get http://hello/ -H "$header"
done
.venv/bin/gefyra list
say "30 requests of each kind, on one keep-alive connection: who answered"
$kubectl -n demo exec caller -- testserver tally http://hello/ 90 --keepalive \
  --variant "x-dev: me" --variant "x-dev: colleague" --variant ""
say "the same over cleartext HTTP/2 (as gRPC clients speak): 30 interleaved streams of one connection, each routed alone"
$kubectl -n demo exec caller -- testserver tally http://hello/ 30 --h2c --parallel 6 \
  --variant "x-dev: me" --variant "x-dev: colleague" --variant ""
say "both unbridge: the Service, the Deployment and its pods are exactly as before"
"${colleague[@]}" down
.venv/bin/gefyra unbridge --all
$kubectl -n demo exec caller -- testserver get http://hello/ -H "x-dev: me"

say "a day from one session file: gefyra apply -f makes containers and bridges; applied again, only what changed"
session_dir=$(mktemp -d)
cat > "$session_dir/gefyra.yaml" <<'YAML'
namespace: demo
containers:
  hello-session:
    image: gefyra/testserver:dev
    envFrom: deploy/hello
    env: {MESSAGE: "my session file"}
bridges:
  - {container: hello-session, target: deploy/hello, ports: ["8080:8080"], match: {header-exact: "x-dev:me"}}
YAML
cat "$session_dir/gefyra.yaml"
.venv/bin/gefyra apply -f "$session_dir/gefyra.yaml"
$kubectl -n demo exec caller -- testserver get http://hello/ -H "x-dev: me"
.venv/bin/gefyra apply -f "$session_dir/gefyra.yaml"
say "gefyra logs: the local container's output; gefyra down -f: what the file made is gone"
.venv/bin/gefyra logs --tail 3 hello-session
.venv/bin/gefyra down -f "$session_dir/gefyra.yaml"
$kubectl -n demo exec caller -- testserver get http://hello/ -H "x-dev: me"
rm -rf "$session_dir"
