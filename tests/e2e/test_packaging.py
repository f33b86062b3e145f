"""gefyra as a user gets it: `pip install` into a fresh virtual environment outside the source
tree; the installed command renders the cluster side with images tagged with its version, and the
contract suites come with it (gefyra.testing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gefyra import __version__
from tests.e2e.devcluster import REPO

pytestmark = pytest.mark.e2e


def test_pip_install_and_gefyra_install_renders_version_tagged_images(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True, cwd=tmp_path, timeout=600)
    gefyra = str(venv / "bin" / "gefyra")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    version = subprocess.run([gefyra, "version", "--client"], capture_output=True, text=True, check=True, env=env)
    assert version.stdout == f"client:       {__version__}\n"
    for extra, prefix in (([], "gefyra/"), (["--registry", "registry.example.com:5000/team"],
                                             "registry.example.com:5000/team/gefyra/")):
        rendered = subprocess.run([gefyra, *extra, "install", "-o", "yaml"], capture_output=True, text=True, check=True,
                                  cwd=tmp_path, env=env)
        docs = list(yaml.safe_load_all(rendered.stdout))
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert [c["image"] for c in containers] == [f"{prefix}stowaway:{__version__}", f"{prefix}operator:{__version__}"]
        # The operator names the interceptor's images as this machine does: same registry, prefix, tag.
        operator_env = {e["name"]: e.get("value") for e in containers[1]["env"]}
        assert operator_env["GEFYRA_IMAGE_TAG"] == __version__ and operator_env["GEFYRA_IMAGE_PREFIX"] == "gefyra"
        assert operator_env.get("GEFYRA_REGISTRY", "") == prefix.removesuffix("gefyra/").rstrip("/")
        assert {d["kind"] for d in docs} >= {"Namespace", "CustomResourceDefinition", "ClusterRole", "Service"}
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "pytest"], check=True, timeout=300)
    shipped = subprocess.run([str(venv / "bin" / "python"), "-c", "import gefyra.testing as t; print(sorted(t.__all__))"],
                             capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
    assert shipped.stdout.strip() == str(["InterceptorContract", "RuntimeContract", "TunnelContract", "serve_http_paths"])
