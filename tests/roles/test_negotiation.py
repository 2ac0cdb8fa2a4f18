"""Checksum and compression choices end up where real rsync's do: the setup exchange
sends name lists only when nothing was forced (--cc=auto is forced too), and
--compress-level=0 turns off zlib but not zstd or lz4. A wrong guess here hangs or
breaks the token stream, so every case is a delta push checked against real rsync."""

from __future__ import annotations

import os

import pytest

from tests.helpers.rsync_harness import RsyncHarness, assert_equivalent

WHEN = 1_500_000_000_000_000_000


@pytest.mark.parametrize(
    "choice",
    [
        ("--cc=auto",),
        ("--cc=auto,md5", "-c"),
        ("--cc=xxh64,md5", "-c"),
        ("-z", "--compress-level=0"),
        ("--zc=zlib", "--compress-level=0"),
        ("--zc=lz4", "--compress-level=0"),
        ("--zc=zstd", "--compress-level=0"),
        ("--zc=auto",),
        ("--old-compress",),
        ("--new-compress",),
    ],
    ids=" ".join,
)
def test_choices_match_real_rsync(choice: tuple[str, ...], rsync_harness: RsyncHarness) -> None:
    h = rsync_harness
    src = h.client_dir / "src"
    src.mkdir()
    data = bytearray(os.urandom(200_000))
    (src / "big").write_bytes(bytes(data))
    (src / "text").write_bytes(b"hello world\n" * 5000)
    for path in (src / "big", src / "text", src):  # past times: rsync skips same-second ones
        os.utime(path, ns=(WHEN + 10**9, WHEN + 10**9))
    targets = [h.oracle(), h.rsyncd_root()]
    for target in targets:  # an older copy to delta against
        old = bytearray(data)
        old[100_000:100_100] = bytes(100)
        (target.home / "dst").mkdir()
        (target.home / "dst" / "big").write_bytes(bytes(old))
        os.utime(target.home / "dst" / "big", ns=(WHEN, WHEN))
    results = h.differential(["-ai", "--stats", *choice, "src/", "lh:dst/"], targets)
    assert_equivalent(*results, literal_slack=1.0)
