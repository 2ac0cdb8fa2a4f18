"""The on-disk pack index: a dict model, growth, reopening, crash detection, size."""

from __future__ import annotations

import os
import random
from pathlib import Path

from blockstore.volume.index import _HEADER, HEADER_SIZE, MAX_LOAD, SLOT_SIZE, PackIndex


def ident(n: int) -> bytes:
    return random.Random(n).randbytes(32)


def test_matches_a_dict_model_through_growth_and_reopen(tmp_path: Path) -> None:
    index = PackIndex(tmp_path)
    model: dict[tuple[int, bytes], tuple[int, int, int]] = {}
    rng = random.Random(1)
    for round_ in range(40):
        batch = [(rng.randrange(2), ident(rng.randrange(20_000)), rng.randrange(1 << 30),
                  rng.randrange(1 << 20)) for _ in range(500)]
        index.insert(batch, round_ + 1)
        for kind, i, offset, length in batch:
            model[(kind, i)] = (round_ + 1, offset, length)
        for k in rng.sample(sorted(model), 100):
            assert index.delete(*k)
            del model[k]
    assert not index.delete(0, ident(10**9))
    assert index.count() == len(model) == sum(len(p) for p in index.entries())
    index.close()
    index = PackIndex(tmp_path)
    assert not index.needs_rebuild
    for k, value in model.items():
        assert index.lookup(*k) == value
    assert index.lookup(0, os.urandom(32)) is None
    index.close()


def test_same_id_under_two_kinds_and_hand_made_ids(tmp_path: Path) -> None:
    index = PackIndex(tmp_path)
    index.insert([(0, bytes(32), 1, 2), (1, bytes(32), 3, 4)], 5)
    index.insert([(0, n.to_bytes(32), n, 1) for n in range(1, 3000)], 6)
    assert index.lookup(0, bytes(32)) == (5, 1, 2)
    assert index.lookup(1, bytes(32)) == (5, 3, 4)
    assert all(index.lookup(0, n.to_bytes(32)) == (6, n, 1) for n in range(1, 3000))
    index.close()


def test_dirty_table_from_an_earlier_boot_needs_a_rebuild(tmp_path: Path) -> None:
    index = PackIndex(tmp_path)
    index.insert([(0, ident(1), 0, 1)], 1)  # dirty until synced
    index._set_header(boot=b"\x01" * 16)  # as if the machine had rebooted since
    index._mm.flush()  # type: ignore[union-attr]
    assert PackIndex(tmp_path).needs_rebuild
    index.sync()
    assert not PackIndex(tmp_path).needs_rebuild


def test_packs_are_numbered_and_removable(tmp_path: Path) -> None:
    index = PackIndex(tmp_path)
    first = index.add_pack("ab" * 32, 100, 5, 2)
    second = index.add_pack("cd" * 32, 200, 6, 3)
    assert (first, second) == (1, 2)
    index.remove_pack(first)
    other = PackIndex(tmp_path)  # another process sharing the state dir
    assert [(p.number, p.deleted) for p in other.packs()] == [(1, True), (2, False)]
    assert other.pack(2).name == "cd" * 32
    assert other.add_pack("cd" * 32, 200, 6, 3) == 2  # known already: registered once
    assert index.add_pack("cd" * 32, 200, 6, 3) == 2
    assert len(index.packs()) == 2
    assert index.add_pack("ab" * 32, 100, 5, 2) == 3  # deleted: a re-upload is a new pack
    index.close()
    other.close()


def test_bytes_per_entry_stay_under_60(tmp_path: Path) -> None:
    index = PackIndex(tmp_path)
    total = 100_000
    for _ in range(total // 1000):
        index.insert([(0, os.urandom(32), 0, 1) for _n in range(1000)], 1)
    capacity = _HEADER.unpack_from(index._mm)[1]  # type: ignore[arg-type]
    size = (tmp_path / "slots").stat().st_size
    assert size == HEADER_SIZE + (capacity + 4096) * SLOT_SIZE
    assert 0.7 < total / capacity <= 0.92
    assert (size - HEADER_SIZE - 4096 * SLOT_SIZE) / total < 60
    index.close()


def test_table_of_another_format_is_replaced_and_needs_a_rebuild(tmp_path: Path) -> None:
    index = PackIndex(tmp_path)
    index.insert([(0, ident(1), 0, 1)], 1)
    index.sync()
    index.close()
    slots = tmp_path / "slots"
    raw = bytearray(slots.read_bytes())
    raw[:8] = b"RPIDX001"  # a table written by an older release
    slots.write_bytes(bytes(raw))
    reopened = PackIndex(tmp_path)
    assert reopened.needs_rebuild
    assert reopened.lookup(0, ident(1)) is None  # the old table is gone until rebuilt
    reopened.close()


def test_a_large_batch_never_fills_the_table_past_its_load(tmp_path: Path) -> None:
    """A pack of 16,384 small objects into a young table: it grows before the batch,
    so no insert probes a table more than MAX_LOAD full (probe runs stay short)."""
    index = PackIndex(tmp_path)
    loads: list[float] = []
    probe = index._probe

    def recording(kind: int, ident: bytes) -> tuple[int, int]:
        header = _HEADER.unpack_from(index._mm)  # type: ignore[arg-type]
        loads.append(header[2] / header[1])  # live / capacity
        return probe(kind, ident)

    index._probe = recording  # type: ignore[method-assign]
    index.insert([(0, ident(n), n, 1) for n in range(16_384)], 1)
    assert len(loads) == 16_384 and max(loads) <= MAX_LOAD
    assert all(index.lookup(0, ident(n)) == (1, n, 1) for n in range(0, 16_384, 7))
    index.close()
