"""FileBuilder copies: ranges written as copies of a stored file reuse its blocks' ids.

The result must be exactly what writing the same bytes plainly gives (same chunks, same
ids), with only the chunks around the changes hashed and stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from blockstore.volume import Copy, FileReader, Volume
from tests.blockstore.volume.helpers import StoreHarness, random_bytes, write

SIZE = 3 << 20


def counting_puts(volume: Volume, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the length of every block the volume hashes and stores from now on."""
    calls: list[int] = []
    put_blocks: Callable[[Sequence[bytes]], list[bytes]] = volume.objects.put_blocks

    def counted(chunks: Sequence[bytes]) -> list[bytes]:
        calls.extend(map(len, chunks))
        return put_blocks(chunks)

    monkeypatch.setattr(volume.objects, "put_blocks", counted)
    return calls


def rebuild(
    volume: Volume, basis: FileReader, pieces: list[tuple[int, int] | bytes], batch: int
) -> bytes:
    """Write a new file from `pieces` (basis ranges, or literal bytes) in `batch` writes,
    as the store writer does: each write says which of its ranges are copies."""
    builder = volume.new_file()
    data = bytearray()
    copies: list[Copy] = []
    for piece in pieces:
        if isinstance(piece, bytes):
            data += piece
        else:
            offset, length = piece
            copies.append(Copy(len(data), length, basis, offset))
            data += basis.read(offset, length)
        if len(data) >= batch:
            builder.write(data, copies)
            data, copies = bytearray(), []
    builder.write(data, copies)
    return builder.finish().content.records


@pytest.mark.parametrize("batch", [1 << 20, 100_000])
def test_copies_give_the_plain_write_s_blocks_hashing_only_around_changes(
    store: StoreHarness, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    store.create()
    volume = store.open()
    old = random_bytes(SIZE, seed=1)
    basis = volume.reader(write(volume, old).content)
    change = random_bytes(5000, seed=2)
    # matched runs of 32 KiB blocks as rsync sends them, with a change in the middle
    block = 32 << 10
    middle = SIZE // 2 // block * block
    pieces: list[tuple[int, int] | bytes] = [(o, block) for o in range(0, middle, block)]
    pieces += [change, (middle + block, SIZE - middle - block)]
    new = old[:middle] + change + old[middle + block :]
    plain = write(volume, new).content.records
    puts = counting_puts(volume, monkeypatch)
    assert rebuild(volume, basis, pieces, batch) == plain
    assert 0 < sum(puts) < 5 * (256 << 10)  # the chunks around the change, at most
    assert volume.reader(basis.content).read(0, SIZE) == old


def test_copies_out_of_order_and_from_another_file_s_blocks(store: StoreHarness) -> None:
    """A moved range (rsync matches a block anywhere) and a jump back still give the
    plain write's blocks: reuse is decided per chunk, never assumed."""
    store.create()
    volume = store.open()
    old = random_bytes(SIZE, seed=3)
    basis = volume.reader(write(volume, old).content)
    half = SIZE // 2
    pieces: list[tuple[int, int] | bytes] = [(half, SIZE - half), (0, half), b"tail"]
    new = old[half:] + old[:half] + b"tail"
    assert rebuild(volume, basis, pieces, 1 << 20) == write(volume, new).content.records


def test_a_copy_from_another_store_is_written_plainly(
    store: StoreHarness, tmp_path: Path
) -> None:
    store.create()
    volume = store.open()
    other = StoreHarness(tmp_path / "other")
    (tmp_path / "other").mkdir()
    other.create()
    try:
        foreign = other.open()
        data = random_bytes(1 << 20, seed=4)
        basis = foreign.reader(write(foreign, data).content)
        records = rebuild(volume, basis, [(0, len(data))], 1 << 20)
        assert volume.objects.counters.blocks_new > 0  # stored here, not borrowed
        assert volume.objects.counters.blocks_dedup == 0
        assert records == write(volume, data).content.records
    finally:
        other.close_all()


def test_blocks_cut_by_force_are_not_spliced(store: StoreHarness) -> None:
    """A source block before a hole or at the source's end was cut by force, not by
    content: a copy running on past it must be chunked as the plain write would."""
    store.create()
    volume = store.open()
    head, tail = random_bytes(700_000, seed=5), random_bytes(500_000, seed=6)
    builder = volume.new_file()
    builder.write(head)
    builder.write_zeros(300_000)
    builder.write(tail)
    basis = volume.reader(builder.finish().content)
    after_hole = len(head) + 300_000
    pieces: list[tuple[int, int] | bytes] = [
        (0, len(head)), (after_hole, len(tail)), (0, len(head)), (after_hole, 1000)
    ]
    new = head + tail + head + tail[:1000]
    assert rebuild(volume, basis, pieces, 1 << 20) == write(volume, new).content.records
    assert rebuild(volume, basis, pieces, 64_000) == write(volume, new).content.records
