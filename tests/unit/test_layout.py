"""The shape of the package: core names no backend, the public API is what it says, every hook has
a built-in implementation that a plugin can replace, and no engine means one clear line."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gefyra
from gefyra import hookimpl
from gefyra.core.model.settings import Settings
from gefyra.core.spi.dns import Dns, DnsSetup
from gefyra.plugins.coredns import CoreDns
from gefyra.plugins.interceptor_nginx import NginxInterceptor
from gefyra.plugins.wireguard import WireGuardTunnel
from tests.unit.helpers import orchestrator_of

REPO = Path(__file__).resolve().parents[2]
#: Words of the built-in backends; gefyra/core/ talks about none of them.
BACKEND_WORDS = re.compile(r"iptables|\bwg\b|wg0|wg-quick|nginx|wireguard|coredns|corefile|docker|podman|aiodocker",
                           re.IGNORECASE)


#: ... and the parts of the built-in backends, which core's model, contracts and engine never name.
BACKEND_PARTS = re.compile(r"cargo|stowaway|carrier", re.IGNORECASE)


def _hits(where: Path, words: re.Pattern[str]) -> list[str]:
    return [f"{path.relative_to(REPO)}:{number}: {line.strip()}" for path in sorted(where.rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1) if words.search(line)]


def test_core_names_no_backend() -> None:
    assert _hits(REPO / "gefyra" / "core", BACKEND_WORDS) == []
    for inner in ("model", "spi", "engine"):
        assert _hits(REPO / "gefyra" / "core" / inner, BACKEND_PARTS) == []


def test_only_the_adapters_import_the_cluster_and_engine_libraries() -> None:
    imports = re.compile(r"^\s*(from|import)\s+(kubernetes_asyncio|aiodocker)\b")
    found = {str(path.relative_to(REPO)) for path in sorted((REPO / "gefyra").rglob("*.py"))
             if any(imports.match(line) for line in path.read_text().splitlines())}
    assert {f for f in found if not f.startswith("gefyra/core/kube/")} == {"gefyra/plugins/docker/runtime.py"}


def test_the_grep_would_catch_a_backend_word() -> None:
    assert BACKEND_WORDS.search("await run(['iptables', '-t', 'nat'])")
    assert BACKEND_WORDS.search("self._docker = aiodocker.Docker()")


def test_public_api_exports_are_sorted_and_all_importable() -> None:
    assert gefyra.__all__ == sorted(gefyra.__all__)
    for name in gefyra.__all__:
        assert getattr(gefyra, name) is not None, name
    assert {"Gefyra", "Settings", "hookimpl", "GefyraError", "Status", "BridgeInfo"} <= set(gefyra.__all__)
    assert gefyra.Gefyra.__module__ == "gefyra.client.session"
    with pytest.raises(AttributeError):
        gefyra.NoSuchThing  # noqa: B018


def test_importing_gefyra_stays_light() -> None:
    """`gefyra version` must not pay for the cluster and engine clients."""
    probe = "import sys, gefyra, gefyra.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
            "('kubernetes_asyncio', 'aiodocker', 'aiohttp')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_commands_imports_leave_out_what_it_does_not_use() -> None:
    """A command imports the client and the plugins, but not kubernetes_asyncio's API and model
    modules, urllib3's package, cryptography (only the operator seals) or rich's tracebacks (with
    pygments): together about 0.4 s of every command's start on a small machine."""
    probe = ("import sys, gefyra.cli; gefyra.cli._import_structlog_without_rich(); import gefyra.logs, "
             "gefyra.client.session, gefyra.plugins.interceptor_nginx.interceptor, gefyra.plugins.wireguard, "
             "gefyra.plugins.docker, gefyra.plugins.podman, gefyra.plugins.coredns; print(sorted(m for m in sys.modules "
             "if m.partition('.')[0] in ('cryptography', 'rich', 'pygments') or m in ('kubernetes_asyncio.client.api', "
             "'kubernetes_asyncio.client.models.v1_pod', 'urllib3.poolmanager'))); "
             "print('kubernetes_asyncio.client.api_client' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["[]", "True"]


def test_builtin_modules_the_issue_names_import() -> None:
    for module in ("gefyra.plugins.interceptor_nginx", "gefyra.plugins.wireguard", "gefyra.plugins.coredns",
                   "gefyra.plugins.docker", "gefyra.plugins.podman"):
        importlib.import_module(module)
    import gefyra.core.engine.hookspecs as h

    assert callable(h.gefyra_tunnel) and callable(h.gefyra_interceptor) and callable(h.gefyra_dns)


def test_tunnel_hook_defaults_to_wireguard_and_a_plugin_replaces_it() -> None:
    assert isinstance(orchestrator_of(Settings(tunnel=None)).tunnel(), WireGuardTunnel)

    class Other(WireGuardTunnel):
        name = "other"

    class Plugin:
        @hookimpl
        def gefyra_tunnel(self, settings: Settings) -> WireGuardTunnel | None:
            return Other() if settings.tunnel == "other" else None

    assert orchestrator_of(Settings(tunnel="other"), plugins=[Plugin()]).tunnel().name == "other"
    with pytest.raises(gefyra.UsageError, match="no plugin provides the tunnel 'nope'"):
        orchestrator_of(Settings(tunnel="nope")).tunnel()


def test_interceptor_hook_chooses_by_name() -> None:
    orchestrator = orchestrator_of()
    assert isinstance(orchestrator.interceptor(), NginxInterceptor)
    assert isinstance(orchestrator.interceptor("nginx"), NginxInterceptor)
    assert orchestrator.interceptor().image == Settings().image("carrier")
    with pytest.raises(gefyra.UsageError, match="no plugin provides the interceptor 'nope'"):
        orchestrator.interceptor("nope")


def test_dns_hook_defaults_to_coredns_and_a_plugin_replaces_it() -> None:
    assert isinstance(orchestrator_of().dns(), CoreDns)

    class Hosts(Dns):
        name = "hosts"

        def setup(self, config_dir: str, cluster_dns_ip: str, cluster_domain: str) -> DnsSetup:
            return DnsSetup({"hosts": b""}, ("dnsmasq", "-k"))

    class Plugin:
        @hookimpl
        def gefyra_dns(self, settings: Settings) -> Dns:
            return Hosts()

    assert orchestrator_of(plugins=[Plugin()]).dns().name == "hosts"


def test_no_engine_at_all_is_one_line_and_its_exit_code_and_a_bad_kubeconfig_still_wins(tmp_path: Path) -> None:
    """Every engine socket hidden from the process (a tmpfs over /run in a mount namespace)."""
    def gefyra_without_engine(*args: str) -> subprocess.CompletedProcess[str]:
        command = " ".join([sys.executable, "-m", "gefyra", *args])
        return subprocess.run(["unshare", "--mount", "sh", "-c", f"mount -t tmpfs none /run && exec {command}"],
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                                    "PYTHONPATH": str(REPO)}, timeout=30)

    listed = gefyra_without_engine("list")
    assert listed.returncode == gefyra.EngineUnavailableError.exit_code, listed.stderr
    assert listed.stderr.count("\n") == 1 and listed.stderr.startswith("error: cannot reach docker"), listed.stderr
    status = gefyra_without_engine("--kubeconfig", str(tmp_path / "missing"), "status")
    assert status.returncode == gefyra.ConfigError.exit_code, status.stderr
    assert status.stderr.count("\n") == 1 and "missing does not exist" in status.stderr, status.stderr
