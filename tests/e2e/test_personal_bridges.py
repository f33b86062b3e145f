"""Personal bridges on the development cluster: two developers (two clients on this machine, as on
two laptops) each get only the HTTP requests that match their conditions; every other request is
answered by the workload's own pods, and the workload is exactly as before once both are gone."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import (
    KUBECONFIG,
    KUBECTL,
    TEST_IMAGE,
    WORKLOAD_IMAGE,
    assert_equal,
    eventually,
    kubectl,
    kubectl_json,
    unique,
)
from tests.e2e.gefyra_cli import gefyra, ok

pytestmark = pytest.mark.e2e

DEV_A, DEV_B = {"GEFYRA_CLIENT_ID": "dev-a"}, {"GEFYRA_CLIENT_ID": "dev-b"}
MEASURED: dict[str, Any] = {}


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    """A namespace with a caller pod and a 2-replica HTTP Deployment `shop`; clients dev-a and
    dev-b up, each with a local container that answers as DEV-A / DEV-B."""
    name = unique("gfy-test-pb")
    kubectl("create", "namespace", name)
    devcluster.apply(devcluster.client_pod("caller", name))
    devcluster.apply(devcluster.http_workload("shop", name, replicas=2))
    kubectl("-n", name, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
    kubectl("-n", name, "rollout", "status", "deploy/shop", "--timeout=90s")
    for env, local, message in ((DEV_A, "pb-a", "DEV-A"), (DEV_B, "pb-b", "DEV-B")):
        ok("up", env=env)
        ok("run", "-i", TEST_IMAGE, "-N", local, "-n", name, "-d", "-e", f"MESSAGE={message}", env=env)
    eventually(lambda: _assert_cluster_answers(name), timeout=20)
    yield name
    for env in (DEV_A, DEV_B):
        gefyra("down", env=env)
    kubectl("delete", "namespace", name, "--wait=false", check=False)
    print("\npersonal bridge measurements: " + json.dumps(MEASURED))


def tally(ns: str, path: str, count: int, *variants: str, keepalive: bool = False) -> dict[str, Any]:
    """COUNT requests through the Service from the caller pod, the header variants in turn."""
    args = [f"http://shop{path}", str(count)] + [a for v in variants for a in ("--variant", v)]
    out = kubectl("-n", ns, "exec", "caller", "--", "testserver", "tally", *args, *(["--keepalive"] if keepalive else []))
    result: dict[str, Any] = json.loads(out)
    return result


def servers(result: dict[str, Any], variant: str = "") -> set[str]:
    return set((result["answers"] or {}).get(variant, {}))


def _assert_cluster_answers(ns: str) -> None:
    found = tally(ns, "/", 8)
    assert found["failed"] == 0 and len(servers(found)) == 2 and all(s.startswith("shop-") for s in servers(found))


def shop_state(ns: str, service: str = "shop", deployment: str = "shop") -> dict[str, Any]:
    """What a personal bridge may touch, as it must be again afterwards."""
    slices = kubectl_json("-n", ns, "get", "endpointslices", "-l", f"kubernetes.io/service-name={service}")["items"]
    return {"template": kubectl_json("-n", ns, "get", "deploy", deployment)["spec"]["template"],
            "service": kubectl_json("-n", ns, "get", "service", service)["spec"],
            "slices": sorted(s["metadata"].get("labels", {}).get("endpointslice.kubernetes.io/managed-by") for s in slices),
            "routers": kubectl("-n", "gefyra", "get", "deploy,pods", "-l", "gefyra.dev/router", "-o", "name").split()}


def bridge(env: dict[str, str], ns: str, local: str, *conditions: str, target: str = "deploy/shop") -> dict[str, Any]:
    found: dict[str, Any] = json.loads(ok("bridge", "-N", local, "-n", ns, "--target", target, "-p", "8080:8080",
                                          *conditions, "-o", "json", env=env).stdout)
    return found


def test_two_developers_each_get_their_requests_and_the_rest_stays_with_the_cluster(ns: str) -> None:
    before = shop_state(ns)
    started = time.monotonic()
    mine = bridge(DEV_A, ns, "pb-a", "--match-header-exact", "x-dev:a")
    MEASURED["bridge (personal) to ready"] = round(time.monotonic() - started, 2)
    assert mine["match"] == ["header-exact x-dev:a"] and mine["mode"] == "router"
    bridge(DEV_B, ns, "pb-b", "--match-header-exact", "x-dev:b")
    # The pods were not touched: not one restart, the same spec.
    assert kubectl_json("-n", ns, "get", "deploy", "shop")["spec"]["template"] == before["template"]

    found = tally(ns, "/", 90, "x-dev: a", "x-dev: b", "")
    assert found["failed"] == 0, found
    assert servers(found, "x-dev: a") == {"DEV-A"} and servers(found, "x-dev: b") == {"DEV-B"}
    assert len(servers(found, "")) == 2 and all(s.startswith("shop-") for s in servers(found, "")), found
    # One keep-alive connection carries requests for both developers and the cluster.
    kept = tally(ns, "/", 30, "x-dev: a", "x-dev: b", "", keepalive=True)
    assert kept["connections"] == 1 and kept["failed"] == 0, kept
    assert servers(kept, "x-dev: a") == {"DEV-A"} and servers(kept, "x-dev: b") == {"DEV-B"}
    assert all(s.startswith("shop-") for s in servers(kept, ""))
    # A large chunked upload and an upgraded (WebSocket-like) connection, routed per request.
    upload = kubectl("-n", ns, "exec", "caller", "--", "testserver", "upload", "http://shop/upload", "30000000",
                     "-H", "x-dev: b")
    assert upload.startswith("hello from DEV-B received=30000000 chunked=true"), upload
    upgraded = kubectl("-n", ns, "exec", "caller", "--", "testserver", "upgrade", "http://shop/upgrade", "-H", "x-dev: a")
    assert upgraded == "upgraded: DEV-A echo: ping\n"
    assert kubectl("-n", ns, "exec", "caller", "--", "testserver", "upgrade", "http://shop/upgrade").startswith(
        "upgraded: shop-")
    # status and list show each bridge's rules.
    listed = json.loads(ok("list", "-o", "json", env=DEV_B).stdout)["bridges"]
    assert [b["match"] for b in listed] == [["header-exact x-dev:b"]]
    assert "(only header-exact x-dev:b)" in ok("list", env=DEV_B).stdout

    ok("unbridge", "--all", env=DEV_A)
    found = tally(ns, "/", 40, "x-dev: a", "x-dev: b")
    assert found["failed"] == 0 and servers(found, "x-dev: b") == {"DEV-B"}, found
    assert all(s.startswith("shop-") for s in servers(found, "x-dev: a")), found
    started = time.monotonic()
    ok("unbridge", "--all", env=DEV_B)
    MEASURED["unbridge (last personal) to restored"] = round(time.monotonic() - started, 2)
    assert shop_state(ns)["service"] == before["service"] and shop_state(ns)["slices"] == before["slices"]

    def no_router_left() -> None:  # its pods drain a few seconds after unbridge returns
        assert shop_state(ns) == before

    eventually(no_router_left, timeout=20)
    found = tally(ns, "/", 20, "x-dev: a", "x-dev: b")
    assert found["failed"] == 0 and all(s.startswith("shop-") for v in ("x-dev: a", "x-dev: b") for s in servers(found, v))


@pytest.mark.parametrize(("conditions", "hits", "misses"), [
    (["--match-path-prefix", "/api/"], [("/api/orders", "")], [("/apix", ""), ("/", "")]),
    (["--match-path-regex", "^/items/[0-9]+$"], [("/items/42", "")], [("/items/42x", ""), ("/items/", "")]),
    (["--match-path-prefix", "/api/", "--match-header-exact", "x-dev:a"],
     [("/api/x", "x-dev: a")], [("/api/x", ""), ("/other", "x-dev: a"), ("/api/x", "x-dev: b")]),
], ids=["path-prefix", "path-regex", "path-and-header"])
def test_path_rules_and_conditions_that_must_all_hold(ns: str, conditions: list[str], hits: list[tuple[str, str]],
                                                      misses: list[tuple[str, str]]) -> None:
    bridge(DEV_A, ns, "pb-a", *conditions)
    try:
        for path, header in hits:
            found = tally(ns, path, 6, header)
            assert servers(found, header) == {"DEV-A"} and found["failed"] == 0, (path, header, found)
        for path, header in misses:
            found = tally(ns, path, 6, header)
            assert found["failed"] == 0 and all(s.startswith("shop-") for s in servers(found, header)), (path, found)
    finally:
        ok("unbridge", "--all", env=DEV_A)


def test_a_global_bridge_and_a_personal_one_on_the_same_port_conflict(ns: str) -> None:
    bridge(DEV_A, ns, "pb-a", "--match-header-exact", "x-dev:a")
    try:
        result = gefyra("bridge", "-N", "pb-b", "-n", ns, "--target", "deploy/shop", "-p", "8080:8080", env=DEV_B)
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 7 and len(lines) == 1 and "has personal bridges" in lines[0], result.stderr
    finally:
        ok("unbridge", "--all", env=DEV_A)


@pytest.mark.parametrize("personal", [True, False], ids=["personal", "global"])
def test_no_request_is_lost_while_a_bridge_comes_and_goes(ns: str, personal: bool) -> None:
    """A steady request rate through the Service while dev-a bridges and unbridges, personally or
    globally (both through the router): none fails, and no pod of the workload restarts or changes."""
    count, rate = 400, 40.0
    pods_before = {p["metadata"]["name"]: (p["spec"], [c["restartCount"] for c in p["status"]["containerStatuses"]])
                   for p in kubectl_json("-n", ns, "get", "pods", "-l", "app=shop")["items"]}
    variants = ["--variant", "x-dev: a", "--variant", ""] if personal else []
    load = subprocess.Popen([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "-n", ns, "exec", "caller", "--",
                             "testserver", "tally", "http://shop/", str(count), "--rate", str(rate), *variants],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        bridge(DEV_A, ns, "pb-a", *(["--match-header-exact", "x-dev:a"] if personal else []))
        time.sleep(2)
        ok("unbridge", "--all", env=DEV_A)
        out, _ = load.communicate(timeout=count / rate + 30)
    finally:
        load.kill()
    found = json.loads(out)
    kind = "personal" if personal else "global"
    MEASURED[f"requests lost while bridging and unbridging ({kind})"] = f"{found['failed']} of {count}"
    MEASURED[f"max latency under steady load ({kind}, ms)"] = found["max_ms"]
    assert found["failed"] == 0, json.dumps(found)
    assert servers(found, "x-dev: a" if personal else "") >= {"DEV-A"}  # the bridge was there in between
    pods_after = {p["metadata"]["name"]: (p["spec"], [c["restartCount"] for c in p["status"]["containerStatuses"]])
                  for p in kubectl_json("-n", ns, "get", "pods", "-l", "app=shop")["items"]}
    assert pods_after == pods_before


COMMAND_WORKLOAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: cmd, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: cmd}}}}
  template:
    metadata: {{labels: {{app: cmd}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: {image}
        imagePullPolicy: IfNotPresent
        command: [testserver]
        args: [serve, --tcp, ":9000"]
        ports: [{{containerPort: 8080}}, {{containerPort: 9000}}]
        readinessProbe:
          exec: {{command: [testserver, get, "http://127.0.0.1:8080/healthz"]}}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {{name: cmd, namespace: {ns}}}
spec:
  selector: {{app: cmd}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


@pytest.mark.parametrize("personal", [False, True], ids=["global", "personal"])
def test_a_container_that_sets_its_command_and_has_an_exec_probe_is_bridged(ns: str, personal: bool) -> None:
    devcluster.apply(COMMAND_WORKLOAD.format(ns=ns, image=WORKLOAD_IMAGE))
    kubectl("-n", ns, "rollout", "status", "deploy/cmd", "--timeout=90s")
    # The routers of the tests before this one may still be draining: the state to return to has none.
    eventually(lambda: assert_equal(shop_state(ns, "cmd", "cmd")["routers"], []), timeout=45)
    before = shop_state(ns, "cmd", "cmd")
    pods_before = {p["metadata"]["name"]: p["spec"] for p in kubectl_json("-n", ns, "get", "pods", "-l", "app=cmd")["items"]}
    conditions = ["--match-header-exact", "x-dev:a"] if personal else []
    found = bridge(DEV_A, ns, "pb-a", *conditions, target="deploy/cmd")
    try:
        assert found["mode"] == "router"
        result = json.loads(kubectl("-n", ns, "exec", "caller", "--", "testserver", "tally", "http://cmd/", "20",
                                    "--variant", "x-dev: a", "--variant", ""))
        assert result["failed"] == 0 and servers(result, "x-dev: a") == {"DEV-A"}, result
        if personal:
            assert len(servers(result, "")) == 2 and all(s.startswith("cmd-") for s in servers(result, "")), result
        else:
            assert servers(result, "") == {"DEV-A"}, result
    finally:
        ok("unbridge", "--all", env=DEV_A)

    def as_before() -> None:
        assert shop_state(ns, "cmd", "cmd") == before

    # The routers drain for 3 s and have 13 s to stop; a busy node (CI runs two engines) takes longer.
    eventually(as_before, timeout=45)
    pods_after = kubectl_json("-n", ns, "get", "pods", "-l", "app=cmd")["items"]
    assert {p["metadata"]["name"]: p["spec"] for p in pods_after} == pods_before


def _grpc(ns: str, service: str, method: str, message: str, *metadata: str) -> list[str]:
    """A gRPC call of the test server's Echo from the caller pod: its answers, then its status."""
    args = [a for m in metadata for a in ("-H", m)]
    return kubectl("-n", ns, "exec", "caller", "--", "testserver", "grpc", f"http://{service}", method, message,
                   *args).splitlines()


