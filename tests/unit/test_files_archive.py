"""The archive that puts files into a container: complete, and without the zero padding that
Podman's extractor leaves unread (its upload then fails now and then with a broken pipe)."""

from __future__ import annotations

import io
import tarfile

from gefyra.plugins.docker.runtime import _files_archive


def test_the_archive_holds_the_files_in_their_directory() -> None:
    data = _files_archive("/etc/gefyra/", {"wg0.conf": b"[Interface]\n", "cargo.env": b"A='1'\n"})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["etc/gefyra"].isdir() and members["etc/gefyra"].mode == 0o700
        assert members["etc/gefyra/wg0.conf"].mode == 0o600
        wg = tar.extractfile("etc/gefyra/wg0.conf")
        assert wg is not None and wg.read() == b"[Interface]\n"


def test_the_archive_ends_with_its_two_end_blocks_and_nothing_after() -> None:
    data = _files_archive("d", {"f": b"x" * 700})
    # the directory's header, the file's header and two data blocks, two end blocks: no 10 KiB record
    assert len(data) == 512 * 6
    assert data[-1024:] == bytes(1024) and data[-1536:-1024].startswith(b"x" * 188)
