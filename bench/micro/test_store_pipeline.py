"""The store's write pipeline per MiB, stage by stage, and the whole of it.

What a push does to every MiB it stores (blockstore/volume/files.py and the layers):
cut into content-defined chunks (FastCDC, ~64 KiB), name each chunk (BLAKE3 since store
format 3, keyed in an encrypted store; SHA-256 / HMAC-SHA256 in formats 1-2), compress
(zstd at the store's default level, 1, since format 2; a chunk whose first 4 KiB does
not shrink is stored raw, so random data costs only that probe), encrypt (AES-256-GCM,
encrypted stores only) and append to a 16 MiB pack written to the local directory. A
local-directory store has no cache; an S3 store writes each uploaded pack through to
its pack cache (`python -m bench.store` measures that, and every stage on the real
stack, per GiB). Each stage runs here alone over 32 MiB, so their costs can be added up
and compared with the last benchmark, the whole pipeline (`FileBuilder.write` +
`finish` into a fresh local-directory store, unencrypted and encrypted), which shows
what the thread pool and the per-chunk overhead add. The cache stage measures the
whole-object `CacheLayer`, which a stack without a pack layer gets in place of the
pack cache (a file per block). Random data (nothing compresses) and text-like data
(about 3x).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from bench.datasets import _TextSource
from bench.micro.throughput import measure
from blockstore.backends.localdir import LocalDirBackend
from blockstore.backends.memory import MemoryBackend
from blockstore.factory import create_store
from blockstore.layers.cache import CacheLayer
from blockstore.layers.compress import DEFAULT_LEVEL, CompressLayer
from blockstore.layers.encrypt import EncryptLayer
from blockstore.layers.pack import PackLayer
from blockstore.volume import ChunkParams, VolumeParams, open_volume
from blockstore.volume.blockid import BlockHasher, block_key
from blockstore.volume.chunker import StreamChunker

TOTAL = 32 << 20
PIECE = 1 << 20
DATA = {"random": os.urandom(TOTAL), "text": _TextSource().make(TOTAL)}


def chunks_of(data: bytes) -> list[bytes]:
    chunker = StreamChunker(ChunkParams())
    out: list[bytes] = []
    for offset in range(0, len(data), PIECE):
        out += chunker.feed(memoryview(data)[offset : offset + PIECE])
    return out + chunker.finish()


CHUNKS = {kind: chunks_of(data) for kind, data in DATA.items()}
KEYS = {kind: [block_key(BlockHasher(None).digest(c)) for c in chunks]
        for kind, chunks in CHUNKS.items()}  # fmt: skip


@pytest.fixture
def scratch():
    path = Path(tempfile.mkdtemp(prefix="pipeline-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                                 else None))  # fmt: skip
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("kind", sorted(DATA))
def test_stage_chunk(benchmark, kind):
    chunks = measure(benchmark, f"pipeline chunk fastcdc {kind}", TOTAL, chunks_of, DATA[kind])
    benchmark.extra_info["mean chunk KiB"] = round(TOTAL / len(chunks) / 1024, 1)


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])  # store format 3 / 1-2
@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
def test_stage_hash(benchmark, algorithm, keyed):
    hasher = BlockHasher(os.urandom(32) if keyed else None, algorithm)
    chunks = CHUNKS["random"]
    measure(benchmark, f"pipeline hash {'keyed ' if keyed else ''}{algorithm}", TOTAL,
            lambda: [hasher.digest(c) for c in chunks])  # fmt: skip


@pytest.mark.parametrize("kind", sorted(DATA))
def test_stage_compress(benchmark, kind):
    layer, chunks = CompressLayer(MemoryBackend(), level=DEFAULT_LEVEL), CHUNKS[kind]
    measure(benchmark, f"pipeline compress zstd-{DEFAULT_LEVEL} {kind}", TOTAL,
            lambda: [layer.encode(c) for c in chunks])  # fmt: skip


def test_stage_encrypt(benchmark):
    layer, chunks = EncryptLayer(MemoryBackend(), os.urandom(32)), CHUNKS["random"]
    keys = KEYS["random"]
    measure(benchmark, "pipeline encrypt aes-256-gcm", TOTAL,
            lambda: [layer.seal(k, c) for k, c in zip(keys, chunks, strict=True)])


def test_stage_cache_write(benchmark, scratch):
    chunks, keys = CHUNKS["random"], KEYS["random"]
    rounds = iter(range(1000))

    def put_all() -> None:
        layer = CacheLayer(MemoryBackend(), scratch / f"cache{next(rounds)}", 1 << 30)
        for key, chunk in zip(keys, chunks, strict=True):
            layer.put(key, chunk)

    measure(benchmark, "pipeline cache write-through (tmpfs)", TOTAL, put_all)


def test_stage_pack_write(benchmark, scratch):
    chunks, keys = CHUNKS["random"], KEYS["random"]
    rounds = iter(range(1000))

    def put_all() -> None:
        where = scratch / f"store{next(rounds)}"
        layer = PackLayer(LocalDirBackend(where / "bucket"), where / "state")
        try:
            for key, chunk in zip(keys, chunks, strict=True):
                layer.put(key, chunk)
            layer.flush()
        finally:
            layer.close()

    measure(benchmark, "pipeline pack + local dir write (tmpfs)", TOTAL, put_all)


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("kind", sorted(DATA))
def test_whole_pipeline(benchmark, scratch, kind, encrypt):
    """FileBuilder over a fresh local-directory store: every stage, pool and all."""
    data = DATA[kind]
    rounds = iter(range(1000))

    def store_file() -> None:
        where = scratch / f"s{next(rounds)}"
        key_file = str(where / "key") if encrypt else None
        where.mkdir()
        create_store(str(where / "store"), encrypt=encrypt, key_file=key_file,
                     volume=VolumeParams().to_config())  # fmt: skip
        volume = open_volume(str(where / "store"), key_file=key_file,
                             state_dir=where / "state")  # fmt: skip
        try:
            builder = volume.new_file()
            for offset in range(0, len(data), PIECE):
                builder.write(data[offset : offset + PIECE])
            builder.finish()
            volume.backend.flush()
        finally:
            volume.close()

    label = f"pipeline whole FileBuilder {kind} {'encrypted' if encrypt else 'plain'}"
    measure(benchmark, label, TOTAL, store_file)
