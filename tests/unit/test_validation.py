"""Every input is checked at the boundary: a bad flag, environment variable or API argument gets one
line (what, why, what to do) and exit code 2 before anything connects; the CRDs refuse the same
values on the cluster's side."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from click.testing import CliRunner, Result

from gefyra import errors
from gefyra.cli import main
from gefyra.client.session import Gefyra
from gefyra.core.model import validation
from gefyra.core.model.requests import BridgeRequest, RunRequest
from gefyra.core.model.settings import ENVIRONMENT, Settings
from gefyra.plugins.wireguard.keys import generate_keypair

REPO = Path(__file__).resolve().parents[2]
#: Were a check late, the command would get as far as loading this and fail with exit code 3.
MISSING_KUBECONFIG = "/nonexistent/gefyra-test/kubeconfig"

BRIDGE = ["bridge", "-N", "myapp", "--target", "deploy/api", "-p", "80:8080"]
RUN = ["run", "-i", "myapp:dev", "-N", "myapp"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUBECONFIG", MISSING_KUBECONFIG)


def gefyra(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, args, env=env)


def replaced(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with the value after ``flag`` replaced."""
    at = args.index(flag) + 1
    return [*args[:at], value, *args[at + 1:]]


# (arguments, environment, what the error line must name)
BAD: list[Any] = [
    pytest.param(replaced(BRIDGE, "-p", "0:1"), {}, "'0:1'", id="bridge-port-zero"),
    pytest.param(replaced(BRIDGE, "-p", "70000:1"), {}, "70000", id="bridge-port-too-big"),
    pytest.param(replaced(BRIDGE, "-p", "²:8080"), {}, "'²:8080'", id="bridge-port-superscript-digit"),
    pytest.param(replaced(BRIDGE, "-p", "٣:8080"), {}, "'٣:8080'", id="bridge-port-arabic-digit"),
    pytest.param(replaced(BRIDGE, "-p", "80"), {}, "REMOTE:LOCAL", id="bridge-port-no-local"),
    pytest.param(replaced(BRIDGE, "-p", "80:8080:1"), {}, "'80:8080:1'", id="bridge-port-three-parts"),
    pytest.param([*BRIDGE, "-p", "80:9090"], {}, "given twice", id="bridge-port-twice"),
    pytest.param(replaced(BRIDGE, "-N", "a;b"), {}, "'a;b'", id="bridge-name-semicolon"),
    pytest.param(replaced(BRIDGE, "-N", "x'y"), {}, "-N/--name", id="bridge-name-quote"),
    pytest.param(replaced(BRIDGE, "-N", "a/b"), {}, "'a/b'", id="bridge-name-slash"),
    pytest.param(replaced(BRIDGE, "-N", "MyApp"), {}, "lowercase only", id="bridge-name-uppercase"),
    pytest.param(replaced(BRIDGE, "--target", "deploy/a;b"), {}, "'deploy/a;b'", id="target-semicolon"),
    pytest.param(replaced(BRIDGE, "--target", "deploy/x y"), {}, "'deploy/x y'", id="target-space"),
    pytest.param(replaced(BRIDGE, "--target", "deploy/"), {}, "'deploy/'", id="target-empty-name"),
    pytest.param(replaced(BRIDGE, "--target", "deploy/api/"), {}, "'deploy/api/'", id="target-empty-container"),
    pytest.param(replaced(BRIDGE, "--target", "deploy/a/b/c"), {}, "'deploy/a/b/c'", id="target-four-parts"),
    pytest.param(replaced(BRIDGE, "--target", "job/x"), {}, "the kind 'job'", id="target-unknown-kind"),
    pytest.param(replaced(BRIDGE, "--target", 'deploy/api/c"'), {}, "--target", id="target-double-quote"),
    pytest.param([*BRIDGE, "-n", "kube system"], {}, "'kube system'", id="namespace-space"),
    pytest.param([*BRIDGE, "-n", ""], {}, "namespace is empty", id="namespace-empty"),
    pytest.param([*BRIDGE, "-n", "a" * 64], {}, "more than 63", id="namespace-too-long"),
    pytest.param([*BRIDGE, "--interceptor", "ng inx"], {}, "'ng inx'", id="interceptor-space"),
    pytest.param([*BRIDGE, "--timeout", "nan"], {}, "'nan'", id="bridge-timeout-nan"),
    pytest.param([*BRIDGE, "--timeout", "0"], {}, "--timeout", id="bridge-timeout-zero"),
    pytest.param(["up"], {"GEFYRA_SERVICE_CIDR": '10.0.0.0/8"'}, "GEFYRA_SERVICE_CIDR", id="env-service-cidr-quote"),
    pytest.param(["up", "--service-cidr", "10.0.0.1/8"], {}, "host bits set", id="service-cidr-host-bits"),
    pytest.param(["up", "--service-cidr", "fd00::/108"], {}, "'fd00::/108'", id="service-cidr-ipv6"),
    pytest.param(["up", "--pod-cidr", "10.0.0.0/8,10.1.0.0/16"], {}, "','", id="pod-cidr-comma"),
    pytest.param(["up", "--pod-cidr", "10.0.0.0/8\n"], {}, r"'10.0.0.0/8\n'", id="pod-cidr-newline"),
    pytest.param(["up", "--port", "0"], {}, "--port", id="up-port-zero"),
    pytest.param(["up", "--port", "31820 "], {}, "'31820 '", id="up-port-space"),
    pytest.param(["up", "--host", "node;reboot"], {}, "'node;reboot'", id="up-host-semicolon"),
    pytest.param(["up", "--host", "::1"], {}, "'::1'", id="up-host-ipv6"),
    pytest.param(["up", "--host", "10.0.0.256"], {}, "'10.0.0.256'", id="up-host-bad-octet"),
    pytest.param(["up", "--client-timeout", "5"], {}, "--client-timeout", id="up-client-timeout-too-short"),
    pytest.param(["up", "--timeout", "inf"], {}, "'inf'", id="up-timeout-inf"),
    pytest.param(["--client-id", "UPPER", "up"], {}, "'UPPER'", id="client-id-uppercase"),
    pytest.param(["up"], {"GEFYRA_CLIENT_ID": "-dev"}, "GEFYRA_CLIENT_ID", id="env-client-id"),
    pytest.param(["up"], {"GEFYRA_IMAGE_TAG": 'dev"\nx: y'}, "GEFYRA_IMAGE_TAG", id="env-image-tag"),
    pytest.param(["up"], {"GEFYRA_IMAGE_PREFIX": "Gefyra"}, "GEFYRA_IMAGE_PREFIX", id="env-image-prefix"),
    pytest.param(["--runtime", "my runtime", "up"], {}, "'my runtime'", id="runtime-space"),
    pytest.param(["--context", "dev\nprod", "up"], {}, "--context", id="context-newline"),
    pytest.param([*RUN, "-p", "0:80"], {}, "'0:80'", id="run-port-zero"),
    pytest.param([*RUN, "-p", "8080:80/icmp"], {}, "'icmp'", id="run-port-protocol"),
    pytest.param([*RUN, "-e", "1X=2"], {}, "'1X'", id="run-env-digit-first"),
    pytest.param([*RUN, "-e", "=1"], {}, "KEY=VALUE", id="run-env-no-key"),
    pytest.param([*RUN, "--env-file", "/nonexistent/env"], {}, "cannot read it", id="run-env-file-missing"),
    pytest.param([*RUN, "--command", "true", "--", "false"], {}, "not both", id="run-command-twice"),
    pytest.param(["--registry", "registry:port", "up"], {}, "--registry", id="registry-bad-port"),
    pytest.param(["up", "--registry", "a b"], {}, "'a b'", id="registry-after-the-command"),
    pytest.param(replaced(RUN, "-i", "My Image"), {}, "'My Image'", id="run-image-space"),
    pytest.param(replaced(RUN, "-N", "x y"), {}, "'x y'", id="run-name-space"),
    pytest.param([*RUN, "--env-from", "deploy/"], {}, "--env-from", id="run-env-from-empty-name"),
    pytest.param([*RUN, "-v", "/src:app"], {}, "'app'", id="run-volume-relative-target"),
    pytest.param([*RUN, "-v", "./src:/app"], {}, "'./src'", id="run-volume-relative-source"),
    pytest.param([*RUN, "-v", "/src:/app:rx"], {}, "'rx'", id="run-volume-options"),
    pytest.param([*RUN, "--command", 'echo "open'], {}, "no closing quotation", id="run-command-quote"),
    pytest.param(["unbridge", "-N", "a;b"], {}, "'a;b'", id="unbridge-name-semicolon"),
    pytest.param(["unbridge"], {}, "pass --all", id="unbridge-nothing"),
    pytest.param(["rm"], {}, "pass --all", id="rm-nothing"),
    pytest.param(["rm", "a;b"], {}, "'a;b'", id="rm-name-semicolon"),
    pytest.param(["logs", "a b"], {}, "'a b'", id="logs-name-space"),
    pytest.param(["logs", "app", "--since", "ten"], {}, "--since", id="logs-since-not-a-duration"),
    pytest.param(["logs", "app", "--tail", "x"], {}, "--tail", id="logs-tail-not-a-number"),
    pytest.param(["bridge", "-N", "myapp", "-p", "80:8080"], {}, "--target", id="bridge-target-missing"),
    pytest.param(["status", "-o", "xml"], {}, "'xml'", id="status-output-unknown"),
]