def test_h2c_and_grpc_are_routed_per_stream(ns: str) -> None:
    """A workload whose Service port says h2c (appProtocol): each gRPC call and each HTTP/2 stream
    goes to whoever its metadata (headers) names, also when they share one connection."""
    devcluster.apply(devcluster.http_workload("api", ns, replicas=2))
    kubectl("-n", ns, "patch", "service", "api", "--type=json",
            "-p", '[{"op": "add", "path": "/spec/ports/0/appProtocol", "value": "kubernetes.io/h2c"}]')
    kubectl("-n", ns, "rollout", "status", "deploy/api", "--timeout=90s")
    bridge(DEV_A, ns, "pb-a", "--match-header-exact", "x-dev:a", target="deploy/api")
    bridge(DEV_B, ns, "pb-b", "--match-header-exact", "x-dev:b", target="deploy/api")
    try:
        assert _grpc(ns, "api", "unary", "hi", "x-dev: a") == ["hello from DEV-A: hi", "grpc-status 0"]
        assert _grpc(ns, "api", "unary", "hi", "x-dev: b") == ["hello from DEV-B: hi", "grpc-status 0"]
        cluster = _grpc(ns, "api", "unary", "hi")
        assert cluster[0].startswith("hello from api-") and cluster[1] == "grpc-status 0", cluster
        # Server streaming: every message of the call from the one it was routed to.
        assert _grpc(ns, "api", "stream", "3", "x-dev: b") == [f"hello from DEV-B #{i}" for i in (1, 2, 3)] + ["grpc-status 0"]
        streamed = _grpc(ns, "api", "stream", "2")
        assert all(line.startswith("hello from api-") for line in streamed[:2]) and streamed[2] == "grpc-status 0"
        # h2c: 30 requests as interleaved streams (9 in flight) of one connection, each routed alone.
        args = ["tally", "http://api/", "30", "--h2c", "--parallel", "9",
                "--variant", "x-dev: a", "--variant", "x-dev: b", "--variant", ""]
        found = json.loads(kubectl("-n", ns, "exec", "caller", "--", "testserver", *args))
        assert found["failed"] == 0 and found["connections"] == 1 and found["protocols"] == {"HTTP/2.0": 30}, found
        assert servers(found, "x-dev: a") == {"DEV-A"} and servers(found, "x-dev: b") == {"DEV-B"}, found
        assert all(s.startswith("api-") for s in servers(found, "")), found
        # HTTP/1.1 callers on the same port are routed too (and passed on over HTTP/2).
        plain = json.loads(kubectl("-n", ns, "exec", "caller", "--", "testserver", "tally", "http://api/", "6",
                                   "--variant", "x-dev: a", "--variant", ""))
        assert plain["failed"] == 0 and servers(plain, "x-dev: a") == {"DEV-A"}, plain
        assert all(s.startswith("api-") for s in servers(plain, "")), plain
    finally:
        ok("unbridge", "--all", env=DEV_A)
        ok("unbridge", "--all", env=DEV_B)
    eventually(lambda: assert_equal(_grpc(ns, "api", "unary", "x", "x-dev: a")[0][:15], "hello from api-"), timeout=30)


