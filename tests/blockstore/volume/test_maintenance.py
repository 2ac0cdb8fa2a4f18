"""gc, forget and fsck on real stores."""

from __future__ import annotations

import datetime as dt
import stat

import pytest

from blockstore.factory import open_backend
from blockstore.layers.pack_format import PACK_PREFIX
from blockstore.volume import Snapshot, TreeEntry
from blockstore.volume.forget import KeepPolicy, apply_policy, forget
from blockstore.volume.fsck import fsck
from blockstore.volume.gc import gc
from blockstore.volume.report import store_stats
from tests.blockstore.volume.helpers import StoreHarness, put_file, random_bytes, read

DATA = {b"keep": random_bytes(400_000, seed=1), b"drop": random_bytes(600_000, seed=2)}


def two_snapshots(store: StoreHarness, *, encrypt: bool = False):
    """Snapshot 1 has keep+drop, snapshot 2 only keep; returns (volume, s1, s2)."""
    store.create(encrypt=encrypt)
    volume = store.open()
    tx = volume.begin()
    for path, data in DATA.items():
        put_file(tx, path, data)
    first = tx.commit()
    tx = volume.begin()
    tx.remove(b"drop")
    second = tx.commit()
    return volume, first, second


def test_gc_frees_only_unreferenced_data(store: StoreHarness) -> None:
    volume, first, _second = two_snapshots(store)
    assert gc(volume, grace_seconds=0).deleted_objects == 0  # both snapshots still live
    volume.snapshots.delete(first.id)
    before = store_stats(volume)
    report = gc(volume, grace_seconds=0)
    assert report.deleted_objects >= 600_000 // (64 << 10)
    assert report.deleted_packs + report.repacked_packs > 0
    after = store_stats(volume)
    assert after["stored_bytes"] < before["stored_bytes"] - 500_000  # type: ignore[operator]
    assert read(volume, b"keep") == DATA[b"keep"]
    assert fsck(volume, read_data=True).ok
    store.close(volume)
    fresh = store.open(state="fresh")  # the bucket alone still has everything live
    assert read(fresh, b"keep") == DATA[b"keep"]
    assert fsck(fresh, read_data=True).ok


def test_gc_keeps_young_data_of_sessions_in_flight(store: StoreHarness) -> None:
    volume, first, _second = two_snapshots(store)
    volume.snapshots.delete(first.id)
    tx = volume.begin()
    put_file(tx, b"in-flight", random_bytes(300_000, seed=3))
    volume.backend.flush()  # its blocks are uploaded, its snapshot not yet written
    report = gc(volume)  # default grace: an hour
    assert report.deleted_objects == 0 and report.kept_in_grace > 0
    assert report.deleted_packs == report.repacked_packs == 0
    tx.commit()
    assert fsck(volume, read_data=True).ok
    assert read(volume, b"in-flight") == random_bytes(300_000, seed=3)


def test_without_grace_a_session_in_flight_cannot_commit_a_hole(store: StoreHarness) -> None:
    volume, _first, _second = two_snapshots(store)
    tx = volume.begin()
    put_file(tx, b"in-flight", random_bytes(300_000, seed=3))
    volume.backend.flush()
    gc(volume, grace_seconds=0)
    with pytest.raises(Exception, match="missing after upload"):
        tx.commit()
    assert fsck(volume).ok


def test_gc_dry_run_changes_nothing(store: StoreHarness) -> None:
    volume, first, _second = two_snapshots(store)
    volume.snapshots.delete(first.id)
    objects = sorted(volume.backend.list(""))
    report = gc(volume, grace_seconds=0, dry_run=True)
    assert report.deleted_objects > 0 and report.dry_run
    assert sorted(volume.backend.list("")) == objects


