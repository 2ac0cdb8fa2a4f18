"""A namespace walked over a large tree keeps about `max_loaded` entries, and loses nothing.

Clean directories are dropped once more than `max_loaded` entries are loaded (a pull,
or the quick check of an unchanged push, touches every directory once); they load again
from their tree objects when needed. Changes are never dropped: a transaction whose
namespace keeps dropping directories still commits every change it made, and a change
made in a directory that was dropped a moment before lands in the tree.
"""

from __future__ import annotations

from blockstore.volume.tree import Namespace
from tests.blockstore.volume.helpers import StoreHarness, dir_entry, file_entry, put_file, read

DIRS, FILES = 16, 12


def names() -> list[bytes]:
    return [b"d%02d/f%02d" % (d, f) for d in range(DIRS) for f in range(FILES)]


def small(ns: Namespace, limit: int = 30) -> Namespace:
    ns.max_loaded = limit
    return ns


def fill(store: StoreHarness) -> None:
    store.create()
    volume = store.open()
    tx = volume.begin()
    for d in range(DIRS):
        tx.mkdir(b"d%02d" % d, dir_entry(b"d%02d" % d))
    for name in names():
        put_file(tx, name, name)
    tx.commit()


def test_a_walk_keeps_about_max_loaded_entries(store: StoreHarness) -> None:
    fill(store)
    volume = store.open(state="reader")
    ns = small(volume.namespace(volume.latest()))
    most = 0
    for d in range(DIRS):
        listed = ns.listdir(b"d%02d" % d)
        assert [e.name for e in listed] == [b"f%02d" % f for f in range(FILES)]
        most = max(most, ns._loaded)
        assert len(ns.root.children) <= 30 // FILES + 2
    assert most <= 30 + FILES + DIRS  # the limit, the directory just loaded, the root
    for name in names():  # everything is still there, dropped or not
        entry = ns.lookup(name)
        assert entry is not None and entry.size == len(name)


def test_changes_survive_dropping(store: StoreHarness) -> None:
    fill(store)
    volume = store.open(state="writer")
    tx = volume.begin()
    small(tx.ns, 20)
    for d in range(0, DIRS, 2):  # change every other directory, walking the rest
        put_file(tx, b"d%02d/new" % d, b"new in %d" % d)
        tx.remove(b"d%02d/f00" % d)
        assert tx.listdir(b"d%02d" % (d + 1))
        tx.set_meta(b"d%02d/f01" % d, file_entry(b"f01", 0o600))
    tx.commit()
    volume = store.open(state="after")
    for d in range(DIRS):
        ns = volume.namespace(volume.latest())
        changed = d % 2 == 0
        assert (ns.lookup(b"d%02d/f00" % d) is None) == changed
        if changed:
            assert read(volume, b"d%02d/new" % d) == b"new in %d" % d
            f01 = ns.lookup(b"d%02d/f01" % d)
            assert f01 is not None and f01.mode & 0o777 == 0o600
