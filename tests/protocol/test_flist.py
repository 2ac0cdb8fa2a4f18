"""File-list entries: captured bytes, round trips over protocols 27-32, and rsync's order."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.errors import RemoteProtocolError
from rsyncd_py.protocol.flist import (
    FLAG_CONTENT_DIR,
    FLAG_TOP_DIR,
    FileEntry,
    FlistDecoder,
    FlistEncoder,
    FlistOptions,
    ListEnd,
    clean_fname,
)
from rsyncd_py.protocol.flist_sort import sort_and_clean, sort_key
from rsyncd_py.protocol.idlist import pack_id_list, read_id_list
from rsyncd_py.protocol.ints import read_item

P32 = FlistOptions(
    protocol=32,
    varint_flags=True,
    safe_flist=True,
    preserve_uid=True,
    preserve_gid=True,
    preserve_links=True,
    preserve_devices=True,
    preserve_specials=True,
)


def decode_all(
    data: bytes, options: FlistOptions, *, bytewise: bool = False
) -> tuple[list, ListEnd]:
    decoder = FlistDecoder(options)
    buf = ReceiveBuffer()
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    result = None
    for chunk in chunks:
        buf.extend(chunk)
        while (item := read_item(buf, decoder.read)) is not None:
            if isinstance(item, ListEnd):
                result = item
                break
    assert result is not None
    return decoder.entries, result


def test_captured_top_dir_entry_protocol_32():
    # rsync-protocol.md A.8: the "." entry of a 3.5.0 push, then the list end
    wire = bytes.fromhex("a001012e0000106b24750bf0b5ff911bed410000000000") + b"\x00\x00"
    entries, end = decode_all(wire, P32, bytewise=True)
    (top,) = entries
    assert top.name == b"."
    assert top.mode == stat.S_IFDIR | 0o755
    assert top.size == 4096
    assert (top.uid, top.gid) == (0, 0)
    assert top.flags & FLAG_TOP_DIR and top.flags & FLAG_CONTENT_DIR
    assert end.io_error == 0


def test_captured_top_dir_entry_protocol_29():
    options = FlistOptions(protocol=29, preserve_uid=True, preserve_gid=True)
    wire = bytes.fromhex("01012e00100000" + "5f5e1000" + "ed410000" + "00000000" * 2) + b"\x00"
    entries, _ = decode_all(wire, options, bytewise=True)
    assert entries[0].name == b"." and entries[0].size == 4096
    assert entries[0].mtime == 0x00105E5F or entries[0].mtime > 0


entry_names = st.lists(
    st.binary(min_size=1, max_size=20).filter(lambda b: b"/" not in b and b not in (b".", b"..")),
    min_size=1,
    max_size=4,
).map(b"/".join)


@st.composite
def entries(draw, protocol: int):
    kind = draw(
        st.sampled_from([stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFIFO])
    )
    entry = FileEntry(
        name=draw(entry_names),
        mode=kind | draw(st.integers(0, 0o7777)),
        size=draw(st.integers(0, 2**40)) if kind == stat.S_IFREG else 0,
        mtime=draw(st.integers(0 if protocol < 30 else -(2**40), 2**31 - 1)),
        mtime_nsec=draw(st.integers(0, 999_999_999)) if protocol >= 31 else 0,
        uid=draw(st.integers(0, 2**31 - 1)),
        gid=draw(st.integers(0, 2**31 - 1)),
    )
    if kind == stat.S_IFLNK:
        entry.link_target = draw(st.binary(min_size=1, max_size=50))
    if kind == stat.S_IFCHR:
        entry.rdev_major = draw(st.integers(0, 4095))
        entry.rdev_minor = draw(st.integers(0, 255 if protocol < 28 else 2**20))
    if kind == stat.S_IFDIR:
        entry.flags = FLAG_CONTENT_DIR
    return entry


@pytest.mark.parametrize("protocol", [27, 28, 29, 30, 31, 32])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip(protocol, data):
    options = FlistOptions(
        protocol=protocol,
        varint_flags=protocol >= 32 and data.draw(st.booleans()),
        safe_flist=protocol >= 31,
        preserve_uid=True,
        preserve_gid=True,
        preserve_links=True,
        preserve_devices=True,
        preserve_specials=True,
        checksum_len=data.draw(st.sampled_from([0, 16])),
    )
    sent = data.draw(st.lists(entries(protocol), min_size=1, max_size=8))
    for entry in sent:
        if options.checksum_len and entry.is_file():
            entry.checksum = os.urandom(16)
    encoder = FlistEncoder(options)
    wire = b"".join(encoder.encode(e) for e in sent) + encoder.end()
    received, _ = decode_all(wire, options)
    for a, b in zip(sent, received, strict=True):
        assert (b.name, b.mode, b.size, b.mtime, b.mtime_nsec) == (
            a.name,
            a.mode,
            a.size,
            a.mtime,
            a.mtime_nsec,
        )
        assert (b.uid, b.gid, b.link_target, b.checksum) == (
            a.uid,
            a.gid,
            a.link_target,
            a.checksum,
        )
        if stat.S_ISCHR(a.mode):
            assert b.rdev == a.rdev


def test_io_error_in_end_marker():
    encoder = FlistEncoder(P32)
    _, end = decode_all(encoder.end(io_error=1), P32)
    assert end.io_error == 1
    old = FlistOptions(protocol=30, safe_flist=True)
    _, end = decode_all(FlistEncoder(old).end(io_error=2), old)
    assert end.io_error == 2


@pytest.mark.parametrize("name", [b"../etc/passwd", b"a/../../b", b"/abs"])
def test_unsafe_names_are_refused(name):
    entry = FileEntry(name=name, mode=stat.S_IFREG | 0o644)
    wire = FlistEncoder(P32).encode(entry)
    with pytest.raises(RemoteProtocolError, match="unsafe pathname") as info:
        decode_all(wire + b"\0\0", P32)
    assert info.value.exit_code == 4


def test_a_name_reusing_more_than_the_previous_one_waits_for_its_bytes():
    """rsync reads an entry's name before checking l1 against the previous name: cut
    short, the stream is only incomplete (an EOF then is code 12, not a protocol error)."""
    # flags XMIT_SAME_UID|GID|SAME_NAME|LONG_NAME, l1 = 120, l2 = 120, 100 name bytes
    head = bytes([0x78, 120, 120]) + b"x" * 100
    buf = ReceiveBuffer(head)
    assert read_item(buf, FlistDecoder(P32).read) is None
    assert len(buf) == len(head)  # nothing consumed
    buf.extend(b"x" * 20)
    with pytest.raises(RemoteProtocolError, match="overflow: xflags=0x78 l1=120 l2=120"):
        read_item(buf, FlistDecoder(P32).read)


def test_clean_fname():
    assert clean_fname(b"a//b/./c") == b"a/b/c"
    assert clean_fname(b"./a") == b"a"
    assert clean_fname(b"a/.") == b"a/."
    assert clean_fname(b"a/../b") is None


def test_invalid_mode_is_a_protocol_error():
    wire = FlistEncoder(P32).encode(FileEntry(name=b"x", mode=0o170644))
    with pytest.raises(RemoteProtocolError, match="invalid file mode"):
        decode_all(wire + b"\0\0", P32)


@pytest.mark.parametrize("id0", [False, True])
def test_id_list_round_trip_with_id0_names(id0):
    names = [(0, b"root"), (1000, b"alice"), (33, b"www-data")]
    wire = pack_id_list(names, 30, id0_names=id0)
    got = read_item(ReceiveBuffer(wire), lambda c: read_id_list(c, 30, id0_names=id0))
    expect = {1000: b"alice", 33: b"www-data"} | ({0: b"root"} if id0 else {})
    assert got == expect


def test_duplicates_keep_the_directory_and_their_index():
    entries_in = [
        FileEntry(name=b"x", mode=stat.S_IFREG | 0o644),
        FileEntry(name=b"x", mode=stat.S_IFDIR | 0o755),
        FileEntry(name=b"y", mode=stat.S_IFREG | 0o644),
        FileEntry(name=b"y", mode=stat.S_IFREG | 0o600),
    ]
    out = sort_and_clean(entries_in, 32)
    assert [(e.name, e.is_dir(), e.active) for e in out] == [
        (b"x", False, False),
        (b"y", False, True),
        (b"y", False, False),
        (b"x", True, True),
    ]
    assert out[1].mode & 0o777 == 0o644  # the first of two equal names wins


NAMES = [b"a", b"a.b", b"a-b", b"a b", b"ab", b"b", b"-x", b"A", b"\xff", b"Z"]


@pytest.mark.parametrize("protocol", [27, 29, 32])
def test_sort_order_matches_real_rsync(tmp_path, protocol):
    """Build names that stress f_name_cmp and let real rsync itemize them in index order."""
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(NAMES):
        path = os.path.join(os.fsencode(src), name)
        if i % 2:
            os.mkdir(path)
            with open(os.path.join(path, b"f"), "wb"):
                pass
        else:
            with open(path, "wb"):
                pass
    result = subprocess.run(
        [
            "rsync",
            "-ai8",
            "-n",
            "--no-inc-recursive",
            f"--protocol={protocol}",
            "--out-format=%n",
            f"{src}/",
            str(tmp_path / "dst"),
        ],
        capture_output=True,
        check=True,
    )
    listed = [line for line in result.stdout.split(b"\n") if line and line != b"./"]
    ours = []
    for i, name in enumerate(NAMES):
        ours.append((name, i % 2 == 1))
        if i % 2:
            ours.append((name + b"/f", False))
    ours.sort(key=lambda item: sort_key(item[0], item[1], protocol))
    expected = [name + b"/" if is_dir else name for name, is_dir in ours]
    if protocol < 29:  # an old-protocol generator itemizes transfers only
        expected = [name for name in expected if not name.endswith(b"/")]
    assert listed == expected
