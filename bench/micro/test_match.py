"""Block search throughput (the sender's delta scan): 1% changed and no-match data."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bench.micro.throughput import measure
from rsyncd_py.protocol.checksums import strong_block_sums, weak_block_sums
from rsyncd_py.protocol.match import BlockSums, Matcher

SIZE = 32 << 20
BASIS = np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
NOMATCH = np.random.default_rng(5).integers(0, 256, SIZE, dtype=np.uint8).tobytes()


def changed_1pct() -> bytes:
    """1% of the 4 KiB regions overwritten, plus a 100-byte insertion that shifts the rest."""
    data = bytearray(BASIS)
    rnd = random.Random(2)
    for _ in range(SIZE // 4096 // 100):
        at = rnd.randrange(SIZE // 4096) * 4096
        data[at : at + 4096] = rnd.randbytes(4096)
    data[1000:1000] = rnd.randbytes(100)
    return bytes(data)


CHANGED = changed_1pct()


def sums_for(blength: int) -> BlockSums:
    weak = weak_block_sums(BASIS, blength)
    strong = strong_block_sums("xxh128", BASIS, blength, 3, protocol=31, seed=7, seed_fix=True)
    return BlockSums(len(weak), blength, 3, SIZE % blength, weak, strong)


def scan(sums: BlockSums, data: bytes) -> int:
    matcher = Matcher(sums, "xxh128", 31, 7, True)
    items = 0
    for offset in range(0, len(data), 1 << 20):
        items += len(matcher.feed(data[offset : offset + (1 << 20)]))
    return items + len(matcher.finish())


@pytest.mark.parametrize("blength", [700, 8192])
@pytest.mark.parametrize("workload", ["1% changed", "no match"])
def test_block_search(benchmark, blength, workload):
    sums = sums_for(blength)
    data = CHANGED if workload == "1% changed" else NOMATCH
    measure(benchmark, f"block search {workload} k={blength}", len(data), scan, sums, data)
