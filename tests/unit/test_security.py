"""The pure logic behind gefyra's shared-cluster safety: what the manifests grant (and that they
meet Pod Security "restricted"), stowaway's forwards (and the kernel path's DNAT rules), what the
operator accepts from objects it reads, carrier's configuration board, the client id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from gefyra import errors
from gefyra.client import manifests
from gefyra.core.model import identity
from gefyra.core.model.settings import Settings
from gefyra.core.spi.tunnel import ServerForward
from gefyra.plugins.interceptor_nginx import board as board_module
from gefyra.plugins.interceptor_nginx import carrier
from gefyra.plugins.wireguard import WireGuardTunnel
from gefyra.plugins.wireguard.server import dnat_rules, forwards_request


def _docs(lifecycle: str = manifests.WITH_CLIENTS) -> list[dict[str, Any]]:
    return manifests.cluster_side(Settings(client_id="unit"), WireGuardTunnel(), lifecycle)


def _named(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def test_no_right_to_exec_or_secrets_and_cluster_wide_rights_are_few() -> None:
    rules = [(d["kind"], d["metadata"]["name"], r) for d in _docs() if d["kind"] in ("Role", "ClusterRole")
             for r in d["rules"]]
    assert not any("pods/exec" in r["resources"] for _, _, r in rules)
    # Secrets: only the certificate copies of HTTPS bridges, in namespace gefyra: the operator
    # reads them, a developer (gefyra-user, bound there) creates them, nobody lists any.
    assert {(kind, name, tuple(r["verbs"])) for kind, name, r in rules if "secrets" in r["resources"]} == {
        ("Role", "gefyra-operator", ("get",)), ("ClusterRole", "gefyra-user", ("create",))}
    copies = _named("ValidatingAdmissionPolicy", "gefyra-tls-copies")["spec"]
    assert copies["matchConstraints"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "gefyra"}}
    assert "object.type == 'gefyra.dev/tls'" in [v["expression"] for v in copies["validations"]]
    assert _named("ValidatingAdmissionPolicyBinding", "gefyra-tls-copies")["spec"]["validationActions"] == ["Deny"]
    operator = _named("ClusterRole", "gefyra-operator")["rules"]
    assert {(tuple(r["resources"]), tuple(r["verbs"])) for r in operator} == {
        (("pods",), ("get", "list", "watch", "patch")), (("deployments", "statefulsets"), ("get",)),
        (("services",), ("list", "watch", "patch")),
        (("endpointslices",), ("get", "list", "watch", "create", "patch", "delete")),
        (("tokenreviews",), ("create",))}  # whether a router pod's token is one of its pods' (it says no more)
    in_gefyra = _named("Role", "gefyra-operator")["rules"]
    assert {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "create", "patch", "delete"]} in in_gefyra
    user = _named("ClusterRole", "gefyra-user")["rules"]
    assert all(r.get("resourceNames") or r["resources"] in (["gefyraclients", "gefyrabridges"], ["pods", "events"])
               or (r["resources"], r["verbs"]) in ((["pods/portforward"], ["get", "create"]), (["secrets"], ["create"]))
               for r in user)


def test_only_the_operator_container_gets_a_token_and_capabilities_are_dropped() -> None:
    pod = _named("Deployment", "gefyra-stowaway")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert _named("ServiceAccount", "gefyra-operator")["automountServiceAccountToken"] is False
    containers = {c["name"]: c for c in pod["containers"]}
    token_mounts = {name: [m for m in c["volumeMounts"] if m["name"] == "api-token"] for name, c in containers.items()}
    assert not token_mounts["stowaway"] and token_mounts["operator"]
    for c in containers.values():
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert {"key": "public-key", "path": "public-key"} in next(
        v for v in pod["volumes"] if v["name"] == "server-public-key")["secret"]["items"]


def test_manifest_digest_does_not_depend_on_who_installed() -> None:
    def digest(lifecycle: str) -> str:
        deployment = next(d for d in _docs(lifecycle) if d["kind"] == "Deployment")
        return str(deployment["metadata"]["annotations"]["gefyra.dev/manifests"])

    assert digest(manifests.INSTALLED) == digest(manifests.WITH_CLIENTS)
    namespace = next(d for d in _docs(manifests.INSTALLED) if d["kind"] == "Namespace")
    assert namespace["metadata"]["annotations"]["gefyra.dev/lifecycle"] == "install"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


#: Pod Security's "safe" sysctls (the only ones baseline and restricted admit).
_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                 "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                 "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                 "net.ipv4.tcp_keepalive_probes"}


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What Pod Security "restricted" (v1.30) would refuse in ``pod``, plus a writable root file system."""
    found, pod_context = [], pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(flag)
    found += [f"volume {v['name']}" for v in pod["volumes"] if not {"emptyDir", "secret", "configMap", "projected",
                                                                    "downwardAPI"} & set(v)]
    found += [f"sysctl {s['name']}" for s in pod_context.get("sysctls") or [] if s["name"] not in _SAFE_SYSCTLS]
    for c in pod["containers"]:
        context, name = c.get("securityContext") or {}, c["name"]
        def field(key: str) -> Any:
            return context.get(key, pod_context.get(key))  # noqa: B023 - used at once
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: privilege escalation")
        if context.get("capabilities", {}).get("drop") != ["ALL"] or set(context.get("capabilities", {}).get("add") or
                                                                          []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities")
        if field("runAsNonRoot") is not True or field("runAsUser") == 0:
            found.append(f"{name}: root")
        if (field("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccomp")
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: writable root")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            found.append(f"{name}: host port")
    return found


def test_the_cluster_side_pod_meets_pod_security_restricted() -> None:
    pod = _named("Deployment", "gefyra-stowaway")["spec"]["template"]["spec"]
    assert _restricted_violations(pod) == []
    pod_context = pod["securityContext"]
    assert {"name": "net.ipv4.ping_group_range", "value": "65532 65532"} in pod_context["sysctls"]
    assert pod_context["runAsUser"] == pod_context["fsGroup"] == 65532


def test_the_kernel_path_server_end_is_privileged_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEFYRA_WIREGUARD_SERVER", "kernel")
    docs = _docs()
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    operator = next(c for c in pod["containers"] if c["name"] == "operator")["securityContext"]
    assert operator["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]} and operator["runAsUser"] == 0
    assert "operator: root" in _restricted_violations(pod) and "stowaway: capabilities" in _restricted_violations(pod)
    monkeypatch.setenv("GEFYRA_WIREGUARD_SERVER", "kernal")
    with pytest.raises(errors.UsageError, match="GEFYRA_WIREGUARD_SERVER='kernal' is not a server end"):
        _docs()


def test_the_forwards_request_is_checked_sorted_and_without_duplicates() -> None:
    request = forwards_request([ServerForward(20001, "198.18.0.2", ("10.244.0.8", "10.244.0.7", "10.244.0.8")),
                                ServerForward(20002, "198.18.0.3", ())])
    assert request == {"forwards": [{"port": 20001, "address": "198.18.0.2", "sources": ["10.244.0.7", "10.244.0.8"]},
                                    {"port": 20002, "address": "198.18.0.3", "sources": []}]}
    assert json.loads(json.dumps(request)) == request


def test_ownership_policy_checks_owner_and_target_rights() -> None:
    policy = _named("ValidatingAdmissionPolicy", "gefyra-ownership")["spec"]
    expressions = " ".join(v["expression"] for v in policy["validations"])
    assert "request.userInfo.username" in expressions and "check('patch')" in expressions
    assert "administer" in policy["matchConditions"][0]["expression"]
    assert _named("ValidatingAdmissionPolicyBinding", "gefyra-ownership")["spec"]["validationActions"] == ["Deny"]


def test_dnat_rules_match_the_bridges_pods_and_never_the_tunnel() -> None:
    rules = dnat_rules([ServerForward(20000, "198.18.0.2", ("10.244.0.7", "10.244.0.8"))])
    assert len(rules) == 2
    for rule in rules:
        assert rule[rule.index("!") + 1:rule.index("!") + 3] == ["-i", "wg0"]
        assert rule[rule.index("--to-destination") + 1] == "198.18.0.2:20000"
    assert {r[r.index("-s") + 1] for r in rules} == {"10.244.0.7/32", "10.244.0.8/32"}
    assert dnat_rules([ServerForward(20000, "198.18.0.2", ())]) == []  # no pods: nothing reaches the client


@pytest.mark.parametrize("rule", [
    ServerForward(0, "198.18.0.2", ("10.244.0.7",)),
    ServerForward(70000, "198.18.0.2", ("10.244.0.7",)),
    ServerForward(20000, "10.0.0.2", ("10.244.0.7",)),  # outside the tunnel's range
    ServerForward(20000, "198.18.0.2,0.0.0.0", ("10.244.0.7",)),
    ServerForward(20000, "198.18.0.2", ("10.244.0.7 -j ACCEPT",)),
    ServerForward(20000, "198.18.0.2", ("0.0.0.0/0",)),
])
def test_dnat_rules_and_forwards_refuse_unchecked_values(rule: ServerForward) -> None:
    with pytest.raises(errors.UsageError):
        dnat_rules([rule])
    with pytest.raises(errors.UsageError):
        forwards_request([rule])


def test_carrier_board_answers_each_pod_only_about_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(board_module, "LONG_POLL", 0.2)

    async def main() -> None:
        board = board_module.ConfigBoard()
        news: list[float] = []

        def report() -> None:
            news.append(anyio.current_time())

        pod = ("10.0.0.1", "server")
        assert (await board.answer("10.0.0.1", "", "", report)).status == 404  # not a bridged pod
        board.want(pod, "v1", b'{"version": "v1"}')
        answer = await board.answer("10.0.0.1", "", "", report)
        assert answer.status == 200 and json.loads(answer.body)["version"] == "v1" and not news
        assert (await board.answer("10.0.0.2", "", "", report)).status == 404
        asked = anyio.current_time()
        answer = await board.answer("10.0.0.1", "c1", "v1", report)  # applied, nothing newer: held, then 304
        assert answer.status == 304 and board.applied(pod) == "v1"
        assert len(news) == 1 and news[0] - asked < 0.1  # reported at once, not when the hold ends
        async with anyio.create_task_group() as tg:
            results: list[int] = []

            async def poll() -> None:
                results.append((await board.answer("10.0.0.1", "c1", "v1", report)).status)

            tg.start_soon(poll)
            await anyio.sleep(0.05)
            board.want(pod, "v2", b'{"version": "v2"}')  # a held request gets it at once
        assert results == [200]
        board.forget(pod)
        assert (await board.answer("10.0.0.1", "c1", "v2", report)).status == 404
        assert len(news) == 1

    anyio.run(main)


def test_carrier_board_tells_two_carriers_of_one_pod_apart_by_container_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(board_module, "LONG_POLL", 0.05)

    async def main() -> None:
        board = board_module.ConfigBoard()
        board.want(("10.0.0.1", "web"), "w1", b'{"version": "w1"}')
        board.want(("10.0.0.1", "admin"), "a1", b'{"version": "a1"}')
        assert (await board.answer("10.0.0.1", "id-web", "", lambda: None)).status == 404  # which one is it?
        board.know_containers("10.0.0.1", {"containerd://id-web": "web", "id-admin": "admin"})
        assert json.loads((await board.answer("10.0.0.1", "id-web", "", lambda: None)).body)["version"] == "w1"
        assert json.loads((await board.answer("10.0.0.1", "id-admin", "", lambda: None)).body)["version"] == "a1"
        assert json.loads((await board.answer("10.0.0.1", "admin", "", lambda: None)).body)["version"] == "a1"

    anyio.run(main)


def test_carrier_config_refuses_a_host_that_is_not_an_address() -> None:
    from gefyra.core.model.routing import Forward

    with pytest.raises(ValueError):
        carrier.carrier_config([Forward(8080, "10.0.0.1; include /etc/passwd", 20000)], {})


def test_default_client_id_is_random_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    first = identity.default_client_id()
    assert first == identity.default_client_id() == (tmp_path / "gefyra" / "client-id").read_text().strip()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "other-machine"))
    assert identity.default_client_id() != first


def test_one_operation_per_client_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gefyra.client.lock import client_lock

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))

    async def main() -> None:
        order: list[str] = []

        async def operation(name: str) -> None:
            async with client_lock("dev-a", timeout=5):
                order.append(f"{name} in")
                await anyio.sleep(0.2)
                order.append(f"{name} out")

        async with anyio.create_task_group() as tg:
            tg.start_soon(operation, "first")
            await anyio.sleep(0.05)
            tg.start_soon(operation, "second")
            async with client_lock("dev-b", timeout=0.1):
                order.append("other client")  # another client id is not held up
        assert order == ["first in", "other client", "first out", "second in", "second out"]
        async with client_lock("dev-a", timeout=1):
            with pytest.raises(errors.ConflictError, match="still running"):
                async with client_lock("dev-a", timeout=0.2):
                    pass

    anyio.run(main)


def test_the_lock_file_goes_with_the_operation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gefyra.client.lock import client_lock

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))

    async def main() -> None:
        async with client_lock("dev-a", timeout=1):
            assert (tmp_path / "gefyra" / "locks" / "dev-a.lock").exists()
        assert list((tmp_path / "gefyra" / "locks").iterdir()) == []

    anyio.run(main)