def test_a_mirror_gets_a_copy_of_each_matching_request_and_answers_none(ns: str) -> None:
    """--mirror: the caller gets the cluster's answers only, also while the local container is
    stopped; the local container gets a copy of each matching request, bodies included."""
    ok("run", "-i", TEST_IMAGE, "-N", "pb-copy", "-n", ns, "-d", "-e", "MESSAGE=COPY", "-e", "LOG_REQUESTS=1",
       env=DEV_A)
    found = bridge(DEV_A, ns, "pb-copy", "--mirror", "--match-path-prefix", "/orders/")
    try:
        assert found["mirror"] is True and found["mode"] == "router (mirror)", found
        assert "(a copy of requests with path-prefix /orders/)" in ok("list", env=DEV_A).stdout
        answered = tally(ns, "/orders/1", 10, "x-dev: a", "")
        assert answered["failed"] == 0 and all(s.startswith("shop-") for s in servers(answered, "")), answered
        assert all(s.startswith("shop-") for s in servers(answered, "x-dev: a")), answered
        tally(ns, "/other", 4)
        upload = kubectl("-n", ns, "exec", "caller", "--", "testserver", "upload", "http://shop/orders/up", "70000")
        assert upload.startswith("hello from shop-"), upload
        sent = upload.split("sent_sha256=")[1].strip()

        def copies() -> list[str]:
            return [line.split(" request ", 1)[1] for line in ok("logs", "pb-copy", env=DEV_A).stdout.splitlines()
                    if " request " in line]

        def assert_copied() -> None:
            found = copies()
            assert sorted(c.split(" x-dev=")[0] for c in found if c.startswith("GET ")) == ["GET /orders/1 HTTP/1.1"] * 10
            assert [c for c in found if not c.startswith("GET ")] == \
                [f'POST /orders/up HTTP/1.1 x-dev="" body=70000 sha256={sent}'], found

        eventually(assert_copied, timeout=10)
        # The copy's answers never mattered: with the local container paused (as at a breakpoint)
        # or stopped, callers get their answers as before, on keep-alive connections too (a
        # request held back by a copy would fail: each may take 3 s).
        for state, undo in (("pause", "unpause"), ("stop", "")):
            devcluster.engine(state, "pb-copy")
            args = ["tally", "http://shop/orders/2", "10", "--keepalive", "--timeout", "3s"]
            held = json.loads(kubectl("-n", ns, "exec", "caller", "--", "testserver", *args))
            assert held["failed"] == 0 and all(s.startswith("shop-") for s in servers(held)), (state, held)
            if undo:
                devcluster.engine(undo, "pb-copy")
    finally:
        ok("unbridge", "--all", env=DEV_A)
        gefyra("rm", "pb-copy", env=DEV_A)