@pytest.mark.parametrize(("args", "env", "named"), BAD)
def test_a_bad_input_is_one_line_and_exit_code_2_before_anything_connects(args: list[str], env: dict[str, str],
                                                                         named: str) -> None:
    result = gefyra(args, env)
    assert result.exit_code == errors.UsageError.exit_code, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert named in lines[0], lines[0]
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr


GOOD: list[Any] = [
    pytest.param(["--client-id", "dev-1", "--context", "kind-dev", "up", "--host", "192.168.1.10", "--port", "31820",
                  "--service-cidr", "10.96.0.0/12", "--pod-cidr", "10.244.0.0/16", "--timeout", "2.5",
                  "--client-timeout", "60"], {}, id="up-every-flag"),
    pytest.param(["up", "--host", "node-1.example.com"], {"GEFYRA_SERVICE_CIDR": "10.96.0.0/12",
                                                          "GEFYRA_IMAGE_PREFIX": "localhost:5000/gefyra",
                                                          "GEFYRA_IMAGE_TAG": "0.1.0.dev0"}, id="up-environment"),
    pytest.param([*RUN, "-n", "shop", "-e", "A=1", "-e", "_B=x=y", "-p", "8080:80", "-p", "5353:53/udp",
                  "-v", "/tmp:/data:ro", "--env-from", "sts/db/postgres", "--command", "sh -c 'echo hi'"], {},
                 id="run-every-flag"),
    pytest.param(replaced(RUN, "-i", "localhost:5000/team/app@sha256:" + "a" * 64), {}, id="run-image-digest"),
    pytest.param([*BRIDGE, "-n", "shop", "-p", "443:8443", "--interceptor", "nginx", "--timeout", "30", "--no-wait"],
                 {}, id="bridge-every-flag"),
    pytest.param(replaced(BRIDGE, "--target", "pod/api.v2-0/web"), {}, id="bridge-pod-subdomain-name"),
    pytest.param(["unbridge", "-N", "myapp", "-N", "dev-1-myapp-deployment-api"], {}, id="unbridge-names"),
    pytest.param(["unbridge", "--all"], {}, id="unbridge-all"),
    pytest.param(["up", "--client-id", "dev-2", "--context", "kind-dev", "-q", "--registry", "10.0.0.1:5000/team"], {},
                 id="global-flags-after-the-command"),
    pytest.param([*RUN, "-e", "HOME", "--", "sh", "-c", "echo hi"], {}, id="run-command-after-dashes"),
]


