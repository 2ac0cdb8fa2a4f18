"""Commits, rebases, checkpoints, crash safety and the writer lease."""

from __future__ import annotations

import logging
import os
import stat
import threading

import pytest

from blockstore.backend import StoreError
from blockstore.backends.memory import MemoryBackend
from blockstore.layers.fault import FaultSpec
from blockstore.volume import (
    NEEDS_IO,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    MissingObjectsError,
    NamespaceError,
    TreeEntry,
    Volume,
)
from blockstore.volume.fsck import fsck
from blockstore.volume.lease import LEASE_KEY
from tests.blockstore.volume.helpers import (
    StoreHarness,
    dir_entry,
    file_entry,
    put_file,
    random_bytes,
    read,
    write,
)


def names(volume: Volume, path: bytes = b"") -> list[bytes]:
    return [e.name for e in volume.namespace(volume.latest()).listdir(path)]


@pytest.fixture
def volume() -> Volume:
    vol = Volume(MemoryBackend())
    tx = vol.begin()
    tx.mkdir(b"d", dir_entry(b"d"))
    put_file(tx, b"d/base", b"base")
    put_file(tx, b"top", b"top")
    tx.commit()
    yield vol
    vol.close()


def test_concurrent_additions_are_both_kept(volume: Volume) -> None:
    one, two = volume.begin(), volume.begin()
    put_file(one, b"d/one", b"1")
    put_file(two, b"d/two", b"2")
    two.mkdir(b"new", dir_entry(b"new"))
    put_file(two, b"new/inner", b"3")
    first = one.commit()
    second = two.commit()
    assert first is not None and second is not None and second.parent == first.id
    assert names(volume, b"d") == [b"base", b"one", b"two"]
    assert names(volume) == [b"d", b"new", b"top"]
    assert read(volume, b"new/inner") == b"3"


def test_same_path_later_commit_wins(volume: Volume) -> None:
    one, two = volume.begin(), volume.begin()
    put_file(one, b"top", b"from one")
    put_file(two, b"top", b"from two")
    two.commit()
    one.commit()
    assert read(volume, b"top") == b"from one"


def test_removed_directory_survives_if_others_filled_it(volume: Volume) -> None:
    remover, adder = volume.begin(), volume.begin()
    remover.remove(b"d/base")
    remover.remove(b"d")
    put_file(adder, b"d/late", b"late")
    adder.commit()
    remover.commit()
    assert names(volume, b"d") == [b"late"]  # the removal of d/base still applied


def test_removed_directory_goes_if_nobody_touched_it(volume: Volume) -> None:
    remover, other = volume.begin(), volume.begin()
    remover.remove(b"d/base")
    remover.remove(b"d")
    put_file(other, b"elsewhere", b"x")
    other.commit()
    remover.commit()
    assert names(volume) == [b"elsewhere", b"top"]


def test_renamed_directory_keeps_its_contents_and_changes(volume: Volume) -> None:
    mover, other = volume.begin(), volume.begin()
    put_file(mover, b"d/added", b"added")
    mover.rename(b"d", b"moved")
    put_file(other, b"top", b"changed elsewhere")
    other.commit()
    mover.commit()
    assert names(volume) == [b"moved", b"top"]
    assert names(volume, b"moved") == [b"added", b"base"]
    assert read(volume, b"top") == b"changed elsewhere"


def test_directory_metadata_and_contents_merge(volume: Volume) -> None:
    chmod, adder = volume.begin(), volume.begin()
    chmod.set_meta(b"d", dir_entry(b"d", 0o700))
    put_file(adder, b"d/new", b"n")
    adder.commit()
    chmod.commit()
    ns = volume.namespace(volume.latest())
    assert ns.lookup(b"d").mode & 0o777 == 0o700  # type: ignore[union-attr]
    assert names(volume, b"d") == [b"base", b"new"]


def test_no_change_commits_nothing_and_follows_the_newest(volume: Volume) -> None:
    idle, busy = volume.begin(), volume.begin()
    put_file(busy, b"x", b"x")
    newest = busy.commit()
    assert idle.checkpoint() is None
    assert idle.base == newest and idle.lookup(b"x") is not None
    assert len(volume.snapshots.ids()) == 2


