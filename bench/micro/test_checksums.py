"""Checksum throughput: weak block sums (numpy), strong block sums, whole-file sums."""

from __future__ import annotations

import random

import pytest

from bench.micro.throughput import measure
from rsyncd_py.protocol.checksums import new_file_hasher, strong_block_sums, weak_block_sums

DATA = random.Random(1).randbytes(32 << 20)


@pytest.mark.parametrize("block_len", [700, 8192, 131072])
def test_weak_block_sums(benchmark, block_len):
    label = f"weak_block_sums k={block_len}"
    measure(benchmark, label, len(DATA), weak_block_sums, DATA, block_len)


@pytest.mark.parametrize("name", ["xxh128", "xxh64", "md5", "md4", "sha1"])
@pytest.mark.parametrize("block_len", [700, 8192])
def test_strong_block_sums(benchmark, name, block_len):
    data = DATA[: 8 << 20]

    def run():
        return strong_block_sums(name, data, block_len, 16 if name != "xxh64" else 8,
                                 protocol=31, seed=12345, seed_fix=True)

    measure(benchmark, f"strong_block_sums {name} k={block_len}", len(data), run)


@pytest.mark.parametrize(("name", "protocol"), [("xxh128", 31), ("md5", 31), ("md4", 29)])
def test_whole_file_sum(benchmark, name, protocol):
    view = memoryview(DATA)

    def run():
        hasher = new_file_hasher(name, protocol=protocol, seed=12345)
        for offset in range(0, len(view), 32 << 10):
            hasher.update(view[offset : offset + (32 << 10)])
        return hasher.digest()

    measure(benchmark, f"whole-file {name} (32 KiB updates)", len(DATA), run)
