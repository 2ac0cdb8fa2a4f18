"""--append and --append-verify against real rsync 3.2.7, pushed and pulled.

The receiving side holds a shorter copy of most files: a true prefix (only the rest
travels), a prefix with a wrong byte (--append keeps it: its checksum covers only the
appended data; --append-verify's covers the whole file, so the file fails and is sent
again whole in the redo phase), a longer or equally long copy (skipped), an empty copy
and none at all; a 3 MiB file's prefix ends mid-chunk. Protocol 29 turns --append into
--append-verify (compat.c). Exit code, itemize lines, -v listing, the transfer
figures of --stats and the resulting tree must equal real rsync's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, RsyncResult, Target, assert_equivalent
from tests.helpers.trees import snapshot
from tests.interop.conftest import TARGETS, make_target

T0 = 1_600_000_000_000_000_000
BIG = os.urandom(3 << 20)

# name -> (the full version, the receiver's old copy or None)
FILES: dict[str, tuple[bytes, bytes | None]] = {
    "grow": (b"0123456789" * 100, b"0123456789" * 37 + b"012"),
    "corrupt": (b"abcdefghij" * 90, b"abcdefghij" * 20 + b"X" + b"bcdefghij"),
    "longer": (b"short\n", b"short\nand longer on the receiver\n"),
    "same-size": (b"new content\n", b"old content\n"),
    "empty-copy": (b"from nothing\n", b""),
    "missing": (b"not there yet\n", None),
    "big": (BIG, BIG[: (1 << 20) + 5]),
    "sub/nested": (b"n" * 5000, b"n" * 4096),
}

STATS = (
    "Number of files",
    "Number of regular files transferred",
    "Total file size",
    "Total transferred file size",
    "Literal data",
    "Matched data",
)


def write_tree(top: Path, *, old: bool) -> None:
    """The full tree, or (`old`) the receiving side's copies."""
    for rel, (full, copy) in FILES.items():
        data = copy if old else full
        if data is None:
            continue
        path = top / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(T0 + 1, T0 + 1) if old else (T0, T0))
    for rel in ("sub", "."):
        os.utime(top / rel, ns=(T0, T0))


ARGS = [
    ("-ai", "--append", "--stats"),
    ("-ai", "--append-verify", "--stats"),
    ("-ai", "--append", "--protocol=29", "--stats"),
    ("-aiz", "--append-verify", "--stats"),
    ("-av", "--append-verify"),
]
IDS = ["append", "append-verify", "append-p29", "append-verify-z", "append-verify-v"]


@pytest.mark.parametrize("args", ARGS, ids=IDS)
@pytest.mark.parametrize("target", TARGETS)
def test_push(args: tuple[str, ...], target: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    write_tree(h.client_dir / "src", old=False)
    oracle, ours = h.oracle(), make_target(h, target)
    _seed_old(h, [oracle, ours])
    o, r = h.differential([*args, "src/", "lh:dst/"], [oracle, ours])
    assert_equivalent(o, r, stats=STATS)
    _check_semantics(o, args)


def _seed_old(h: RsyncHarness, targets: list[Target]) -> None:
    """Give each target ``dst`` = the old copies (a store through a plain push)."""
    old = h.tmp / "old"
    write_tree(old, old=True)
    for target in targets:
        if target.name == "store":
            result = h.run(target, ["-a", f"{old}/", "lh:dst/"], tree=None)
            assert result.returncode == 0, result.describe()
        else:
            subprocess.run(["cp", "-a", str(old), str(target.home / "dst")], check=True)


def _check_semantics(oracle: RsyncResult, args: tuple[str, ...]) -> None:
    """The scenario does what it is meant to show (the oracle's own result)."""
    assert oracle.returncode == 0 and oracle.tree is not None
    verify = "--append-verify" in args or "--protocol=29" in args
    corrupt = oracle.tree[b"corrupt"]
    assert corrupt.size == len(FILES["corrupt"][0])
    assert (corrupt.digest == _sha256(FILES["corrupt"][0])) == verify
    assert oracle.tree[b"longer"].size == len(FILES["longer"][1] or b"")
    assert oracle.tree[b"same-size"].digest == _sha256(FILES["same-size"][1] or b"")
    assert oracle.tree[b"big"].digest == _sha256(BIG)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("args", ARGS, ids=IDS)
@pytest.mark.parametrize("target", TARGETS)
def test_pull(args: tuple[str, ...], target: str, rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    write_tree(src, old=False)
    oracle, ours = h.oracle(), make_target(h, target)
    if ours.name == "store":
        result = h.run(ours, ["-a", "src/", "lh:src/"], tree=None)
        assert result.returncode == 0, result.describe()
    else:
        shutil.copytree(src, ours.home / "src", symlinks=True)
    shutil.move(src, oracle.home / "src")
    old = h.tmp / "old"
    write_tree(old, old=True)
    results = []
    for t in (oracle, ours):
        local = h.client_dir / "pulled"
        subprocess.run(["cp", "-a", str(old), str(local)], check=True)
        result = h.run(t, [*args, "lh:src/", "pulled/"], tree=None)
        # rsyncd-py declines incremental recursion as a sender: that line differs
        listing = [line for line in result.listing if not line.startswith(b"receiving ")]
        results.append(replace(result, tree=snapshot(local), listing=listing))
        local.rename(h.client_dir / f"pulled-{t.name}")
    o, r = results
    assert_equivalent(o, r, stats=STATS)
    _check_semantics(o, args)
