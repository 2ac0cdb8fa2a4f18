"""--fuzzy (-y, -yy) against real rsync 3.2.7: a new file diffed against a similar one.

Yesterday's backup (`OLD`) is in ``dst``; today's source renamed some of its files and
changed them a little (`NEW`). With -y the generator finds each new name's basis among
the destination directory's files -- the same size and mtime first, else the nearest
name -- so the renamed files travel as deltas: "Matched data" must be well above zero,
and every figure, item line and the resulting tree must be real rsync's. With -yy the
search extends to the same directory in a --compare-dest basis. The ``sent`` directory
checks the rule that a file the generator has asked for is no basis for later new files
(it is being replaced). Pulls with -y exercise the client's fuzzy basis against our
sender.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.rsync_harness import RsyncHarness, RsyncResult, assert_equivalent
from tests.helpers.trees import snapshot, write_file
from tests.interop.conftest import TARGETS, make_target, seed_destination
from tests.interop.test_options_basis import basis
from tests.interop.test_pull import serve_tree

T0 = 1_600_000_000_000_000_000
_rng = random.Random(11)
DATA = _rng.randbytes(1 << 20)
LOG = _rng.randbytes(300_000)
PHOTO = _rng.randbytes(200_000)
B_OLD = _rng.randbytes(100_000)


def _changed(data: bytes, seed: int) -> bytes:
    """`data` with a few scattered 100-byte runs replaced (about 1%) and 7 bytes more."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(max(1, len(data) // 10_000)):
        at = rng.randrange(len(out) - 100)
        out[at : at + 100] = rng.randbytes(100)
    return bytes(out) + b"changed"


S = 1_000_000_000  # one second in ns (the size+mtime match compares whole seconds)
OLD = {
    "data-2024.bin": (DATA, T0),
    "logs/app.log.1": (LOG, T0 + S),
    "logs/photo.jpg": (PHOTO, T0 + 2 * S),
    "sent/b.dat": (B_OLD, T0 + 3 * S),
}
NEW = {
    "data-2025.bin": (_changed(DATA, 1), T0 + 10 * S),  # renamed and changed: nearest name
    "logs/app.log.2": (_changed(LOG, 2), T0 + 11 * S),  # app.log.1 is nearer than photo.jpg
    "logs/holiday.jpg": (PHOTO, T0 + 2 * S),  # same size and mtime: chosen whatever its name
    "sent/a.dat": (_changed(B_OLD, 3), T0 + 12 * S),  # b.dat is its basis ...
    "sent/b.dat": (_changed(B_OLD, 4), T0 + 13 * S),  # ... until b.dat itself is requested,
    "sent/c.dat": (_changed(B_OLD, 5), T0 + 14 * S),  # so this one has no basis
}


def _write(top: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for rel, (data, mtime) in files.items():
        write_file(top / rel, data, mtime)
    for rel in sorted({str(Path(r).parent) for r in files} | {"."}, reverse=True):
        os.utime(top / rel, ns=(T0, T0))  # rsync#802: no directory time "now"


def _source(h: RsyncHarness, files: dict[str, tuple[bytes, int]]) -> None:
    src = h.client_dir / "src"
    shutil.rmtree(src, ignore_errors=True)
    _write(src, files)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    "extra", [("-i",), ("-ii",), ("-v", "--info=name2")], ids=["i", "ii", "name2"]
)
def test_renamed_files_travel_as_deltas(
    extra: tuple[str, ...], target: str, rsync_harness: RsyncHarness
) -> None:
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    _source(h, OLD)
    seed_destination(h, [oracle, ours])
    _source(h, NEW)
    o, r = h.differential(["-ay", "--stats", *extra, "src/", "lh:dst/"], [oracle, ours])
    assert o.stats["Matched data"] > len(DATA) // 2
    assert_equivalent(o, r)


