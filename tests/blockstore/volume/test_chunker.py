"""Streaming chunking equals whole-buffer chunking, whatever the write pieces."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from blockstore.volume.chunker import ChunkParams, StreamChunker

PARAMS = ChunkParams.for_average(4096)


def whole(data: bytes, params: ChunkParams = PARAMS) -> list[bytes]:
    cdc = FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size,
                  seed=params.seed)
    return [bytes(chunk.data) for chunk in cdc.cut_buf(data)]


def streamed(
    data: bytes, cuts: list[int], params: ChunkParams = PARAMS, batch: int = 1
) -> list[bytes]:
    chunker = StreamChunker(params, batch=batch)
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        out += chunker.feed(data[start:cut])
        start = max(start, cut)
    return out + chunker.finish()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(0, 300_000), ncuts=st.integers(0, 40),
       batch=st.sampled_from([1, 1 << 16, 1 << 20]))
def test_random_pieces_give_the_same_chunks(seed: int, size: int, ncuts: int, batch: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(size)
    cuts = [rng.randrange(size + 1) for _ in range(ncuts)]
    assert streamed(data, cuts, batch=batch) == whole(data)


def test_byte_at_a_time_and_low_entropy_data() -> None:
    data = (b"abcdefgh" * 2000) + bytes(50_000) + random.Random(3).randbytes(20_000)
    assert streamed(data, [*range(5000), 70_000, 70_001]) == whole(data)
    assert b"".join(whole(data)) == data


def test_pending_is_bounded_by_the_batch() -> None:
    chunker = StreamChunker(PARAMS, batch=1 << 16)
    data = random.Random(5).randbytes(1 << 20)
    for start in range(0, len(data), 1000):
        chunker.feed(data[start : start + 1000])
        assert chunker.pending < (1 << 16) + PARAMS.max_size + 1000


def test_secret_seed_changes_boundaries_and_is_not_stored() -> None:
    keyed = PARAMS.with_secret_seed(b"k" * 32)
    assert keyed.seed and keyed.seed != PARAMS.with_secret_seed(b"j" * 32).seed
    assert PARAMS.with_secret_seed(None) == PARAMS
    data = random.Random(9).randbytes(200_000)
    assert whole(data, keyed) != whole(data)
    assert streamed(data, [1234, 99_999], keyed) == whole(data, keyed)
    assert "seed" not in keyed.to_config()
    assert ChunkParams.from_config({"chunker": keyed.to_config()}) == PARAMS


def test_mean_chunk_length_follows_for_average() -> None:
    data = random.Random(1).randbytes(8 << 20)
    params = ChunkParams.for_average(64 << 10)
    chunks = whole(data, params)
    mean = len(data) / len(chunks)
    assert 48 << 10 < mean < 80 << 10