@pytest.mark.parametrize(("args", "env"), GOOD)
def test_good_input_gets_past_the_checks_to_the_kubeconfig(args: list[str], env: dict[str, str]) -> None:
    result = gefyra(args, env)
    assert result.exit_code == errors.ConfigError.exit_code, result.stderr
    assert f"the kubeconfig {MISSING_KUBECONFIG} does not exist" in result.stderr


def test_an_empty_gefyra_still_shows_the_help() -> None:
    result = gefyra([])
    assert "Usage:" in result.output and "error:" not in result.output


# The API: the same checks for embedders, naming the field.


@pytest.mark.parametrize(("fields", "named"), [
    pytest.param({"client_id": "UPPER"}, "Settings.client_id (GEFYRA_CLIENT_ID)", id="client-id"),
    pytest.param({"port": 0}, "Settings.port", id="port"),
    pytest.param({"port": True}, "Settings.port", id="port-bool"),
    pytest.param({"pod_cidrs": "10.0.0.0/8"}, "Settings.pod_cidrs", id="pod-cidrs-text"),
    pytest.param({"timeout": float("nan")}, "Settings.timeout", id="timeout-nan"),
    pytest.param({"tunnel_mtu": 70}, "Settings.tunnel_mtu", id="mtu"),
    pytest.param({"stream_mtu": 9001}, "Settings.stream_mtu", id="stream-mtu"),
    pytest.param({"cluster_domain": "cluster..local"}, "Settings.cluster_domain", id="cluster-domain"),
])
def test_settings_refuse_a_bad_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(errors.UsageError, match=re.escape(named)):
        Settings(**fields)


