"""The pack layer seals a pack by object count too: many tiny objects make many packs.

Each object waiting in a pack costs a few hundred bytes of bookkeeping (its key, id,
offset and the bytes themselves), so a 16 MiB pack of 60-byte blocks -- a tree of small
files -- must not collect a quarter of a million of them before it is uploaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from blockstore.backends.memory import MemoryBackend
from blockstore.layers.pack import PackLayer
from blockstore.layers.pack_format import PACK_PREFIX, read_trailer


def key(n: int) -> str:
    return f"blocks/{hashlib.sha256(str(n).encode()).hexdigest()}"


def test_a_pack_holds_at_most_pack_objects(tmp_path: Path) -> None:
    inner = MemoryBackend()
    layer = PackLayer(inner, tmp_path, pack_size=1 << 20, pack_objects=10)
    for n in range(25):
        layer.put(key(n), b"tiny %d" % n)
    layer.flush()
    packs = list(inner.list(PACK_PREFIX))
    assert len(packs) == 3
    counts = [len(read_trailer(inner, k[len(PACK_PREFIX) :], size)[1]) for k, size in packs]
    assert sorted(counts) == [5, 10, 10]
    for n in range(25):
        assert layer.get(key(n)) == b"tiny %d" % n
    layer.close()