def _certificates(service: str, ns: str) -> dict[str, bytes]:
    """A CA, a certificate it issued for the Service's names (tls.crt, tls.key, ca.crt), and a key
    that belongs to no certificate here ("other.key")."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gefyra test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    names = [service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"]
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return {"tls.crt": leaf.public_bytes(serialization.Encoding.PEM), "tls.key": pem_key(key),
            "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
            "other.key": pem_key(ec.generate_private_key(ec.SECP256R1()))}


def _tls_secret(ns: str, name: str, data: dict[str, bytes]) -> None:
    import base64

    devcluster.apply(json.dumps({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                                 "metadata": {"name": name, "namespace": ns},
                                 "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}))


HTTPS_WORKLOAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: secure, namespace: {ns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: secure}}}}
  template:
    metadata: {{labels: {{app: secure}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: {image}
        env:
        - {{name: HTTPS_ADDR, value: ":8443"}}
        - {{name: TLS_CERT, value: /tls/tls.crt}}
        - {{name: TLS_KEY, value: /tls/tls.key}}
        ports: [{{containerPort: 8443}}]
        volumeMounts: [{{name: tls, mountPath: /tls, readOnly: true}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: 8080}}
          periodSeconds: 1
      volumes: [{{name: tls, secret: {{secretName: secure-tls}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: secure, namespace: {ns}}}
spec:
  selector: {{app: secure}}
  ports: [{{name: https, port: 443, targetPort: 8443, appProtocol: https}}]
"""


