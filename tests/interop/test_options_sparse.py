"""-S with the store: a big sparse file costs almost nothing and comes back sparse.

A file of SIZE bytes holding three 4 KiB data regions (the rest holes) is pushed with
``rsync -aS`` into the store (and into real rsync for comparison); the store's own
figures (``rsyncd-py stats``) must show under 1 MiB stored, and ``rsync -aS`` pulling it
back must give the same content with the same allocated size (du) as the source. The
always-on variant uses 64 MiB; the soak variant the 4 GiB of issue 5.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, assert_equivalent

T0 = 1_600_000_000_000_000_000
REGION = 4096


def make_sparse(path: Path, size: int) -> None:
    """`size` bytes: three 4 KiB regions of data (start, middle, end), holes between."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.truncate(size)
        for index, offset in enumerate((REGION, size // 2 // REGION * REGION, size - REGION)):
            out.seek(offset)
            out.write(bytes([index + 1]) * REGION)
    os.utime(path, ns=(T0, T0))
    os.utime(path.parent, ns=(T0, T0))


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _scenario(h: RsyncHarness, size: int, *, with_oracle: bool) -> None:
    src = h.client_dir / "src" / "sparse"
    make_sparse(src, size)
    if allocated(src) > 16 * REGION:
        pytest.skip("the temporary file system does not keep holes")
    store = h.rsyncd_store()
    targets = [h.oracle(), store] if with_oracle else [store]
    pushes = h.differential(["-aS", "--stats", "src/", "lh:dst/"], targets, tree=None)
    for result in pushes:
        assert result.returncode == 0, result.describe()
    if with_oracle:
        assert_equivalent(*pushes)
    stats = subprocess.run(
        [sys.executable, "-m", "rsyncd_py.cli.main", "stats", "--json",
         "--store", store.env["RSYNCD_PY_STORE"], "--state-dir", str(store.home / "stats")],
        capture_output=True, check=True,
    )  # fmt: skip
    figures = json.loads(stats.stdout)
    assert figures["logical_bytes"] == size
    assert figures["stored_bytes"] < 1 << 20, figures

    for target in targets:
        back = h.client_dir / f"back-{target.name}"
        result = h.run(target, ["-aS", "lh:dst/", f"{back}/"], tree=None)
        assert result.returncode == 0, result.describe()
        pulled = back / "sparse"
        assert os.path.getsize(pulled) == size
        assert sha256(pulled) == sha256(src)
        assert allocated(pulled) == allocated(src), target.name


def test_sparse_file_in_the_store(rsync_harness: RsyncHarness) -> None:
    _scenario(rsync_harness, 64 << 20, with_oracle=True)


@pytest.mark.soak
def test_four_gib_sparse_file_in_the_store(rsync_harness: RsyncHarness) -> None:
    _scenario(rsync_harness, 4 << 30, with_oracle=False)
