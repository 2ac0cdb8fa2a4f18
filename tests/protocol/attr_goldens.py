"""Read the -X/-A goldens in tests/data/protocol/xattrs_acls (see make_captures.py there).

`load(case)` demultiplexes both directions of a capture and says which side sent the
file list. `decode_flist` walks the list with the ACL and xattr codecs and keeps, per
entry, the exact bytes its ACLs and xattrs took, so tests can compare our encoders with
the real sender byte for byte. `sender_records` and `generator_records` walk the
transfer phase that follows (non-incremental lists only): the item records, the xattr
requests after the generator's records and the answers after the sender's echoes.
"""

from __future__ import annotations

import grp
import importlib.util
import pwd
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from rsyncd_py.protocol.acls import AclReceiver, AclSender
from rsyncd_py.protocol.buffer import ReceiveBuffer
from rsyncd_py.protocol.constants import ITEM_TRANSFER, NDX_DONE
from rsyncd_py.protocol.flist import (
    FileEntry,
    FlistDecoder,
    FlistEncoder,
    FlistOptions,
    ListEnd,
)
from rsyncd_py.protocol.flist_sort import sort_and_clean
from rsyncd_py.protocol.idlist import read_id_list
from rsyncd_py.protocol.ints import read_item
from rsyncd_py.protocol.itemize import ItemRecord, read_ndx_and_attrs
from rsyncd_py.protocol.ndx import NdxDecoder
from rsyncd_py.protocol.sums import read_sum_head
from rsyncd_py.protocol.tokens import END, SimpleTokenDecoder
from rsyncd_py.protocol.xattrs import XattrReceiver, XattrSender, request_follows
from tests.protocol.captures import parse_mux

GOLDENS = Path(__file__).resolve().parents[1] / "data" / "protocol" / "xattrs_acls"
SUM_LEN = 16  # every capture negotiated xxh128 (protocol 30: md5); both are 16 bytes


