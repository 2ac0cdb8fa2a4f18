"""The redo phase, driven by the real rsync client against a server whose basis reads go
bad (tests/roles/faulty_server.py): one bad reconstruction is retried with full-length
block sums and succeeds; two end as rsync ends them, "failed verification -- update
discarded" and exit 23, with the old file left in place."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_RSH = f"{sys.executable} {REPO / 'tools' / 'fake_rsh.py'}"


def push(tmp_path: Path, corrupt_opens: str) -> subprocess.CompletedProcess[bytes]:
    server = (
        f"cd {shlex.quote(str(REPO))} && {shlex.quote(sys.executable)} -m "
        f"tests.roles.faulty_server --root {shlex.quote(str(tmp_path / 'root'))} "
        f"--corrupt-opens={corrupt_opens}"
    )
    return subprocess.run(
        ["rsync", "-ai", "-e", FAKE_RSH, f"--rsync-path={server}", "src/", "lh:dst/"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def changed_file(tmp_path: Path) -> tuple[bytes, bytes]:
    """src/big and an older root/dst/big that differs in a few places."""
    new = bytearray(os.urandom(300_000))
    old = bytearray(new)
    for at in (1_000, 150_000, 290_000):
        old[at : at + 50] = os.urandom(50)
    (tmp_path / "src").mkdir()
    (tmp_path / "root" / "dst").mkdir(parents=True)
    (tmp_path / "src" / "big").write_bytes(new)
    (tmp_path / "root" / "dst" / "big").write_bytes(old)
    os.utime(tmp_path / "root" / "dst" / "big", (1_000_000, 1_000_000))
    return bytes(old), bytes(new)


def test_one_bad_reconstruction_is_redone(tmp_path, changed_file):
    _, new = changed_file
    result = push(tmp_path, "2")
    assert result.returncode == 0, result.stderr
    assert b"WARNING: big failed verification -- update discarded (will try again)." in (
        result.stderr
    )
    assert (tmp_path / "root" / "dst" / "big").read_bytes() == new


def test_a_second_bad_reconstruction_discards_the_update(tmp_path, changed_file):
    old, _ = changed_file
    result = push(tmp_path, "2,4")
    assert result.returncode == 23, result.stderr
    assert b"ERROR: big failed verification -- update discarded." in result.stderr
    assert (tmp_path / "root" / "dst" / "big").read_bytes() == old
