"""Every way a kubeconfig can be unusable is one line with the configuration's exit code, fast,
before anything connects; the context's namespace is -n's default (gefyra.core.kube.kubeconfig)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gefyra import errors
from gefyra.core.kube import kubeconfig

GOOD = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: x}}]
contexts:
- {name: dev, context: {cluster: c, user: u, namespace: shop}}
- {name: bare, context: {cluster: c, user: u}}
- {name: broken, context: {cluster: nowhere, user: u}}
current-context: dev
"""


@pytest.mark.parametrize(("content", "context", "problem"), [
    (None, None, "does not exist"),
    (b"", None, "is empty"),
    (b"\x00\x01\xff\xfe binary", None, "is not YAML"),
    (b"clusters: [unclosed", None, "is not YAML"),
    (b"- a list", None, "not a kubeconfig"),
    (GOOD.replace("current-context: dev", "").encode(), None, "sets no current context"),
    (GOOD.encode(), "nope", "has no context 'nope'"),
    (GOOD.encode(), "broken", "names no cluster with a server"),
], ids=["missing", "empty", "binary", "broken-yaml", "a-list", "no-current-context", "unknown-context", "no-cluster"])
def test_an_unusable_kubeconfig_is_one_line_with_exit_code_3(
        tmp_path: Path, content: bytes | None, context: str | None, problem: str) -> None:
    path = tmp_path / "config"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(errors.ConfigError, match=problem):
        kubeconfig.read(str(path), context)
    command = [sys.executable, "-m", "gefyra", "--kubeconfig", str(path), *(["--context", context] if context else []),
               "status"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == errors.ConfigError.exit_code, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and problem in result.stderr, result.stderr


def test_contexts_and_namespaces_are_read_as_kubectl_reads_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text(GOOD)
    second.write_text(GOOD.replace("namespace: shop", "namespace: other")
                      .replace("current-context: dev", "current-context: bare"))
    assert kubeconfig.read(str(first)).namespace == "shop"
    assert kubeconfig.read(str(first), "bare").namespace is None
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}")  # the first that names it wins
    found = kubeconfig.read()
    assert (found.name, found.namespace, found.server) == ("dev", "shop", "https://127.0.0.1:6443")
    assert found.files == (str(first), str(second))
