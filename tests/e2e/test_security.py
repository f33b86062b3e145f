"""gefyra in a shared cluster: an admin installs the cluster side, developers with nothing but the
`gefyra-user` role (and their own namespace's rights) use it, and cannot see or take each other's
registrations, bridges or traffic. Real RBAC with ServiceAccount tokens, real admission.

Tests run in order on one installed cluster side."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e import devcluster
from tests.e2e.devcluster import KUBECONFIG, TEST_IMAGE, engine, eventually, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import gefyra, ok

pytestmark = pytest.mark.e2e

#: The operator's effective rights, as README "What gefyra installs and may do" lists them:
#: in namespace gefyra, and in any other namespace.
OPERATOR_RIGHTS_IN_GEFYRA = {
    "gefyrabridges.gefyra.dev": {"get", "list", "watch", "patch", "delete", "administer"},
    "gefyraclients.gefyra.dev": {"get", "list", "watch", "patch", "delete", "administer"},
    "gefyrabridges.gefyra.dev/status": {"patch"},
    "gefyraclients.gefyra.dev/status": {"patch"},
    "pods": {"get", "list", "watch", "patch"},
    "deployments.apps": {"get", "list", "create", "patch", "delete"},
    "secrets": {"get"},
    "statefulsets.apps": {"get"},
    "services": {"list", "watch", "patch"},
    "endpointslices.discovery.k8s.io": {"get", "list", "watch", "create", "patch", "delete"},
    "tokenreviews.authentication.k8s.io": {"create"},
}
OPERATOR_RIGHTS_ELSEWHERE = {
    "pods": {"get", "list", "watch", "patch"},
    "deployments.apps": {"get"},
    "statefulsets.apps": {"get"},
    "services": {"list", "watch", "patch"},
    "endpointslices.discovery.k8s.io": {"get", "list", "watch", "create", "patch", "delete"},
    "tokenreviews.authentication.k8s.io": {"create"},
}
#: What every authenticated identity may do anyway.
_SELF_REVIEWS = {"selfsubjectreviews.authentication.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io",
                 "selfsubjectrulesreviews.authorization.k8s.io"}


def can_i_list(user: str, namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list` as ``user``: resource -> verbs (API resources only)."""
    rights: dict[str, set[str]] = {}
    for line in kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).splitlines()[1:]:
        if line.startswith(" ") or not line.strip():
            continue  # non-resource URLs
        resource, _, rest = line.partition(" ")
        verbs = rest[rest.rindex("[") + 1:rest.rindex("]")].split()
        if resource not in _SELF_REVIEWS:
            rights.setdefault(resource, set()).update(verbs)
    return rights