def trees() -> ModuleType:
    """make_captures.py itself: its XATTR_TREE, ACL_TREE... are what the goldens hold."""
    spec = importlib.util.spec_from_file_location("make_captures", GOLDENS / "make_captures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Case:
    name: str
    protocol: int
    pull: bool
    inc_recurse: bool
    xattrs: bool
    acls: bool
    sender_data: bytes  # what the side sending the file list wrote (demultiplexed)
    generator_data: bytes  # what the receiving side's generator wrote
    itemized: list[str]  # the client's -i output lines


def load(case: str) -> Case:
    argv = shlex.split((GOLDENS / f"{case}.cmd").read_text())
    short = next(a for a in argv if a.startswith("-l"))
    client_info = short.split("e.", 1)[1]
    protocol = int(case.rsplit("-p", 1)[1])
    pull = "--sender" in argv
    c2s = parse_mux((GOLDENS / f"{case}.c2s").read_bytes()).data
    s2c = parse_mux((GOLDENS / f"{case}.s2c").read_bytes()).data
    if pull:
        c2s = c2s[4:]  # the client's empty filter list (int 0) comes first
    return Case(
        name=case,
        protocol=protocol,
        pull=pull,
        inc_recurse="i" in client_info,
        xattrs="X" in short,
        acls="A" in short,
        sender_data=s2c if pull else c2s,
        generator_data=c2s if pull else s2c,
        itemized=(GOLDENS / f"{case}.out").read_text().splitlines(),
    )


@dataclass
class Decoded:
    entry: FileEntry

    @property
    def acl(self) -> tuple[int, int | None] | None:
        """(access index, default index), or None for an entry without ACLs."""
        if self.entry.acl_ndx is None:
            return None
        return self.entry.acl_ndx, self.entry.def_acl_ndx

    @property
    def xattr(self) -> int | None:
        return self.entry.xattr_ndx


@dataclass
class DecodedList:
    entries: list[Decoded]
    acls: AclReceiver
    xattrs: XattrReceiver
    list_bytes: bytes  # the list itself, up to and including its end marker
    rest: bytes  # the sender's data after the list (and its id lists)
    by_name: dict[bytes, Decoded] = field(default_factory=dict)


def flist_options(case: Case) -> FlistOptions:
    return FlistOptions(
        protocol=case.protocol,
        varint_flags=True,
        safe_flist=True,
        preserve_uid=True,
        preserve_gid=True,
        preserve_links=True,
        preserve_devices=True,
        preserve_specials=True,
        preserve_acls=case.acls,
        preserve_xattrs=int(case.xattrs),
        id0_names=True,
        inc_recurse=case.inc_recurse,
    )


def decode_flist(case: Case, *, feed: int = 0) -> DecodedList:
    """Decode the (first) file list, ACLs and xattrs included (FlistDecoder).

    With `feed` > 0 the data arrives `feed` bytes at a time and every read that comes up
    short must leave the buffer and both caches untouched.
    """
    decoder = FlistDecoder(flist_options(case))
    acls = decoder.acls or AclReceiver()
    xattrs = decoder.xattrs or XattrReceiver()
    data = case.sender_data
    buf = ReceiveBuffer(b"" if feed else data)
    fed = 0 if feed else len(data)
    entries: list[Decoded] = []
    while True:
        before = (len(buf), len(acls.access), len(acls.default), len(xattrs.sets))
        item = read_item(buf, decoder.read)
        if item is None:
            assert before == (len(buf), len(acls.access), len(acls.default), len(xattrs.sets))
            assert fed < len(data), "the list never ended"
            buf.extend(data[fed : fed + feed])
            fed += feed
            continue
        if isinstance(item, ListEnd):
            break
        entries.append(Decoded(item))
    buf.extend(data[fed:])
    list_bytes = data[: len(data) - len(buf)]
    if not case.inc_recurse:
        for _ in range(2):  # uid and gid name lists
            ids = read_item(buf, lambda cur: read_id_list(cur, case.protocol, id0_names=True))
            assert ids is not None
    result = DecodedList(entries, acls, xattrs, list_bytes, buf.take_all())
    result.by_name = {d.entry.name: d for d in entries}
    return result


def encode_flist(case: Case, decoded: DecodedList, attrs: Callable[[Decoded], dict]) -> bytes:
    """The decoded list written again by FlistEncoder, with `attrs(d)` as the keyword
    arguments (acl=, xattrs=) of each entry; our sender's version of the list."""
    encoder = FlistEncoder(flist_options(case), acls=acl_sender_for(case))
    out = b"".join(encoder.encode(d.entry, **attrs(d)) for d in decoded.entries)
    return out + encoder.end()


def mirror_sender(decoded: DecodedList) -> XattrSender:
    """An XattrSender holding the decoded sets in order (for reading requests)."""
    sender = XattrSender()
    for d in decoded.entries:
        if d.xattr is not None and d.xattr == len(sender.sets):
            sender.sets.append(decoded.xattrs.sets[d.xattr])
    return sender


def sorted_entries(decoded: DecodedList, protocol: int) -> list[Decoded]:
    """The entries in index order (what item records refer to)."""
    order = sort_and_clean([d.entry for d in decoded.entries], protocol)
    by_id = {id(d.entry): d for d in decoded.entries}
    return [by_id[id(entry)] for entry in order]


def generator_records(
    case: Case, sender: XattrSender, index: list[Decoded]
) -> list[tuple[ItemRecord, tuple[int, ...] | None, bytes]]:
    """The generator's item records up to its first NDX_DONE.

    Each comes with the xattr request numbers after it (None if no request followed),
    read as the sender reads them, and the raw request bytes.
    """
    buf = ReceiveBuffer(case.generator_data)
    ndx = NdxDecoder(case.protocol)
    out = []
    while True:
        record = read_item(buf, lambda cur: read_ndx_and_attrs(cur, ndx))
        assert record is not None
        if record == NDX_DONE:
            return out
        assert isinstance(record, ItemRecord)
        nums, raw = None, b""
        if case.xattrs and request_follows(record.iflags, want_optim=False):
            xattr_ndx = index[record.ndx].xattr
            assert xattr_ndx is not None
            start = len(case.generator_data) - len(buf)
            nums = read_item(buf, lambda cur, at=xattr_ndx: sender.read_request(cur, at, b""))
            raw = case.generator_data[start : len(case.generator_data) - len(buf)]
        if record.iflags & ITEM_TRANSFER:
            head = read_item(
                buf, lambda cur: read_sum_head(cur, protocol=case.protocol, xfer_sum_len=SUM_LEN)
            )
            assert head is not None
            assert buf.take(head.count * (4 + head.s2length)) is not None
        out.append((record, nums, raw))


def sender_records(
    case: Case, decoded: DecodedList, index: list[Decoded]
) -> list[tuple[ItemRecord, int]]:
    """The sender's echoed records up to its first NDX_DONE, reading every xattr answer
    into the decoded list's XattrReceiver and skipping file data; returns (record,
    values answered)."""
    buf = ReceiveBuffer(decoded.rest)
    ndx = NdxDecoder(case.protocol)
    out = []
    while True:
        record = read_item(buf, lambda cur: read_ndx_and_attrs(cur, ndx))
        assert record is not None
        if record == NDX_DONE:
            return out
        assert isinstance(record, ItemRecord)
        answered = 0
        if case.xattrs and request_follows(record.iflags, want_optim=False):
            item = index[record.ndx]
            reader = decoded.xattrs.answer_reader(item.xattr, item.entry.name)
            while not read_item(buf, reader.read):
                answered += 1
        if record.iflags & ITEM_TRANSFER:
            head = read_item(
                buf, lambda cur: read_sum_head(cur, protocol=case.protocol, xfer_sum_len=SUM_LEN)
            )
            assert head is not None
            tokens = SimpleTokenDecoder()
            while tokens.next_token(buf) is not END:
                pass
            assert buf.take(SUM_LEN) is not None
        out.append((record, answered))


def acl_sender_for(case: Case) -> AclSender:
    """An AclSender that names ids inline as rsync's add_uid/add_gid would (incr lists)."""
    seen: set[tuple[bool, int]] = set()

    def add_name(is_user: bool, ident: int) -> bytes | None:
        if not case.inc_recurse or (is_user, ident) in seen:
            return None
        seen.add((is_user, ident))
        try:
            name = pwd.getpwuid(ident).pw_name if is_user else grp.getgrgid(ident).gr_name
        except KeyError:
            return None
        return name.encode()

    return AclSender(add_name=add_name)