@pytest.mark.parametrize("encrypt", [False, True])
def test_fsck_read_data_names_a_flipped_byte(store: StoreHarness, encrypt: bool) -> None:
    volume, _first, _second = two_snapshots(store, encrypt=encrypt)
    store.close(volume)
    volume = store.open(cache_size=0)
    entry = volume.namespace(volume.latest()).lookup(b"keep")
    assert entry is not None and entry.content is not None
    victim = "blocks/" + entry.content.records[36 * 2 : 36 * 2 + 32].hex()
    pack = volume.pack_layer
    assert pack is not None
    number, offset, _length = pack.index.lookup(0, bytes.fromhex(victim[7:]))  # type: ignore[misc]
    pack_key = PACK_PREFIX + pack.index.pack(number).name
    bottom = open_backend(store.url)
    blob = bytearray(bottom.get(pack_key))
    blob[offset + 20] ^= 0x01
    bottom.put(pack_key, bytes(blob))
    assert fsck(volume).ok  # presence only: cannot see it
    report = fsck(volume, read_data=True)
    assert [p.key for p in report.problems] == [victim]
    assert report.problems[0].path == "keep"


def test_fsck_names_deleted_objects(store: StoreHarness) -> None:
    volume, first, _second = two_snapshots(store)
    entry = volume.namespace(first).lookup(b"drop")
    assert entry is not None and entry.content is not None
    victim = "blocks/" + entry.content.records[:32].hex()
    volume.backend.delete(victim)
    report = fsck(volume)
    assert [(p.key, p.snapshot, p.path) for p in report.problems] == [(victim, first.id, "drop")]
    assert "missing" in report.problems[0].error
    for key, _size in list(open_backend(store.url).list(PACK_PREFIX)):
        open_backend(store.url).delete(key)
    report = fsck(volume)
    assert not report.ok and all("gone" in p.error or "missing" in p.error
                                 for p in report.problems)


def snap(day: str, n: int = 0) -> Snapshot:
    when = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    time_ns = int(when.timestamp() * 1e9) + n
    root = TreeEntry(b"", stat.S_IFDIR | 0o755)
    return Snapshot(f"{when:%Y%m%dT%H%M%S}.{n:06d}Z-00000000", root, time_ns)


def label(snapshot: Snapshot) -> str:
    """'2024-02-07T08' for a snapshot taken on that day at that hour (UTC)."""
    when = dt.datetime.fromtimestamp(snapshot.time_ns / 1e9, dt.UTC)
    return f"{when:%Y-%m-%dT%H}"


HISTORY = [
    snap("2024-01-01T10:00"), snap("2024-01-15T10:00"), snap("2024-01-31T23:00"),
    snap("2024-02-01T09:00"), snap("2024-02-01T18:00"), snap("2024-02-05T08:00"),
    snap("2024-02-06T08:00"), snap("2024-02-06T20:00"), snap("2024-02-07T08:00"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "kept"),
    [
        (KeepPolicy(last=2), ["2024-02-07T08", "2024-02-06T20"]),
        (KeepPolicy(daily=3), ["2024-02-07T08", "2024-02-06T20", "2024-02-05T08"]),
        (KeepPolicy(weekly=2), ["2024-02-07T08", "2024-02-01T18"]),
        (KeepPolicy(monthly=2), ["2024-02-07T08", "2024-01-31T23"]),
        (KeepPolicy(last=1, monthly=3),
         ["2024-02-07T08", "2024-01-31T23"]),
        (KeepPolicy(daily=1, weekly=1, monthly=1), ["2024-02-07T08"]),
        (KeepPolicy(last=100), [label(s) for s in reversed(HISTORY)]),
    ],
)
def test_forget_policy(policy: KeepPolicy, kept: list[str]) -> None:
    decisions = apply_policy(HISTORY, policy)
    assert [label(d.snapshot) for d in decisions if d.keep] == kept


def test_forget_policy_must_keep_something() -> None:
    with pytest.raises(ValueError, match="keeps no snapshot"):
        KeepPolicy()


def test_forget_removes_snapshot_objects_only(store: StoreHarness) -> None:
    volume, first, second = two_snapshots(store)
    decisions = forget(volume, KeepPolicy(last=1))
    assert [(d.snapshot.id, d.keep) for d in decisions] == [(second.id, True), (first.id, False)]
    assert volume.snapshots.ids() == [second.id]
    assert fsck(volume).ok