class User:
    """A developer: a ServiceAccount with a token in a kubeconfig of its own."""

    def __init__(self, name: str, namespace: str, directory: Path) -> None:
        self.name, self.namespace = name, namespace
        self.username = f"system:serviceaccount:{namespace}:{name}"
        self.client_id = unique(f"gfy-{name}")
        kubectl("-n", namespace, "create", "serviceaccount", name)
        kubectl("-n", "gefyra", "create", "rolebinding", unique(f"gfy-test-{name}"), "--clusterrole=gefyra-user",
                f"--serviceaccount={namespace}:{name}")
        token = kubectl("-n", namespace, "create", "token", name, "--duration=2h").strip()
        admin = yaml.safe_load(KUBECONFIG.read_text())
        cluster = admin["clusters"][0]
        self.kubeconfig = directory / f"{name}.kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
            "current-context": name}))

    def may_work_in(self, namespace: str, role: str = "edit") -> None:
        kubectl("-n", namespace, "create", "rolebinding", f"{self.name}-{role}", f"--clusterrole={role}",
                f"--serviceaccount={self.namespace}:{self.name}")

    def gefyra(self, *args: str, client_id: str | None = None) -> subprocess.CompletedProcess[str]:
        return gefyra("--client-id", client_id or self.client_id, *args, kubeconfig=str(self.kubeconfig))

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.gefyra(*args)
        assert result.returncode == 0, f"{self.name}: gefyra {' '.join(args)}: {result.stderr}"
        return result

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(devcluster.KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """An admin-installed cluster side; alice may work in namespace `a`, bob in `b`; each
    namespace has the test server `web` and a `caller` pod."""
    gefyra("down")
    ok("install", "--apply")
    users_ns, a, b = unique("gfy-test-users"), unique("gfy-test-sec-a"), unique("gfy-test-sec-b")
    for name in (users_ns, a, b):
        kubectl("create", "namespace", name)
    directory = tmp_path_factory.mktemp("users")
    alice, bob = User("alice", users_ns, directory), User("bob", users_ns, directory)
    alice.may_work_in(a)
    alice.may_work_in(b, "view")  # she may look, not patch pods
    bob.may_work_in(b)
    for ns in (a, b):
        devcluster.apply(devcluster.http_workload("web", ns, replicas=1))
        devcluster.apply(devcluster.client_pod("caller", ns))
    for ns in (a, b):
        kubectl("-n", ns, "rollout", "status", "deploy/web", "--timeout=90s")
        kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")
    yield {"alice": alice, "bob": bob, "a": a, "b": b}
    for user in (alice, bob):
        user.gefyra("down")
    gefyra("down")
    for name in (users_ns, a, b):
        kubectl("delete", "namespace", name, "--wait=false", check=False)
    for item in kubectl_json("-n", "gefyra", "get", "rolebindings")["items"]:
        if item["metadata"]["name"].startswith("gfy-test-"):
            kubectl("-n", "gefyra", "delete", "rolebinding", item["metadata"]["name"], check=False)
    ok("uninstall")


def get(ns: str, url: str) -> str:
    return kubectl("-n", ns, "exec", "caller", "--", "testserver", "get", url, "--timeout", "3s")


def test_operator_has_exactly_the_documented_rights(shared: dict[str, object]) -> None:
    operator = "system:serviceaccount:gefyra:gefyra-operator"
    assert can_i_list(operator, "gefyra") == OPERATOR_RIGHTS_IN_GEFYRA
    assert can_i_list(operator, str(shared["a"])) == OPERATOR_RIGHTS_ELSEWHERE
    readme = (devcluster.REPO / "README.md").read_text()
    for resource, verbs in (OPERATOR_RIGHTS_IN_GEFYRA | OPERATOR_RIGHTS_ELSEWHERE).items():
        assert f"| {resource} | {', '.join(sorted(verbs))} |" in readme, resource
    # Only the operator's container has a token; the tunnel's (which parses UDP from a NodePort) none,
    # as the running pod shows it (after admission, which adds the token's mount where it is due).
    pod = devcluster.stowaway_pod()
    mounts = {c["name"]: [m["mountPath"] for m in c.get("volumeMounts", [])] for c in pod["spec"]["containers"]}
    token = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert token not in mounts["stowaway"] and token in mounts["operator"], mounts


def test_developer_with_gefyra_user_rights(shared: dict[str, object]) -> None:
    alice, a, b = shared["alice"], str(shared["a"]), str(shared["b"])
    assert isinstance(alice, User)
    refused = alice.kubectl("-n", "gefyra", "get", "secrets")
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    # She may create a Secret there only as a certificate copy of her own bridge (the policy
    # gefyra-tls-copies): no other type, nobody else's name on it.
    made = alice.kubectl("-n", "gefyra", "create", "secret", "generic", "gfy-test-x", "--from-literal=a=b")
    assert made.returncode != 0 and "only create certificate copies of type gefyra.dev/tls" in made.stderr, made.stderr
    copy = {"apiVersion": "v1", "kind": "Secret", "type": "gefyra.dev/tls",
            "metadata": {"name": "gfy-test-copy", "namespace": "gefyra", "annotations": {"gefyra.dev/owner": "bob"},
                         "ownerReferences": [{"apiVersion": "gefyra.dev/v1alpha1", "kind": "GefyraBridge",
                                              "name": "b", "uid": "00000000-0000-0000-0000-000000000000"}]}}
    made = alice.kubectl("create", "-f", "-", stdin=json.dumps(copy))
    assert made.returncode != 0 and f"annotation gefyra.dev/owner must name you ({alice.username})" in made.stderr, \
        made.stderr
    alice.ok("up")
    alice.ok("run", "-i", TEST_IMAGE, "-N", f"{alice.client_id}-web", "-n", a, "-d", "-e", "MESSAGE=ALICE")
    alice.ok("bridge", "-N", f"{alice.client_id}-web", "-n", a, "--target", "deploy/web", "-p", "8080:8080")
    assert eventually(lambda: get(a, "http://web/"), timeout=10).startswith("hello from ALICE")
    client = kubectl_json("-n", "gefyra", "get", "gefyraclient", alice.client_id)
    assert client["spec"]["owner"] == alice.username

    # A namespace she may only view: refused by admission, with the reason, nothing made.
    other = alice.gefyra("-q", "bridge", "-N", f"{alice.client_id}-web", "-n", b, "--target", "deploy/web",
                         "-p", "8080:8080")
    assert other.returncode != 0
    assert other.stderr.count("\n") == 1 and f"may not patch pods and Services in namespace {b}" in other.stderr, other.stderr
    assert len(kubectl_json("-n", "gefyra", "get", "gefyrabridges")["items"]) == 1
    assert get(b, "http://web/").startswith("hello from web-")


def test_second_user_cannot_take_over_a_client_or_bridge_for_it(shared: dict[str, object]) -> None:
    alice, bob, b = shared["alice"], shared["bob"], str(shared["b"])
    assert isinstance(alice, User) and isinstance(bob, User)
    key_before = kubectl_json("-n", "gefyra", "get", "gefyraclient", alice.client_id)["spec"]["publicKey"]
    # From another machine (here: the other engine, where no tunnel end of alice's runs).
    taken = bob.gefyra("--runtime", "podman", "up", client_id=alice.client_id)
    assert taken.returncode != 0 and f"belongs to {alice.username}" in taken.stderr, taken.stderr
    assert kubectl_json("-n", "gefyra", "get", "gefyraclient", alice.client_id)["spec"]["publicKey"] == key_before
    deleted = bob.kubectl("-n", "gefyra", "delete", "gefyraclient", alice.client_id)
    assert deleted.returncode != 0 and "belongs to" in deleted.stderr

    def bridge(owner: str, name: str) -> str:
        return json.dumps({
            "apiVersion": "gefyra.dev/v1alpha1", "kind": "GefyraBridge",
            "metadata": {"name": name, "namespace": "gefyra"},
            "spec": {"client": alice.client_id, "owner": owner, "localContainer": "x",
                     "target": {"namespace": b, "kind": "deployment", "name": "web", "container": "server"},
                     "ports": [{"remote": 8080, "local": 8080}]}})

    # In alice's name: refused by admission.
    posed = bob.kubectl("create", "-f", "-", stdin=bridge(alice.username, unique("gfy-test-posed")))
    assert posed.returncode != 0 and "spec.owner must name you" not in posed.stderr and "belongs to" in posed.stderr
    # In his own name, for her client: the operator refuses it on the bridge's status.
    name = unique("gfy-test-foreign")
    created = bob.kubectl("create", "-f", "-", stdin=bridge(bob.username, name))
    assert created.returncode == 0, created.stderr

    def refused() -> None:
        status = kubectl_json("-n", "gefyra", "get", "gefyrabridge", name).get("status") or {}
        assert status.get("phase") == "Invalid" and f"not to {bob.username}" in status.get("message", ""), status

    eventually(refused, timeout=15)
    assert get(b, "http://web/").startswith("hello from web-")
    kubectl("-n", "gefyra", "delete", "gefyrabridge", name, "--timeout=30s")


def test_clients_and_pods_cannot_reach_other_clients_bridges(shared: dict[str, object]) -> None:
    """bob's container knocks at alice's bridge port on stowaway's tunnel address and at alice's
    own tunnel address; a pod that is not bridged knocks at stowaway's pod IP. All refused, and
    alice's bridge still answers through its Service."""
    alice, bob, a, b = shared["alice"], shared["bob"], str(shared["a"]), str(shared["b"])
    assert isinstance(alice, User) and isinstance(bob, User)
    bob.ok("up")
    prober = f"{bob.client_id}-probe"
    bob.ok("run", "-i", TEST_IMAGE, "-N", prober, "-n", b, "-d")
    bridge = next(i for i in kubectl_json("-n", "gefyra", "get", "gefyrabridges")["items"]
                  if i["spec"]["client"] == alice.client_id)
    proxy_port = next(iter(bridge["status"]["proxyPorts"].values()))
    alice_address = kubectl_json("-n", "gefyra", "get", "gefyraclient", alice.client_id)["status"]["address"]
    stowaway_ip = kubectl_json("-n", "gefyra", "get", "pods", "-l", "app.kubernetes.io/name=gefyra-stowaway"
                               )["items"][0]["status"]["podIP"]

    def knock(*command: str) -> subprocess.CompletedProcess[str]:
        return engine("exec", prober, "testserver", "get", *command, "--timeout", "2s", check=False)

    # The knock reaches the cluster at all (so a refusal below is isolation, not a broken tunnel).
    assert knock(f"http://web.{a}/").stdout.startswith("hello from ALICE")
    for url in (f"http://198.18.0.1:{proxy_port}/", f"http://{alice_address}:{proxy_port}/",
                f"http://{alice_address}:8080/"):
        assert knock(url).returncode != 0, url
    unbridged = kubectl("-n", b, "exec", "caller", "--", "sh", "-c",
                        f"testserver get http://{stowaway_ip}:{proxy_port}/ --timeout 2s >/dev/null 2>&1; echo $?")
    assert unbridged.strip() != "0"
    assert get(a, "http://web/").startswith("hello from ALICE")


def test_developer_down_keeps_the_admins_install(shared: dict[str, object]) -> None:
    alice, a = shared["alice"], str(shared["a"])
    assert isinstance(alice, User)
    alice.ok("down")
    assert get(a, "http://web/").startswith("hello from web-")
    assert kubectl("get", "namespace", "gefyra", "-o", "name").strip() == "namespace/gefyra"
