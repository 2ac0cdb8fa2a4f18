"""The sender's block search: every output rebuilds the file, and costs about what rsync's does.

Correctness: for random bases and edits (insertions, deletions, overwrites, shifts,
repeated blocks), the Literal/Match items, fed in pieces of any size, rebuild the new
file from the basis. Efficiency: for the same change and block size, the literal bytes
are within a small factor of the "Literal data" real rsync reports for a local
--no-whole-file copy.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsyncd_py.protocol.checksums import strong_block_sums, weak_block_sums
from rsyncd_py.protocol.match import MAX_SKIP, BlockSums, Matcher
from rsyncd_py.protocol.sums import pack_block_sums
from rsyncd_py.protocol.tokens import Literal, Match

RSYNC = shutil.which("rsync")


def block_sums(basis: bytes, blength: int, s2length: int = 2, name: str = "xxh128") -> BlockSums:
    weak = weak_block_sums(basis, blength) if basis else np.zeros(0, dtype=np.uint32)
    strong = strong_block_sums(name, basis, blength, s2length, protocol=31, seed=99,
                               seed_fix=True) if basis else b""
    return BlockSums(len(weak), blength, s2length, len(basis) % blength, weak, strong)


def search(sums: BlockSums, data: bytes, pieces: list[int], name: str = "xxh128") -> list:
    matcher = Matcher(sums, name, 31, 99, True)
    items, pos = [], 0
    for size in pieces:
        items += matcher.feed(data[pos : pos + size])
        pos += size
    items += matcher.feed(data[pos:])
    return items + matcher.finish()


def rebuild(items: list, basis: bytes, sums: BlockSums) -> bytes:
    out = bytearray()
    for item in items:
        if isinstance(item, Literal):
            assert item.data
            out += item.data
        else:
            assert isinstance(item, Match) and 0 <= item.index < sums.count
            out += basis[item.index * sums.blength : item.index * sums.blength
                         + sums.block_len(item.index)]
    return bytes(out)


def literal_bytes(items: list) -> int:
    return sum(len(i.data) for i in items if isinstance(i, Literal))


def edit(rnd: random.Random, data: bytes, count: int) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        at = rnd.randrange(len(out) + 1)
        kind = rnd.randrange(4)
        if kind == 0:
            out[at:at] = rnd.randbytes(rnd.randrange(1, 2000))
        elif kind == 1:
            del out[at : at + rnd.randrange(1, 2000)]
        elif kind == 2:
            out[at : at + 64] = rnd.randbytes(64)
        else:  # move a piece elsewhere
            piece = bytes(out[at : at + 3000])
            del out[at : at + 3000]
            to = rnd.randrange(len(out) + 1)
            out[to:to] = piece
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(0, 40_000),
    blength=st.sampled_from([1, 5, 64, 700, 1024, 9000]),
    edits=st.integers(0, 6),
    pieces=st.lists(st.integers(1, 9000), max_size=12),
)
def test_items_rebuild_the_file(seed, size, blength, edits, pieces) -> None:
    rnd = random.Random(seed)
    basis = rnd.randbytes(size)
    new = edit(rnd, basis, edits) if basis else rnd.randbytes(rnd.randrange(100))
    sums = block_sums(basis, blength)
    items = search(sums, new, pieces)
    assert rebuild(items, basis, sums) == new


def test_large_file_in_one_byte_and_huge_pieces() -> None:
    rnd = random.Random(3)
    basis = rnd.randbytes(300_000)
    new = edit(rnd, basis, 10)
    sums = block_sums(basis, 700, 3)
    one_byte = search(sums, new[:20_000], [1] * 20_000)
    assert rebuild(one_byte, basis, sums) == new[:20_000]
    whole = search(sums, new, [len(new)])
    assert rebuild(whole, basis, sums) == new
    assert literal_bytes(whole) < 40_000  # 10 edits of <= 3 KiB, each costing ~2 blocks


def test_unchanged_file_is_all_consecutive_matches() -> None:
    basis = random.Random(4).randbytes(100_000 + 123)
    sums = block_sums(basis, 1000)
    items = search(sums, basis, [7777] * 13)
    assert items == [Match(i) for i in range(sums.count)]


def test_repetitive_data_and_identical_blocks() -> None:
    basis = bytes(50_000) + b"ab" * 20_000 + bytes(50_000)
    new = bytes(60_000) + b"ab" * 20_000 + b"tail"
    sums = block_sums(basis, 512)
    items = search(sums, new, [4096] * 40)
    assert rebuild(items, basis, sums) == new
    assert literal_bytes(items) <= 512 + 4
    # identical zero blocks are matched as a consecutive run (rsync's want_i)
    indices = [i.index for i in items if isinstance(i, Match)][:10]
    assert indices == list(range(indices[0], indices[0] + 10))


@pytest.mark.parametrize("changed_in_a_row", [1, 2, MAX_SKIP, MAX_SKIP + 1, MAX_SKIP + 3])
def test_blocks_changed_in_place_cost_exactly_themselves(changed_in_a_row: int) -> None:
    rnd = random.Random(changed_in_a_row)
    blength = 1024
    basis = rnd.randbytes(200 * blength + 77)
    new = bytearray(basis)
    changed = set()
    for first in (0, 17, 60, 61 + changed_in_a_row, 150, 200 - changed_in_a_row):
        for block in range(first, first + changed_in_a_row):
            new[block * blength + 5 : block * blength + 9] = rnd.randbytes(4)
            changed.add(block)
    sums = block_sums(basis, blength, 4)
    for pieces in ([len(new)], [3000] * 70, [blength] * 201, [100_000, 7]):
        items = search(sums, bytes(new), pieces)
        assert rebuild(items, basis, sums) == new
        # in place, whatever the run of changes: the changed blocks and nothing else
        assert literal_bytes(items) == len(changed) * blength
        assert [i.index for i in items if isinstance(i, Match)] == [
            b for b in range(sums.count) if b not in changed
        ]


def test_short_last_block_matches_only_at_the_end() -> None:
    basis = random.Random(5).randbytes(2 * 700 + 300)
    sums = block_sums(basis, 700)
    tail = basis[-300:]
    assert search(sums, tail, []) == [Match(2)]
    assert search(sums, tail + b"x", []) == [Literal(tail + b"x")]
    assert search(block_sums(b"", 700), b"abc", []) == [Literal(b"abc")]


def test_from_wire_matches_the_generator_packing() -> None:
    basis = random.Random(6).randbytes(5000)
    sums = block_sums(basis, 700, 4)
    raw = pack_block_sums(sums.sum1, sums.sum2, 4)
    again = BlockSums.from_wire(sums.count, 700, 4, sums.remainder, raw)
    assert again.sum2 == sums.sum2 and again.sum1.tolist() == sums.sum1.tolist()
    with pytest.raises(ValueError):
        BlockSums.from_wire(sums.count + 1, 700, 4, sums.remainder, raw)


@pytest.mark.skipif(RSYNC is None, reason="real rsync not installed")
@pytest.mark.parametrize("blength", [700, 2048])
def test_literal_data_close_to_real_rsync(tmp_path: Path, blength: int) -> None:
    rnd = random.Random(blength)
    basis = rnd.randbytes(400_000)
    new = edit(rnd, basis, 12)
    (tmp_path / "src").write_bytes(new)
    (tmp_path / "dst").write_bytes(basis)
    stats = subprocess.run(
        [RSYNC, "--no-whole-file", "-I", "--stats", f"--block-size={blength}",
         str(tmp_path / "src"), str(tmp_path / "dst")],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    theirs = int(re.search(r"Literal data: ([\d,]+)", stats).group(1).replace(",", ""))
    sums = block_sums(basis, blength)
    ours = literal_bytes(search(sums, new, [65536] * 10))
    assert theirs > 0
    assert ours <= 1.25 * theirs + blength, (ours, theirs)
