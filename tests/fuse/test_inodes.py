"""The inode table on its own: derived numbers, hard links, collisions, forget, pinning."""

from __future__ import annotations

import stat

import pytest

from blockstore.fuse import inodes
from blockstore.fuse.catalog import View
from blockstore.fuse.inodes import FIRST_DERIVED, ROOT_INODE, InodeTable, derived_inode, identity_of
from blockstore.volume import Snapshot, TreeEntry

ROOT = TreeEntry(b"", stat.S_IFDIR | 0o755)
SNAP = Snapshot("20260101T000000.000000Z-0000abcd", ROOT, 1)
AT_ROOT = View(SNAP, at_root=True)
UNDER_SNAPSHOTS = View(SNAP, at_root=False)


def _file(name: bytes, group: int | None = None) -> TreeEntry:
    return TreeEntry(name, stat.S_IFREG | 0o644, link_group=group)


def _table() -> InodeTable:
    table = InodeTable()
    table.pin(ROOT_INODE, AT_ROOT, b"", ROOT)
    return table


def test_numbers_are_derived_and_survive_forget() -> None:
    table = _table()
    node = table.node(AT_ROOT, b"a/b", _file(b"b"))
    assert node.ino == derived_inode(identity_of(AT_ROOT, b"a/b", node.entry)) >= FIRST_DERIVED
    table.count(node)
    table.forget(node.ino, 1)
    assert table.get(node.ino) is None and len(table) == 1
    assert table.node(AT_ROOT, b"a/b", _file(b"b")).ino == node.ino


def test_hard_links_share_a_node_per_view() -> None:
    table = _table()
    a = table.node(AT_ROOT, b"x/a", _file(b"a", 77))
    b = table.node(AT_ROOT, b"y/b", _file(b"b", 77))
    other = table.node(UNDER_SNAPSHOTS, b"x/a", _file(b"a", 77))
    plain = table.node(AT_ROOT, b"x/a2", _file(b"a2"))
    assert a is b and a.path == b"x/a"
    assert other.ino not in (a.ino, plain.ino)
    directory = TreeEntry(b"d", stat.S_IFDIR | 0o755, link_group=77)  # never by group
    assert table.node(AT_ROOT, b"d", directory).ino != a.ino


def test_collisions_get_another_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inodes, "derived_inode", lambda identity: 1234)
    table = _table()
    first = table.node(AT_ROOT, b"one", _file(b"one"))
    second = table.node(AT_ROOT, b"two", _file(b"two"))
    assert first.ino == 1234 and second.ino not in (1234, ROOT_INODE)
    assert table.get(second.ino) is second
    table.count(first)
    table.count(second)
    table.forget(first.ino, 1)
    assert table.get(second.ino) is second  # the survivor keeps its number
    assert table.node(AT_ROOT, b"two", _file(b"two")) is second


def test_memory_follows_the_kernel_references() -> None:
    table = _table()
    nodes = [table.node(AT_ROOT, b"f%d" % i, _file(b"f%d" % i)) for i in range(5000)]
    for node in nodes:
        table.count(node)
        table.count(node)
    assert len(table) == 5001
    uncounted = table.node(AT_ROOT, b"listed-not-taken", _file(b"n"))
    table.release_unused(uncounted)  # readdir_reply said no: the node goes at once
    for node in nodes:
        table.forget(node.ino, 1)
    assert len(table) == 5001
    for node in nodes:
        table.forget(node.ino, 1)
    table.forget(ROOT_INODE, 1)  # the kernel never forgets the root; pinned nodes stay anyway
    table.forget(987654321, 1)  # unknown numbers are ignored
    assert [n.ino for n in table] == [ROOT_INODE]