def test_settings_refuse_a_bad_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEFYRA_SERVICE_CIDR", "10.0.0.0/8 ")
    with pytest.raises(errors.UsageError, match="GEFYRA_SERVICE_CIDR"):
        Settings()


def test_gefyra_checks_settings_changed_after_they_were_made() -> None:
    settings = Settings()
    settings.host = "a b"
    with pytest.raises(errors.UsageError, match="Settings.host"):
        Gefyra(settings)


@pytest.mark.parametrize(("operation", "named"), [
    pytest.param(lambda g: g.bridge(BridgeRequest("a;b", "deploy/api", {80: 8080})), "BridgeRequest.local", id="local"),
    pytest.param(lambda g: g.bridge(BridgeRequest("app", "deploy/api", {})), "BridgeRequest.ports", id="no-ports"),
    pytest.param(lambda g: g.bridge(BridgeRequest("app", "deploy/api", {0: 1})), "BridgeRequest.ports", id="port-zero"),
    pytest.param(lambda g: g.bridge(BridgeRequest("app", "deploy/api", {p: p for p in range(1, 18)})),
                 "BridgeRequest.ports", id="too-many-ports"),
    pytest.param(lambda g: g.bridge(BridgeRequest("app", "deploy/", {80: 80})), "BridgeRequest.target", id="target"),
    pytest.param(lambda g: g.run(RunRequest("app", "x", env={"1X": "2"})), "RunRequest.env", id="env"),
    pytest.param(lambda g: g.run(RunRequest("app", "x", ports={"80": 8080})), "RunRequest.ports", id="port-no-protocol"),
    pytest.param(lambda g: g.run(RunRequest("app", "x", command=[])), "RunRequest.command", id="empty-command"),
    pytest.param(lambda g: g.unbridge(["a b"]), "names", id="unbridge"),
    pytest.param(lambda g: g.rm(["a b"]), "names", id="rm"),
    pytest.param(lambda g: g.logs("a b").__anext__(), "name", id="logs"),
])
def test_gefyra_checks_requests_before_connecting(operation: Any, named: str) -> None:
    async def attempt() -> None:
        async with Gefyra(Settings(kubeconfig=MISSING_KUBECONFIG), entry_points=False) as g:
            await operation(g)

    with pytest.raises(errors.UsageError, match=re.escape(named)):
        anyio.run(attempt)


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(errors.UsageError) as caught:
        validation.dns_label("x" * 500, "-N", "container name")
    assert len(str(caught.value)) < 250 and "..." in str(caught.value)


# The CRDs: patterns and bounds as the API server applies them.


def crds() -> dict[str, dict[str, Any]]:
    """Each CRD's openAPIV3Schema by kind, from crds.yaml rendered as gefyra.client.manifests does
    (``$$`` is a literal dollar sign there)."""
    text = string.Template((REPO / "manifests" / "crds.yaml").read_text()).substitute({})
    return {doc["spec"]["names"]["kind"]: doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            for doc in yaml.safe_load_all(text)}


def field(kind: str, path: str) -> dict[str, Any]:
    schema = crds()[kind]
    for name in path.split("."):
        schema = schema["items"] if name == "[]" else schema["properties"][name]
    return schema


def allowed(schema: dict[str, Any], value: str) -> bool:
    """Whether ``value`` passes a string field's pattern and length. The API server searches the
    pattern (Go's ``$`` is the end of the text): anchored at both ends, it must match in full."""
    pattern = schema["pattern"]
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return re.fullmatch(pattern, value) is not None and schema.get("minLength", 0) <= len(value) <= schema["maxLength"]


