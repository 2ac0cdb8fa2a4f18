"""Tree, list and snapshot objects: round trips, odd names, corruption detected."""

from __future__ import annotations

import stat

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockstore.backend import IntegrityError
from blockstore.volume.encoding import CorruptObjectError
from blockstore.volume.objects import (
    BLOCK_RECORD,
    Content,
    TreeEntry,
    decode_list,
    decode_tree,
    encode_list,
    encode_tree,
)
from blockstore.volume.snapshots import (
    Snapshot,
    decode_snapshot,
    encode_snapshot,
    is_snapshot_id,
    new_snapshot_id,
    snapshot_time_ns,
)

ODD = [b"\n", b"new\nline", b"\xff\xfe\x80", b"x" * 255, b"-", b" ", b"\x01\x7f"]


def full_entry(name: bytes) -> TreeEntry:
    records = np.array([(b"\x11" * 32, 5), (bytes(32), 1 << 31)], dtype=BLOCK_RECORD).tobytes()
    return TreeEntry(
        name, stat.S_IFREG | 0o4755, mtime_ns=-5, uid=1000, gid=2**40, user=b"\xffuser",
        group=b"", rdev=0, link_target=None, atime_ns=1, crtime_ns=-(2**62), link_group=2**63 - 1,
        xattrs=((b"user.a", b"\x00\xff"), (b"user.b", b"")), acl=b"\x01\x02",
        content=Content(5 + (1 << 31), 0, records, b"x" * 16, b"m" * 16),
    )  # fmt: skip


def test_tree_round_trip_every_field_and_odd_names() -> None:
    entries = sorted([full_entry(name) for name in ODD], key=lambda e: e.name)
    entries.append(TreeEntry(b"\xff\xff", stat.S_IFDIR | 0o700, subtree=b"\x22" * 32))
    entries.append(TreeEntry(b"\xff\xff\xff", stat.S_IFLNK | 0o777, link_target=b"../\n\xff"))
    entries.append(TreeEntry(b"\xff\xff\xff\xff", stat.S_IFCHR | 0o600, rdev=(8 << 8) | 1))
    assert decode_tree(encode_tree(entries), "trees/x") == entries


names = st.binary(min_size=1, max_size=255).filter(lambda n: b"/" not in n and b"\0" not in n)


@settings(max_examples=50, deadline=None)
@given(st.lists(names, unique=True, max_size=30), st.integers(-(2**63), 2**63 - 1))
def test_tree_round_trip_property(entry_names: list[bytes], mtime: int) -> None:
    entries = [TreeEntry(n, stat.S_IFREG | 0o644, mtime_ns=mtime, content=Content(0))
               for n in sorted(entry_names)]
    assert decode_tree(encode_tree(entries), "trees/p") == entries


def test_empty_tree_and_plain_entry_are_small() -> None:
    assert len(encode_tree([])) == 3
    assert len(encode_tree([TreeEntry(b"a", stat.S_IFDIR | 0o755)])) < 10


@pytest.mark.parametrize("cut", [2, 5, 20, -1])
def test_truncated_tree_is_an_integrity_error(cut: int) -> None:
    data = encode_tree([full_entry(b"a"), full_entry(b"b")])
    with pytest.raises(IntegrityError, match="trees/t: corrupt"):
        decode_tree(data[:cut], "trees/t")


def test_unsorted_duplicate_and_bad_names_are_refused() -> None:
    a, b = full_entry(b"a"), full_entry(b"b")
    with pytest.raises(CorruptObjectError, match="not sorted"):
        decode_tree(encode_tree([b, a]), "trees/u")
    with pytest.raises(CorruptObjectError, match="not sorted"):
        decode_tree(encode_tree([a, a]), "trees/u")
    with pytest.raises(CorruptObjectError, match="invalid entry name"):
        decode_tree(encode_tree([full_entry(b"a/b")]), "trees/u")
    with pytest.raises(CorruptObjectError, match="not a 'T'"):
        decode_tree(encode_list(0, b""), "trees/u")
    with pytest.raises(CorruptObjectError, match="version"):
        decode_tree(b"T\x09\x00", "trees/u")


def test_list_object_round_trip() -> None:
    records = np.array([(b"\x33" * 32, 7)], dtype=BLOCK_RECORD).tobytes()
    assert decode_list(encode_list(0, records), "trees/l") == (0, records)
    with pytest.raises(CorruptObjectError, match="whole number"):
        decode_list(encode_list(0, records[:-1]), "trees/l")


def test_snapshot_round_trip_and_ids() -> None:
    root = TreeEntry(b"", stat.S_IFDIR | 0o755, mtime_ns=9, subtree=b"\x44" * 32, user=b"root")
    snap = Snapshot("20240101T000000.000001Z-0badf00d", root, 1_700_000_000_000_000_001,
                    "host\xe9", "20231231T235959.999999Z-00000000", {"files": 3, "req_puts": 7})
    assert decode_snapshot(snap.id, encode_snapshot(snap)) == snap
    ids = [new_snapshot_id(t) for t in (1_700_000_000_000_000_000, 1_700_000_000_000_001_000)]
    assert all(is_snapshot_id(i) for i in ids) and ids == sorted(ids)
    assert [snapshot_time_ns(i) for i in ids] == [1_700_000_000_000_000_000,
                                                  1_700_000_000_000_001_000]
    assert not is_snapshot_id("../etc")
