"""`run --volumes-from`: what the cluster names is checked before it names a file or a mount, and
a volume's directory changes as the kubelet changes one (all at once, nothing stale left)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from gefyra import errors
from gefyra.client import volumes
from gefyra.client.volumes import VolumeFile


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs", "a/../../b", "a:b", "a\nb", "", 7, "a//b"])
def test_item_paths_from_the_cluster_stay_inside_the_volume(bad: Any) -> None:
    with pytest.raises(errors.GefyraError):
        volumes._relative(bad, "an item")


@pytest.mark.parametrize("bad", ["relative", "/etc/app:rw", "/etc/../root", "/a\x00b", None])
def test_mount_paths_from_the_cluster_are_absolute_without_a_colon(bad: Any) -> None:
    with pytest.raises(errors.GefyraError):
        volumes._absolute(bad, "a mount path")


def test_a_volume_changes_at_once_and_keeps_nothing_stale(tmp_path: Path) -> None:
    target = tmp_path / "config"
    assert volumes.write(target, [VolumeFile("a.yaml", b"one"), VolumeFile("dir/b", b"two", 0o600)])
    assert (target / "a.yaml").read_bytes() == b"one" and (target / "dir" / "b").read_bytes() == b"two"
    assert os.readlink(target / "a.yaml") == "..data/a.yaml" and (target / "..data").is_symlink()
    first = os.readlink(target / "..data")
    assert not volumes.write(target, [VolumeFile("a.yaml", b"one"), VolumeFile("dir/b", b"two", 0o600)])  # no change
    assert volumes.write(target, [VolumeFile("a.yaml", b"changed")])
    assert (target / "a.yaml").read_bytes() == b"changed" and not (target / "dir").exists()
    assert os.readlink(target / "..data") != first and not (target / first).exists()
    assert sorted(p.name for p in target.iterdir()) == sorted(["..data", os.readlink(target / "..data"), "a.yaml"])


def test_a_secrets_and_a_configmaps_keys_are_decoded() -> None:
    assert volumes._decoded("secret", {"data": {"p": "czNjcmV0", "bad": "%%"}}) == {"p": b"s3cret"}
    assert volumes._decoded("configMap", {"data": {"a": "x"}, "binaryData": {"b": "AAE="}}) == {"a": b"x", "b": b"\x00\x01"}


def test_removing_copies_that_do_not_exist_is_harmless(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert anyio.run(volumes.remove, "nothing-here") is False
