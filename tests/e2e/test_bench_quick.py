"""The benchmark suite runs (quick mode: one repetition, targets not judged) and writes its files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.devcluster import REPO

pytestmark = pytest.mark.e2e

KEYS = {"name", "value", "unit", "baseline", "target", "meets_target"}


def test_benchmarks_run_in_quick_mode(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "results.json").read_text())
    names = {f["name"] for f in figures}
    assert {"up from nothing", "bridge to first request answered locally", "resident memory of cargo"} <= names
    for figure in figures:
        assert KEYS <= figure.keys() and ("ratio" in figure or "delta" in figure), figure
        assert isinstance(figure["value"], (int, float)) and figure["value"] >= 0, figure
    assert "| figure |" in (tmp_path / "RESULTS.md").read_text()
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
