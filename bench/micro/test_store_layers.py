"""Store layer throughput: compress and encrypt (and back) per 64 KiB and 1 MiB object.

Each round pushes 16 MiB through the layer as objects of the given size, so per-object
overhead (headers, contexts, nonces) shows up in the figure. Data is either random
(zstd gives up and stores raw) or text-like (compresses about 3-4x).
"""

from __future__ import annotations

import os
import random

import pytest

from bench.micro.throughput import measure
from blockstore.backends.memory import MemoryBackend
from blockstore.layers.compress import CompressLayer
from blockstore.layers.encrypt import EncryptLayer

TOTAL = 16 << 20
SIZES = {"64KiB": 64 << 10, "1MiB": 1 << 20}


def _text(size: int) -> bytes:
    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9)))
             for _ in range(4000)]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=12)) + b".\n"
    return bytes(out[:size])


DATA = {"random": os.urandom(TOTAL), "text": _text(TOTAL)}


def objects(kind: str, size: int) -> list[bytes]:
    data = DATA[kind]
    return [data[offset : offset + size] for offset in range(0, TOTAL, size)]


@pytest.mark.parametrize("kind", sorted(DATA))
@pytest.mark.parametrize("size", sorted(SIZES))
def test_compress(benchmark, size, kind):
    layer, items = CompressLayer(MemoryBackend(), level=3), objects(kind, SIZES[size])
    encoded = measure(benchmark, f"compress zstd-3 {kind} {size}", TOTAL,
                      lambda: [layer.encode(item) for item in items])
    benchmark.extra_info["ratio"] = round(TOTAL / sum(map(len, encoded)), 2)


@pytest.mark.parametrize("kind", sorted(DATA))
@pytest.mark.parametrize("size", sorted(SIZES))
def test_decompress(benchmark, size, kind):
    layer = CompressLayer(MemoryBackend(), level=3)
    stored = [layer.encode(item) for item in objects(kind, SIZES[size])]
    measure(benchmark, f"decompress zstd-3 {kind} {size}", TOTAL,
            lambda: [layer.decode("blocks/00", item) for item in stored])


@pytest.mark.parametrize("size", sorted(SIZES))
def test_encrypt(benchmark, size):
    layer, items = EncryptLayer(MemoryBackend(), os.urandom(32)), objects("random", SIZES[size])
    measure(benchmark, f"encrypt aes-256-gcm {size}", TOTAL,
            lambda: [layer.seal("blocks/00", item) for item in items])


@pytest.mark.parametrize("size", sorted(SIZES))
def test_decrypt(benchmark, size):
    layer = EncryptLayer(MemoryBackend(), os.urandom(32))
    sealed = [layer.seal("blocks/00", item) for item in objects("random", SIZES[size])]
    measure(benchmark, f"decrypt aes-256-gcm {size}", TOTAL,
            lambda: [layer.open("blocks/00", item) for item in sealed])


@pytest.mark.parametrize("kind", sorted(DATA))
@pytest.mark.parametrize("size", sorted(SIZES))
def test_compress_then_encrypt_put(benchmark, size, kind):
    stack = CompressLayer(EncryptLayer(MemoryBackend(), os.urandom(32)), level=3)
    items = objects(kind, SIZES[size])

    def put_all() -> None:
        for i, item in enumerate(items):
            stack.put(f"blocks/{i:08x}", item)

    measure(benchmark, f"put compress+encrypt {kind} {size}", TOTAL, put_all)
