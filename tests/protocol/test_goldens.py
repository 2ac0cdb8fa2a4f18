"""Decode what real rsync put on the wire (tests/data/protocol/core) with our codec."""

from __future__ import annotations

import stat

import pytest

from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import CF_INC_RECURSE, CF_VARINT_FLIST_FLAGS, NDX_DONE
from rsyncd_py.protocol.flist import FlistDecoder, FlistOptions, ListEnd
from rsyncd_py.protocol.flist_sort import sort_and_clean
from rsyncd_py.protocol.handshake import compat_flags_for
from rsyncd_py.protocol.idlist import read_id_list
from rsyncd_py.protocol.ints import read_item
from rsyncd_py.protocol.itemize import ItemRecord, read_ndx_and_attrs
from rsyncd_py.protocol.ndx import NdxDecoder
from rsyncd_py.protocol.stats import DeleteStats
from rsyncd_py.protocol.sums import read_sum_head
from tests.data.protocol.core import tree
from tests.helpers.goldens import client_body, load, split_server

CASES = {  # case -> protocol
    "push-p32": 32,
    "push-p31-itemize": 31,
    "push-p30": 30,
    "push-p29": 29,
    "push-p27": 27,
    "push-delete-p32": 32,
}


def flist_options(protocol: int) -> FlistOptions:
    return FlistOptions(
        protocol=protocol,
        varint_flags=protocol >= 30,  # the 3.2.7 client sends 'v' whatever --protocol says
        safe_flist=protocol >= 31,
        preserve_uid=True,
        preserve_gid=True,
        preserve_links=True,
        preserve_devices=True,
        preserve_specials=True,
        id0_names=protocol >= 30,
    )


def feed_bytewise(buf: ReceiveBuffer, data: bytes, decode):
    """Decode one item from `data` appended a byte at a time; return (item, rest)."""
    for i in range(len(data)):
        buf.extend(data[i : i + 1])
        item = read_item(buf, decode)
        if item is not None:
            return item, data[i + 1 :]
    raise AssertionError("item never completed")


@pytest.mark.parametrize(("case", "protocol"), CASES.items())
def test_client_file_list_decodes_to_the_tree(case, protocol):
    golden = load(case)
    body = client_body(golden.c2s, protocol=protocol, negotiated=protocol >= 30)
    if "delete" in case:
        body = body[body.index(b"\0\0\0\0") + 4 :]  # the filter list: just its terminator
    options = flist_options(protocol)
    decoder = FlistDecoder(options)
    buf = ReceiveBuffer()
    while True:  # byte by byte: every entry must wait for its last byte
        item, body = feed_bytewise(buf, body, decoder.read)
        if isinstance(item, ListEnd):
            break
    users, body = feed_bytewise(
        buf, body, lambda c: read_id_list(c, protocol, id0_names=protocol >= 30)
    )
    groups, body = feed_bytewise(
        buf, body, lambda c: read_id_list(c, protocol, id0_names=protocol >= 30)
    )
    assert users.get(0, b"root") == b"root" and groups.get(0, b"root") == b"root"
    entries = {e.name: e for e in sort_and_clean(decoder.entries, protocol)}
    for name, data in tree.FILES.items():
        entry = entries[name]
        assert entry.size == len(data)
        assert stat.S_IMODE(entry.mode) == tree.MODES[name]
        expected_nsec = tree.MTIME % 10**9 if protocol >= 31 else 0
        assert (entry.mtime, entry.mtime_nsec) == (tree.MTIME // 10**9, expected_nsec)
    assert entries[b"link"].link_target == b"a"
    assert entries[b"empty"].is_dir() and entries[b"."].is_dir()


@pytest.mark.parametrize(("case", "protocol"), CASES.items())
def test_server_stream_structure(case, protocol):
    golden = load(case)
    server = split_server(golden.s2c, protocol)
    assert server.version == 32
    if protocol >= 30:
        # real rsync sets CF_SYMLINK_ICONV (4) too; we do not build with iconv
        ours = compat_flags_for(".LsfxCIvu", symlink_times=True)
        assert server.compat_flags is not None
        assert server.compat_flags & ~4 == ours
        assert not server.compat_flags & CF_INC_RECURSE
        assert server.compat_flags & CF_VARINT_FLIST_FLAGS
    # the generator's records: transfer requests with sum heads, then the NDX_DONEs
    ndx = NdxDecoder(protocol)
    buf = ReceiveBuffer(server.data)
    dones = 0
    while len(buf):
        record = read_item(buf, lambda c: read_ndx_and_attrs(c, ndx))
        if record == NDX_DONE:
            dones += 1
        elif isinstance(record, ItemRecord) and record.iflags & 0x8000:
            head = read_item(buf, lambda c: read_sum_head(c, protocol=protocol, xfer_sum_len=16))
            assert head is not None and head.count == 0  # new files: whole-file requests
        elif isinstance(record, DeleteStats):
            assert record.files == 3 and record.dirs == 1
    # rsync-protocol.md A.12: F P1 D X G at 31+, F P1 D G at 29-30, F P1 G below 29
    assert dones == (5 if protocol >= 31 else 4 if protocol >= 29 else 3)