def test_https_is_routed_per_request_with_the_workloads_certificate(ns: str) -> None:
    """An HTTPS workload, its certificate in a Secret: the router ends TLS with it (the caller checks
    it against the CA), routes each request by its header, and speaks TLS on to the pods and to the
    developer. A missing or wrong certificate, or none for an HTTPS port, is one line at `bridge`."""
    pems = _certificates("secure", ns)
    _tls_secret(ns, "secure-tls", {k: pems[k] for k in ("tls.crt", "tls.key", "ca.crt")})
    _tls_secret(ns, "wrong-tls", {"tls.crt": pems["tls.crt"], "tls.key": pems["other.key"]})
    devcluster.apply(HTTPS_WORKLOAD.format(ns=ns, image=WORKLOAD_IMAGE))
    kubectl("-n", ns, "rollout", "status", "deploy/secure", "--timeout=90s")
    ok("run", "-i", TEST_IMAGE, "-N", "pb-sa", "-n", ns, "-d", "-e", "MESSAGE=DEV-A", "-e", "HTTPS_ADDR=:8443",
       env=DEV_A)
    # The router of an earlier test may still be draining: none is around before, none after.
    eventually(lambda: assert_equal(shop_state(ns, "secure", "secure")["routers"], []), timeout=30)
    before = shop_state(ns, "secure", "secure")

    def get_as(trusted: dict[str, bytes], *headers: str, check: bool = True) -> str:
        command = [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), "-n", ns, "exec", "caller", "--", "testserver",
                   "get", "https://secure/", "--ca-pem", trusted["ca.crt"].decode(),
                   *[a for h in headers for a in ("-H", h)]]
        done = subprocess.run(command, capture_output=True, text=True, check=check, timeout=30)
        # An answer is on stdout; kubectl may log its own WebSocket notices on stderr ("Unknown
        # stream id 1, discarding message"). A refusal is looked for in both.
        return done.stdout if check else done.stdout + done.stderr

    def get(*headers: str) -> str:
        return get_as(pems, *headers)

    assert get().startswith("hello from secure-")
    base = ["bridge", "-N", "pb-sa", "-n", ns, "--target", "deploy/secure", "-p", "8443:8443",
            "--match-header-exact", "x-dev:a"]
    for extra, said in ((["--tls-secret", "nope"], f"error: Secret nope in namespace {ns} not found"),
                        (["--tls-secret", "wrong-tls"], f"error: Secret wrong-tls in namespace {ns} cannot serve "
                                                        "HTTPS: its key (tls.key) does not belong to its certificate"),
                        ([], "port 8443 speaks HTTPS (its Service port says so)")):
        refused = gefyra(*base, *extra, env=DEV_A)
        assert refused.returncode != 0 and said in refused.stderr, refused.stderr
        assert json.loads(ok("list", "-o", "json", env=DEV_A).stdout)["bridges"] == [], "nothing half-done"
    found = json.loads(ok(*base, "--tls-secret", "secure-tls", "-o", "json", env=DEV_A).stdout)
    try:
        assert found["mode"] == "router", found
        copies = kubectl_json("-n", "gefyra", "get", "secrets", "-l", "gefyra.dev/client=dev-a")["items"]
        assert [(c["type"], c["metadata"]["ownerReferences"][0]["name"]) for c in copies] == \
            [("gefyra.dev/tls", found["name"])], copies
        for _ in range(4):
            assert get("x-dev: a").startswith("hello from DEV-A path=/ proto=HTTP/1.1 scheme=https")
            mine = get()
            assert mine.startswith("hello from secure-") and mine.rstrip().endswith("scheme=https"), mine
    finally:
        ok("unbridge", "--all", env=DEV_A)
    assert get("x-dev: a").startswith("hello from secure-")
    # The router checks the pods' certificate: given a certificate of another CA (which the caller
    # now trusts), it refuses to pass requests on to the pods, unless told to skip the check.
    other = _certificates("secure", ns)
    _tls_secret(ns, "other-tls", {k: other[k] for k in ("tls.crt", "tls.key", "ca.crt")})
    for skip, answer in ((False, "HTTP 502"), (True, "hello from secure-")):
        ok(*base, "--tls-secret", "other-tls", *(["--tls-insecure-skip-verify"] if skip else []), env=DEV_A)
        try:
            assert get_as(other, "x-dev: a").startswith("hello from DEV-A")
            assert answer in get_as(other, check=False), (skip, answer)
        finally:
            ok("unbridge", "--all", env=DEV_A)
    eventually(lambda: assert_equal(shop_state(ns, "secure", "secure"), before), timeout=30)
    eventually(lambda: assert_equal(
        kubectl_json("-n", "gefyra", "get", "secrets", "-l", "gefyra.dev/client=dev-a")["items"], []), timeout=30)