def test_without_fuzzy_nothing_matches(rsync_harness: RsyncHarness) -> None:
    """The control: without -y the renamed files travel whole (only b.dat is a delta)."""
    h = rsync_harness
    oracle, ours = h.oracle(), h.rsyncd_root()
    _source(h, OLD)
    seed_destination(h, [oracle, ours])
    _source(h, NEW)
    o, r = h.differential(["-ai", "--stats", "src/", "lh:dst/"], [oracle, ours])
    assert o.stats["Matched data"] < len(B_OLD)
    assert_equivalent(o, r)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("level", ["-y", "-yy"])
def test_fuzzy_in_a_compare_dest(level: str, target: str, rsync_harness: RsyncHarness) -> None:
    """-yy also looks in the basis directory; -y only in the (empty) destination, so
    only the basis's own b.dat is diffed against."""
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    _source(h, OLD)
    seed_destination(h, [oracle, ours])
    _source(h, NEW)
    results: list[RsyncResult] = []
    for t in (oracle, ours):
        args = ["-ai", level, "--stats", f"--compare-dest={basis(t, 'dst')}", "src/", "lh:dst2/"]
        results.append(h.run(t, args, tree="dst2"))
    o, r = results
    assert (o.stats["Matched data"] > len(DATA) // 2) == (level == "-yy")
    assert_equivalent(o, r)


def test_fuzzy_pull(rsync_harness: RsyncHarness, tmp_path: Path) -> None:
    """The client's generator picks the basis; our sender diffs against it."""
    h = rsync_harness
    oracle, ours = h.oracle(), h.rsyncd_root()
    served = tmp_path / "served"
    _write(served, NEW)
    results = []
    for t in (oracle, ours):
        serve_tree(h, t, served)
        local = h.client_dir / "pulled"
        shutil.rmtree(local, ignore_errors=True)
        _write(local, OLD)
        result = h.run(t, ["-aiy", "--stats", "lh:src/", "pulled/"], tree=None)
        results.append(replace(result, tree=snapshot(local)))
        local.rename(h.client_dir / f"pulled-{t.name}")
    o, r = results
    assert o.stats["Matched data"] > len(DATA) // 2
    assert_equivalent(o, r)


def test_a_crowded_directory(rsync_harness: RsyncHarness) -> None:
    """100 candidates (the vectorised distances): "f-0a0.bin" is nearest to "f-090.bin"
    ('9' is the digit closest to 'a'), the only file its content resembles."""
    h = rsync_harness
    oracle, ours = h.oracle(), h.rsyncd_root()
    rng = random.Random(7)
    old = {f"crowd/f-{k:03d}.bin": (rng.randbytes(4096), T0 + k * S) for k in range(100)}
    _source(h, old)
    seed_destination(h, [oracle, ours])
    _source(h, {"crowd/f-0a0.bin": (_changed(old["crowd/f-090.bin"][0], 6), T0 + 200 * S)})
    o, r = h.differential(["-aiy", "--stats", "src/", "lh:dst/"], [oracle, ours])
    assert o.stats["Matched data"] > 2048
    assert_equivalent(o, r)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dest", ["lh:", "lh:sub/renamed.bin"], ids=["top", "new-name"])
def test_a_single_file(dest: str, target: str, rsync_harness: RsyncHarness) -> None:
    """One file into the top of the served tree, or under another name: the sender's
    name is what is compared (so "renamed2.bin" is no basis for it), in the directory
    where the file lands."""
    h = rsync_harness
    oracle, ours = h.oracle(), make_target(h, target)
    _source(h, {"data-2024.bin": (DATA, T0), "renamed2.bin": (B_OLD, T0)})
    for t in (oracle, ours):
        for where in ("lh:", "lh:sub/"):
            assert h.run(t, ["-a", "src/", where], tree=None).returncode == 0
    _source(h, NEW)
    push = ["-aiy", "--stats", "src/data-2025.bin", dest]
    o, r = (h.run(t, push, tree=None) for t in (oracle, ours))
    assert o.stats["Matched data"] > len(DATA) // 2
    assert_equivalent(o, r)