KEYS = [generate_keypair().public for _ in range(20)]
LABELS_GOOD = ["a", "my-app", "a1", "0", "a--b", "x" * 63]
LABELS_BAD = ["", "-a", "a-", "A", "a_b", "a.b", "a;b", "x'y", "a/b", "a b", "x" * 64, "a\n", "é"]
SUBDOMAINS_GOOD = [*LABELS_GOOD, "a.b", "api.v2-0", ".".join(["x" * 63] * 4)[:253].rstrip(".")]
SUBDOMAINS_BAD = ["", "a..b", ".a", "a.", "A.b", "a b", "a;b", "x" * 254]


@pytest.mark.parametrize(("kind", "path", "good", "bad"), [
    pytest.param("GefyraClient", "spec.publicKey", KEYS,
                 [KEYS[0][1:], KEYS[0][:42] + "B=", KEYS[0] + "=", KEYS[0][:43] + "\n", "x" * 44, ""], id="client-key"),
    pytest.param("GefyraClient", "status.serverPublicKey", KEYS[:3], [KEYS[0][:-1], "=" * 44], id="server-key"),
    pytest.param("GefyraClient", "status.address", ["198.18.0.1", "198.18.0.2", "198.18.255.255", "198.18.100.9"],
                 ["198.18.256.1", "198.18.0.256", "198.19.0.1", "198.18.01.1", "10.0.0.1", "198.18.0.1\n",
                  "198x18.0.1", ""], id="client-address"),
    *(pytest.param("GefyraBridge", path, LABELS_GOOD, LABELS_BAD, id=path)
      for path in ("spec.client", "spec.localContainer", "spec.interceptor", "spec.target.namespace",
                   "spec.target.container")),
    pytest.param("GefyraBridge", "spec.target.name", SUBDOMAINS_GOOD, SUBDOMAINS_BAD, id="spec.target.name"),
    pytest.param("GefyraBridge", "status.pods.[]", SUBDOMAINS_GOOD, SUBDOMAINS_BAD, id="pods"),
])
def test_crd_string_fields_carry_their_patterns(kind: str, path: str, good: list[str], bad: list[str]) -> None:
    schema = field(kind, path)
    assert [v for v in good if not allowed(schema, v)] == []
    assert [v for v in bad if allowed(schema, v)] == []


def test_crd_names_agree_with_the_client_side_checks() -> None:
    """A name that the CLI lets through, the API server takes, and the other way round."""
    def client_side(check: Any, value: str) -> bool:
        try:
            check(value, "-x", "name")
        except errors.UsageError:
            return False
        return True

    for path, check in [("spec.client", validation.dns_label), ("spec.target.name", validation.dns_subdomain)]:
        schema = field("GefyraBridge", path)
        for value in {*LABELS_GOOD, *LABELS_BAD, *SUBDOMAINS_GOOD, *SUBDOMAINS_BAD}:
            assert allowed(schema, value) == client_side(check, value), (path, value)


def test_crd_numbers_and_lists_are_bounded() -> None:
    ports = field("GefyraBridge", "spec.ports")
    assert (ports["minItems"], ports["maxItems"]) == (1, validation.MAX_BRIDGED_PORTS)
    assert ports["x-kubernetes-list-type"] == "map" and ports["x-kubernetes-list-map-keys"] == ["remote"]
    for number in (ports["items"]["properties"]["remote"], ports["items"]["properties"]["local"],
                   field("GefyraBridge", "status.proxyPorts")["additionalProperties"]):
        assert (number["type"], number["minimum"], number["maximum"]) == ("integer", 1, 65535)
    assert field("GefyraClient", "status.phase")["enum"] == ["Pending", "Active", "Silent", "Invalid"]


def test_every_crd_string_is_bounded_and_the_immutable_parts_say_so() -> None:
    """Strings without maxLength would make the CEL rules' estimated cost unbounded (the API
    server refuses such a CRD); owner and the bridge's spec must not change once set."""
    def strings(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if schema.get("type") == "string":
            yield path, schema
        for name, child in (schema.get("properties") or {}).items():
            yield from strings(child, f"{path}.{name}")
        if "items" in schema:
            yield from strings(schema["items"], f"{path}[]")

    unbounded = [path for kind, schema in crds().items() for path, s in strings(schema, kind)
                 if not {"maxLength", "enum", "format"} & set(s)]
    assert unbounded == []
    assert field("GefyraClient", "spec.owner")["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    assert field("GefyraBridge", "spec")["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    for kind in ("GefyraClient", "GefyraBridge"):
        assert field(kind, "spec.owner")["maxLength"] == 253