def test_checkpoint_keeps_going_and_survives_abort(volume: Volume) -> None:
    tx = volume.begin()
    put_file(tx, b"first", b"1")
    checkpoint = tx.checkpoint()
    assert checkpoint is not None and volume.latest() == checkpoint
    put_file(tx, b"second", b"2")
    tx.abort()
    assert names(volume) == [b"d", b"first", b"top"]


def test_posix_rules(volume: Volume) -> None:
    tx = volume.begin()
    errors = {
        "mkdir over a file": (lambda: tx.mkdir(b"top", dir_entry(b"top")), 17),
        "file over a directory": (lambda: put_file(tx, b"d", b"x"), 21),
        "parent missing": (lambda: put_file(tx, b"no/such", b"x"), 2),
        "parent is a file": (lambda: put_file(tx, b"top/x", b"x"), 20),
        "rmdir non-empty": (lambda: tx.remove(b"d"), 39),
        "reserved name": (lambda: tx.mkdir(b".snapshots", dir_entry(b".snapshots")), 30),
        "hard link to a directory": (lambda: tx.link(b"l", b"d"), 1),
    }
    for what, (action, err) in errors.items():
        with pytest.raises(NamespaceError) as info:
            action()
        assert info.value.errno == err, what
    tx.link(b"d/link", b"top")
    top, link = tx.lookup(b"top"), tx.lookup(b"d/link")
    assert top is not None and link is not None and top.link_group == link.link_group
    tx.put_special(b"sym", TreeEntry(b"sym", stat.S_IFLNK | 0o777, link_target=b"top"))
    assert tx.lookup(b"sym").link_target == b"top"  # type: ignore[union-attr]


def test_check_new_file_cached_answers_from_loaded_directories_only(volume: Volume) -> None:
    """The store FS asks it on the event loop before every file: it must never fetch,
    and where it can answer it must answer as check_new_file does."""
    tx = volume.begin()
    assert tx.check_new_file_cached(b"d/new") is NEEDS_IO  # d not loaded yet
    tx.check_new_file(b"d/new")  # loads d
    assert tx.check_new_file_cached(b"d/new") is None
    assert tx.check_new_file_cached(b"d/base") is None  # replacing a file is fine
    for path, err in ((b"d", 21), (b"nothing/x", 2), (b"top/x", 20), (b".snapshots", 30)):
        with pytest.raises(NamespaceError) as info:
            tx.check_new_file_cached(path)
        assert info.value.errno == err, path


def test_put_file_cached_places_a_file_only_without_blocking(volume: Volume) -> None:
    """The store FS places a small file from the event loop with it: NEEDS_IO, and
    nothing done, when a tree must be fetched or another thread holds the mutex."""
    tx = volume.begin()
    written = write(volume, b"new")
    assert tx.put_file_cached(b"d/new", file_entry(b"new"), written) is NEEDS_IO  # d unloaded
    tx.check_new_file(b"d/new")  # loads d
    held, release = threading.Event(), threading.Event()

    def hold_mutex() -> None:
        with tx._mutex:
            held.set()
            release.wait()

    holder = threading.Thread(target=hold_mutex)
    holder.start()
    held.wait()
    assert tx.put_file_cached(b"d/new", file_entry(b"new"), written) is NEEDS_IO
    release.set()
    holder.join()
    assert tx.lookup(b"d/new") is None  # neither attempt did anything
    assert tx.put_file_cached(b"d/new", file_entry(b"new"), written) is None
    with pytest.raises(NamespaceError):
        tx.put_file_cached(b"d", file_entry(b"d"), written)  # a directory is not replaced
    tx.commit()
    assert read(volume, b"d/new") == b"new"


def test_commit_refuses_blocks_that_vanished(volume: Volume) -> None:
    tx = volume.begin()
    put_file(tx, b"victim", random_bytes(100_000, seed=7))
    entry = tx.lookup(b"victim")
    assert entry is not None and entry.content is not None
    block_id = entry.content.records[:32]
    volume.backend.delete("blocks/" + block_id.hex())  # as if its upload had failed
    with pytest.raises(MissingObjectsError, match="blocks/" + block_id.hex()):
        tx.commit()
    assert names(volume) == [b"d", b"top"]


