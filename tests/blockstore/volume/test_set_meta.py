"""Transaction.set_meta: metadata changes keep a directory's pending changes, and reach
every member of a hard-link group (one inode on a real file system)."""

from __future__ import annotations

import stat
from dataclasses import replace

import pytest

from blockstore.backends.memory import MemoryBackend
from blockstore.volume import TreeEntry, Volume
from tests.blockstore.volume.helpers import dir_entry, put_file


def names(volume: Volume, path: bytes = b"") -> list[bytes]:
    return [e.name for e in volume.namespace(volume.latest()).listdir(path)]


@pytest.fixture
def volume() -> Volume:
    vol = Volume(MemoryBackend())
    tx = vol.begin()
    tx.mkdir(b"d", dir_entry(b"d"))
    tx.mkdir(b"d/sub", dir_entry(b"sub"))
    put_file(tx, b"d/keep", b"keep")
    put_file(tx, b"d/gone", b"gone")
    put_file(tx, b"d/sub/inner", b"inner")
    tx.commit()
    yield vol
    vol.close()


def test_set_meta_on_a_directory_keeps_a_removed_child_removed(volume: Volume) -> None:
    """rsync's --delete-before: delete in a directory, then set its times."""
    tx = volume.begin()
    tx.remove(b"d/gone")
    tx.set_meta(b"d", replace(dir_entry(b"d", 0o700), mtime_ns=123))
    assert tx.lookup(b"d/gone") is None
    assert [e.name for e in tx.listdir(b"d")] == [b"keep", b"sub"]
    tx.commit()
    assert names(volume, b"d") == [b"keep", b"sub"]
    top = volume.namespace(volume.latest()).lookup(b"d")
    assert top is not None and stat.S_IMODE(top.mode) == 0o700 and top.mtime_ns == 123


def test_set_meta_on_an_ancestor_keeps_changes_further_down(volume: Volume) -> None:
    tx = volume.begin()
    tx.remove(b"d/sub/inner")
    put_file(tx, b"d/sub/new", b"new")
    tx.set_meta(b"d/sub", replace(dir_entry(b"sub"), mtime_ns=7))
    tx.set_meta(b"d", replace(dir_entry(b"d"), mtime_ns=8))
    tx.set_meta(b"", replace(dir_entry(b""), mtime_ns=9))
    tx.commit()
    assert names(volume, b"d/sub") == [b"new"]
    assert names(volume, b"d") == [b"gone", b"keep", b"sub"]


def test_set_meta_reaches_every_member_of_a_hard_link_group(volume: Volume) -> None:
    tx = volume.begin()
    tx.link(b"d/sub/link", b"d/keep")
    tx.link(b"top-link", b"d/keep")
    tx.commit()

    tx = volume.begin()  # a later session: the members are found in the tree
    assert tx.lookup(b"d/sub/link") is not None
    member = tx.lookup(b"d/keep")
    assert member is not None
    changed = replace(member, mode=stat.S_IFREG | 0o600, xattrs=((b"user.a", b"1"),))
    tx.set_meta(b"d/keep", changed)
    tx.commit()

    ns = volume.namespace(volume.latest())
    for path in (b"d/keep", b"d/sub/link", b"top-link"):
        entry = ns.lookup(path)
        assert entry is not None, path
        assert stat.S_IMODE(entry.mode) == 0o600, path
        assert entry.xattrs == ((b"user.a", b"1"),), path
        assert entry.link_group == member.link_group, path


def test_a_replaced_member_leaves_its_group(volume: Volume) -> None:
    """A file written over a member is a new inode (rsync's rename): not linked any more."""
    tx = volume.begin()
    tx.link(b"d/other", b"d/keep")
    put_file(tx, b"d/other", b"replaced")
    keep = tx.lookup(b"d/keep")
    assert keep is not None
    tx.set_meta(b"d/keep", replace(keep, mtime_ns=5))
    other = tx.lookup(b"d/other")
    assert other is not None and other.link_group is None and other.mtime_ns != 5


def test_set_meta_of_an_unlinked_file_changes_only_it(volume: Volume) -> None:
    tx = volume.begin()
    keep = tx.lookup(b"d/keep")
    assert isinstance(keep, TreeEntry)
    tx.set_meta(b"d/keep", replace(keep, mtime_ns=11))
    gone = tx.lookup(b"d/gone")
    assert gone is not None and gone.mtime_ns != 11


def test_members_loaded_after_the_change_get_it(volume: Volume) -> None:
    tx = volume.begin()
    tx.link(b"d/sub/link", b"d/keep")
    tx.commit()
    tx = volume.begin()  # d/sub is not loaded when d/keep changes
    keep = tx.lookup(b"d/keep")
    assert keep is not None
    tx.set_meta(b"d/keep", replace(keep, mtime_ns=42))
    member = tx.lookup(b"d/sub/link")
    assert member is not None and member.mtime_ns == 42
    tx.checkpoint()  # a fresh namespace: the change still reaches members loaded later
    tx.set_meta(b"d/keep", replace(keep, mtime_ns=43))
    assert tx.lookup(b"d/sub/link").mtime_ns == 43  # type: ignore[union-attr]
    tx.commit()
    ns = volume.namespace(volume.latest())
    assert [ns.lookup(p).mtime_ns for p in (b"d/keep", b"d/sub/link")] == [43, 43]  # type: ignore[union-attr]


def test_a_moved_directory_keeps_its_members_in_the_group(volume: Volume) -> None:
    tx = volume.begin()
    tx.link(b"d/sub/link", b"d/keep")
    tx.rename(b"d/sub", b"moved")
    keep = tx.lookup(b"d/keep")
    assert keep is not None
    tx.set_meta(b"d/keep", replace(keep, mtime_ns=9))
    moved = tx.lookup(b"moved/link")
    assert moved is not None and moved.mtime_ns == 9


@pytest.mark.parametrize("kind", [stat.S_IFLNK, stat.S_IFIFO, stat.S_IFCHR])
def test_anything_but_a_directory_can_be_linked(volume: Volume, kind: int) -> None:
    tx = volume.begin()
    target = b"t" if kind == stat.S_IFLNK else None
    tx.put_special(b"node", TreeEntry(b"node", kind | 0o644, rdev=5, link_target=target))
    tx.link(b"d/node2", b"node")
    tx.commit()
    ns = volume.namespace(volume.latest())
    one, two = ns.lookup(b"node"), ns.lookup(b"d/node2")
    assert one is not None and two is not None
    assert one.link_group is not None and one.link_group == two.link_group
    assert (two.mode, two.link_target, two.rdev) == (one.mode, one.link_target, one.rdev)
    with pytest.raises(OSError):
        volume.begin().link(b"d2", b"d")