def test_a_router_starts_while_the_first_bridge_of_its_target_is_on_its_way(ns: str) -> None:
    """A bridge whose client has not steered its end yet (made with kubectl here, so no client
    ever will): the router of its target starts ahead of it, carrying nothing, and the Service
    still leads to the workload; once the bridge is gone, so is the router, and the workload is
    as it was."""
    eventually(lambda: assert_equal(shop_state(ns)["routers"], []), timeout=30)
    before = shop_state(ns)
    name = unique("gfy-pb-coming")
    kubectl("create", "-f", "-", stdin=json.dumps({
        "apiVersion": "gefyra.dev/v1alpha1", "kind": "GefyraBridge", "metadata": {"name": name, "namespace": "gefyra"},
        "spec": {"client": "dev-a", "localContainer": "pb-a", "match": [{"kind": "header-exact", "header": "x-dev",
                                                                        "value": "a"}],
                 "target": {"namespace": ns, "kind": "deployment", "name": "shop", "container": "server"},
                 "ports": [{"remote": 8080, "local": 8080}]}}))
    try:
        def router_started() -> None:
            assert kubectl("-n", "gefyra", "get", "deploy", "-l", "gefyra.dev/router", "-o", "name").split()
            bridge = kubectl_json("-n", "gefyra", "get", "gefyrabridge", name)
            assert bridge.get("status", {}).get("phase") == "Pending", bridge.get("status")
            assert "gefyra.dev/steered" not in (bridge["metadata"].get("annotations") or {})

        eventually(router_started, timeout=30)
        assert kubectl_json("-n", ns, "get", "service", "shop")["spec"] == before["service"]
        found = tally(ns, "/", 8, "x-dev: a")
        assert found["failed"] == 0 and all(s.startswith("shop-") for s in servers(found, "x-dev: a")), found
    finally:
        kubectl("-n", "gefyra", "delete", "gefyrabridge", name, "--wait=false")
    eventually(lambda: assert_equal(shop_state(ns), before), timeout=60)