def test_failed_put_mid_commit_leaves_the_previous_snapshot(store: StoreHarness) -> None:
    store.create()  # 256 KiB packs, 16 KiB chunks
    volume = store.open()
    tx = volume.begin()
    put_file(tx, b"old", random_bytes(300_000, seed=1))
    before = tx.commit()
    store.close(volume)

    files = {b"f%d" % n: random_bytes(200_000, seed=10 + n) for n in range(6)}
    volume = store.open(fault=FaultSpec(fail_nth_put=3, nth_error="permanent"))
    tx = volume.begin()
    for path, data in files.items():
        put_file(tx, path, data)
    with pytest.raises(StoreError, match="injected permanent fault"):
        tx.commit()
    store.close(volume)

    volume = store.open(state="after-crash")  # nothing local survives
    assert volume.latest() == before
    assert fsck(volume, read_data=True).ok
    counters = volume.objects.counters
    tx = volume.begin()
    for path, data in files.items():
        put_file(tx, path, data)
    tx.commit()
    total = counters.blocks_new + counters.blocks_dedup
    assert 0 < counters.blocks_new < total  # only what the failed pack held went up again
    assert all(read(volume, path) == data for path, data in files.items())
    assert fsck(volume, read_data=True).ok


def test_second_writer_is_refused_then_force_takes_over(
    store: StoreHarness, caplog: pytest.LogCaptureFixture
) -> None:
    store.create()
    first, second = store.open(), store.open(state="s2")
    first.lease = Lease(first.stack.raw, host="host-a")  # type: ignore[union-attr]
    first.lease.acquire()
    lease = Lease(second.stack.raw, host="host-b")  # type: ignore[union-attr]
    held = rf"store is locked by host-a pid {os.getpid()} since "
    with pytest.raises(LeaseHeldError, match=held):
        lease.acquire()
    with caplog.at_level(logging.WARNING):
        lease.acquire(force=True)
    assert "taking over the live (--force) store lease of host-a" in caplog.text
    second.lease = lease
    tx = first.begin()
    put_file(tx, b"x", b"x")
    with pytest.raises(LeaseLostError, match="now held by host-b"):
        tx.commit()
    tx = second.begin()
    put_file(tx, b"y", b"y")
    tx.commit()
    store.close(second)
    assert not first.stack.raw.exists(LEASE_KEY)  # type: ignore[union-attr]


def test_stale_leases_are_taken_over(store: StoreHarness, caplog: pytest.LogCaptureFixture) -> None:
    store.create()
    volume = store.open()
    raw = volume.stack.raw  # type: ignore[union-attr]
    expired = Lease(raw, ttl=-1, host="elsewhere")
    expired.acquire()
    expired._stop.set()  # a writer that died without releasing
    with caplog.at_level(logging.WARNING):
        Lease(raw, host="here").acquire()
    assert "stale store lease of elsewhere" in caplog.text
    raw.delete(LEASE_KEY)
    dead = Lease(raw)  # this host, but its pid is gone
    dead._since = 0
    raw.put(LEASE_KEY, b'{"holder": "x", "host": "%s", "pid": 999999999, "since": 0, '
                       b'"expires": 99999999999999999999}' % os.uname().nodename.encode())
    Lease(raw).acquire()


def test_commit_that_failed_writing_trees_can_be_retried(store: StoreHarness) -> None:
    store.create()
    volume = store.open(fault=FaultSpec(fail_nth_put=2, nth_error="permanent"))
    tx = volume.begin()
    tx.mkdir(b"d", dir_entry(b"d"))
    put_file(tx, b"d/f", b"content")
    volume.backend.flush()  # put 1: the pack with the block
    with pytest.raises(StoreError, match="injected permanent fault on put #2"):
        tx.commit()  # put 2: the pack with the trees fails
    assert volume.latest() is None
    snap = tx.commit()  # the same transaction, again: its trees are written again
    assert snap is not None and read(volume, b"d/f") == b"content"
    store.close(volume)
    assert fsck(store.open(state="fresh"), read_data=True).ok
