"""rsync's extended-attribute wire formats (xattrs.c), with the per-session state they need.

Theory of operation
-------------------
With -X every file-list entry carries its xattrs (after its ACLs). An entry either
names a set already sent in this session -- `varint ndx+1`, an index into a list both
sides grow in step -- or sends `varint 0` and the set itself: `varint count`, then per
item `varint name_len` (counting a trailing NUL), `varint datum_len`, the name with its
NUL, and the value. A value longer than MAX_FULL_DATUM (32) bytes is *abbreviated*:
only its MD5 digest travels in the list (send_xattr/receive_xattr).

The receiving side fetches the abbreviated values it lacks later, around the item
records of the transfer phase:
- its generator compares each entry's set with what the file has (xattr_diff); for
  every abbreviated value that differs and that it has not asked for before it writes
  `varint num - prior_num` after the entry's item record, then a 0 byte
  (send_xattr_request). `num` is the item's 1-based position in the set as sent;
- the sender reads that list after the record (recv_xattr_request) and, after echoing
  the record, answers `varint num - prior_num`, `varint length`, the value, for each,
  then a 0 byte (send_xattr_request with a file name);
- the receiver reads the answer after the echoed record (recv_xattr_request) and uses
  the values when it sets the file's xattrs (rsync_xal_set).
Whether a request and its answer follow a record at all is `request_follows`.

State, one object per side and direction of a session:
  `XattrSender`   the sets sent so far (long values only as digests: an answer reads
                  the file's value again, as rsync does, so memory holds no values),
                  a dict finding a set already sent, and the (ndx, num) already
                  answered -- a real generator never asks twice, and a real sender
                  refuses a second request ("internal abbrev error").
  `XattrReceiver` the sets received (abbreviated items hold only their digest); the
                  generator's mark on each abbreviated (ndx, num) it has dealt with
                  (rsync's XSTATE_DONE: asked for, or found equal on a file whose record
                  went out), which it never asks for again; and the abbreviated values
                  learned, by (length, digest): from the sender's answers, or from a
                  local file whose value has that digest. Values are looked up by
                  content, so one answer serves every set that holds the same value;
                  what is asked for follows rsync's generator to the byte.
Readers are transactional (ints.py): each change is registered with `on_commit`.

Namespaces (Linux, HAVE_LINUX_XATTRS): a sender sends every name but system.* (the
kernel's ACLs and capabilities; ACLs travel with -A); a receiver that is not root keeps
only user.*; `user.rsync.%*` names (rsync's fake-super records) are dropped unless -XX.
Fake-super itself (renaming other namespaces into user.rsync.*) is not implemented.
Unlike rsync, a root receiver also drops system.* names, which no rsync sender sends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rsyncd_py.protocol.constants import (
    ITEM_LOCAL_CHANGE,
    ITEM_REPORT_XATTR,
    ITEM_XNAME_FOLLOWS,
)
from rsyncd_py.protocol.errors import ExitCode, RemoteProtocolError
from rsyncd_py.protocol.ints import Cursor, pack_byte, pack_varint

MAX_FULL_DATUM = 32  # longer values are abbreviated to their digest in the file list
XATTR_SUM_LEN = 16  # MD5 (xattr_sum_nni is md5 at protocol 30+, unseeded)
MAX_XATTR_COUNT = 65536  # rsync 3.5 MAX_WIRE_XATTR_COUNT
MAX_XATTR_NAME_LEN = 4096  # rsync 3.5 MAX_WIRE_XATTR_NAMELEN (with the NUL)
# Our own bounds (rsync 3.5 allows 128 MiB per value, 512 MiB per list): one value, and
# one entry's names plus inline values, are read as one item, which the Wire must hold
# whole (wire.HIGH_WATER is 8 MiB). Linux caps a value at 64 KiB (XATTR_SIZE_MAX).
MAX_XATTR_VALUE_LEN = 4 << 20
MAX_XATTR_LIST_BYTES = 4 << 20

USER_PREFIX = b"user."
SYSTEM_PREFIX = b"system."
RSYNC_PREFIX = b"user.rsync."  # Linux: rsync's own records live in the user namespace

Pairs = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class XattrItem:
    """One xattr of a set: `value` is None while only its digest is known."""

    name: bytes  # without the wire's trailing NUL
    length: int  # the value's length (datum_len)
    value: bytes | None
    digest: bytes | None = None  # MD5 of the value, for values longer than MAX_FULL_DATUM
    num: int = 0  # 1-based position in the set as sent (what requests refer to)

    @property
    def abbreviated(self) -> bool:
        return self.length > MAX_FULL_DATUM

    @property
    def key(self) -> tuple[int, bytes]:
        """What identifies the value: (length, digest) if abbreviated, else the value."""
        if self.abbreviated:
            return self.length, self.digest or b""
        return self.length, self.value or b""


XattrSet = tuple[XattrItem, ...]


def xattr_digest(value: bytes) -> bytes:
    """The digest an abbreviated value travels as (sum_init(md5) over the value)."""
    return hashlib.md5(value).digest()


def make_xattr_set(pairs: Iterable[tuple[bytes, bytes]]) -> XattrSet:
    """rsync_xal_get's list for (name, value) pairs: sorted by name, numbered, digested."""
    items = []
    for num, (name, value) in enumerate(sorted(pairs), 1):
        digest = xattr_digest(value) if len(value) > MAX_FULL_DATUM else None
        items.append(XattrItem(name, len(value), value, digest, num))
    return tuple(items)


def _set_key(items: XattrSet) -> tuple[tuple[bytes, int, bytes], ...]:
    """find_matching_xattr's notion of "the same set": names, lengths, values or digests."""
    return tuple((item.name, *item.key) for item in items)


# --- namespaces ----------------------------------------------------------------------


def _is_rsync_record(name: bytes) -> bool:
    return name.startswith(RSYNC_PREFIX) and name[len(RSYNC_PREFIX) : len(RSYNC_PREFIX) + 1] == b"%"


def sender_keeps(name: bytes, *, level: int) -> bool:
    """rsync_xal_get on a sender: every name but system.*, rsync records only with -XX."""
    if name.startswith(SYSTEM_PREFIX):
        return False
    return level >= 2 or not _is_rsync_record(name)


def receiver_keeps(name: bytes, *, am_root: bool, level: int) -> bool:
    """receive_xattr's filter: non-root keeps user.* only; rsync records only with -XX."""
    if name.startswith(SYSTEM_PREFIX) or (not am_root and not name.startswith(USER_PREFIX)):
        return False
    return level >= 2 or not _is_rsync_record(name)


def local_xattrs(pairs: Pairs, *, am_root: bool) -> tuple[tuple[bytes, bytes], ...]:
    """rsync_xal_get on the receiving side: what a file's xattrs are compared as.

    Root sees every namespace but system.*, anyone else only user.*.
    """
    if am_root:
        return tuple(p for p in pairs if not p[0].startswith(SYSTEM_PREFIX))
    return tuple(p for p in pairs if p[0].startswith(USER_PREFIX))


def request_follows(iflags: int, *, want_optim: bool) -> bool:
    """Whether an item record with `iflags` carries an xattr request and answer.

    generator.c itemize / sender.c / receiver.c: with -X, when transferring
    (do_xfers), for ITEM_REPORT_XATTR, unless want_xattr_optim (protocol 31+ without
    CF_AVOID_XATTR_OPTIM) and the record is a local change with an xname (a hard link).
    """
    if not iflags & ITEM_REPORT_XATTR:
        return False
    both = ITEM_XNAME_FOLLOWS | ITEM_LOCAL_CHANGE
    return not (want_optim and iflags & both == both)


# --- the sending side ------------------------------------------------------------------


class XattrSender:
    """xattrs.c for the side that sends the file list (see the module docstring)."""

    def __init__(self) -> None:
        self.sets: list[XattrSet] = []
        self._index: dict[tuple[tuple[bytes, int, bytes], ...], int] = {}
        self._answered: set[tuple[int, int]] = set()

    def encode(self, pairs: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, int]:
        """xattrs.c send_xattr: the bytes for one entry's xattrs, and the set's index."""
        items = make_xattr_set(pairs)
        key = _set_key(items)
        ndx = self._index.get(key)
        if ndx is not None:
            return pack_varint(ndx + 1), ndx
        out = [pack_varint(0), pack_varint(len(items))]
        for item in items:
            out.append(pack_varint(len(item.name) + 1) + pack_varint(item.length))
            out.append(item.name + b"\0")
            out.append(item.digest if item.abbreviated else item.value)  # type: ignore[arg-type]
        ndx = len(self.sets)
        # like rsync, keep only the digests of long values: an answer reads them again
        self.sets.append(tuple(_without_long_value(item) for item in items))
        self._index[key] = ndx
        return b"".join(out), ndx

    def read_request(self, cur: Cursor, ndx: int, fname: bytes) -> tuple[int, ...]:
        """xattrs.c recv_xattr_request on the sender: the item numbers asked for."""
        items = self._items(ndx)
        nums: list[int] = []
        num = 0
        while rel := cur.varint():
            num += rel
            item = _find(items, num, fname, "sender")
            if not item.abbreviated or (ndx, num) in self._answered or num in nums:
                raise _abbrev_error(item, fname, "sender")
            nums.append(num)
        return tuple(nums)

    def pack_answer(
        self, ndx: int, nums: Sequence[int], current: Mapping[bytes, bytes]
    ) -> tuple[bytes, tuple[bytes, ...]]:
        """xattrs.c send_xattr_request on the sender: the values asked for, then 0.

        `current` is the file's xattrs as they are now (rsync re-reads each value, whose
        length may have changed). Returns the bytes and the names no longer there,
        which are answered as empty values ("failed to re-read xattr").
        """
        items = self._items(ndx)
        out = []
        gone: list[bytes] = []
        prior = 0
        for num in nums:
            name = items[num - 1].name
            value = current.get(name)
            if value is None:
                gone.append(name)
                value = b""
            out.append(pack_varint(num - prior) + pack_varint(len(value)) + value)
            prior = num
            self._answered.add((ndx, num))
        out.append(pack_byte(0))
        return b"".join(out), tuple(gone)

    def _items(self, ndx: int) -> XattrSet:
        if not 0 <= ndx < len(self.sets):
            raise RemoteProtocolError("recv_xattr_request: internal data error!")
        return self.sets[ndx]


# --- the receiving side ------------------------------------------------------------------


class XattrReceiver:
    """xattrs.c for the side that receives the file list (see the module docstring)."""

    def __init__(self, *, am_root: bool = True, level: int = 1) -> None:
        self.am_root = am_root
        self.level = level
        self.sets: list[XattrSet] = []
        self._learned: dict[tuple[int, bytes], bytes] = {}
        self._done: set[tuple[int, int]] = set()

    def read(self, cur: Cursor, fname: bytes = b"") -> int:
        """xattrs.c receive_xattr: one entry's xattrs; returns the index of its set."""
        sets = self.sets
        ndx = cur.varint()
        if ndx < 0 or ndx > len(sets):
            raise RemoteProtocolError(
                f"receive_xattr: xa index {ndx} out of range for {_text(fname)}",
                ExitCode.RERR_STREAMIO,
            )
        if ndx:
            return ndx - 1
        count = cur.varint()
        if not 0 <= count <= MAX_XATTR_COUNT:
            raise _out_of_range("xattr count", count, MAX_XATTR_COUNT)
        items: list[XattrItem] = []
        total = 0
        for num in range(1, count + 1):
            name_len = _size(cur.varint(), MAX_XATTR_NAME_LEN, "xattr name_len")
            datum_len = _size(cur.varint(), 0x7FFFFFFF, "xattr datum_len")
            if datum_len > MAX_XATTR_VALUE_LEN:
                raise RemoteProtocolError("xattr datum_len exceeds per-value limit [receiver]")
            total += name_len + (XATTR_SUM_LEN if datum_len > MAX_FULL_DATUM else datum_len)
            if total > MAX_XATTR_LIST_BYTES:
                raise RemoteProtocolError("xattr list exceeds per-file limit [receiver]")
            raw_name = cur.take(name_len)
            if not raw_name.endswith(b"\0"):
                raise RemoteProtocolError(
                    "Invalid xattr name received (missing trailing \\0).", ExitCode.RERR_FILEIO
                )
            name = raw_name[:-1]
            if datum_len > MAX_FULL_DATUM:
                item = XattrItem(name, datum_len, None, cur.take(XATTR_SUM_LEN), num)
            else:
                item = XattrItem(name, datum_len, cur.take(datum_len), None, num)
            if receiver_keeps(name, am_root=self.am_root, level=self.level):
                items.append(item)
        new_ndx = len(sets)
        received = tuple(items)
        cur.on_commit(lambda: sets.append(received))
        return new_ndx

    def xattr_set(self, ndx: int | None) -> XattrSet:
        """The set at `ndx` (None: an entry without one, which compares as empty)."""
        return () if ndx is None else self.sets[ndx]

    def diff(self, ndx: int | None, local: Pairs | None) -> tuple[bool, tuple[int, ...]]:
        """xattrs.c xattr_diff with find_all: (differs, numbers of values to request).

        `local` is the file's xattrs as `local_xattrs` filters them, sorted by name (None
        for a new file). An abbreviated value equal to the local one (same length and
        digest) is learned; one that differs is wanted unless the generator dealt with
        that item before (a real sender answers each item once).
        """
        items = self.xattr_set(ndx)
        have = dict(local or ())
        differs = len(items) != len(have)
        wanted: list[int] = []
        for item in items:
            value = have.get(item.name)
            if item.abbreviated:
                same = (
                    value is not None
                    and len(value) == item.length
                    and xattr_digest(value) == item.digest
                )
                if same:
                    self._learned.setdefault(item.key, value)  # type: ignore[arg-type]
                elif ndx is not None and (ndx, item.num) not in self._done:
                    wanted.append(item.num)
            else:
                same = value == item.value
            differs = differs or not same
        return differs, tuple(wanted)

    def pack_request(self, ndx: int | None, nums: Sequence[int]) -> bytes:
        """xattrs.c send_xattr_request from the generator: the numbers, then 0.

        Call it wherever rsync's generator calls send_xattr_request (a record with
        ITEM_REPORT_XATTR or ITEM_TRANSFER goes out) and write the bytes only if
        `request_follows`: it marks every abbreviated item of the set dealt with.
        """
        out = []
        prior = 0
        for num in nums:
            out.append(pack_varint(num - prior))
            prior = num
        out.append(pack_byte(0))
        if ndx is not None:
            self._done.update((ndx, item.num) for item in self.sets[ndx] if item.abbreviated)
        return b"".join(out)

    def answer_reader(self, ndx: int | None, fname: bytes = b"") -> XattrAnswerReader:
        """A reader for the sender's answer to a request for the set at `ndx`."""
        return XattrAnswerReader(self, self.xattr_set(ndx), fname)

    def learn(self, item: XattrItem, value: bytes) -> None:
        """Remember the value of an abbreviated item (what the sender answered)."""
        self._learned[item.key] = value

    def resolve(
        self, ndx: int | None, local: Pairs | None
    ) -> tuple[tuple[tuple[bytes, bytes], ...], tuple[bytes, ...]]:
        """The (name, value) pairs rsync_xal_set gives the file, and the names it cannot.

        An abbreviated value comes from what was learned, else from `local` if its digest
        matches; a value found nowhere is reported missing (rsync: "Missing abbreviated
        xattr value") and left out.
        """
        have = dict(local or ())
        pairs: list[tuple[bytes, bytes]] = []
        missing: list[bytes] = []
        for item in self.xattr_set(ndx):
            value = item.value
            if value is None:
                value = self._learned.get(item.key)
            if value is None:
                candidate = have.get(item.name)
                if (
                    candidate is not None
                    and len(candidate) == item.length
                    and xattr_digest(candidate) == item.digest
                ):
                    value = candidate
            if value is None:
                missing.append(item.name)
            else:
                pairs.append((item.name, value))
        return tuple(sorted(pairs)), tuple(missing)


class XattrAnswerReader:
    """xattrs.c recv_xattr_request on the receiving side, one value per `read`.

    `read(cursor)` consumes one answered value and returns False, or the closing 0 and
    returns True. Each value is learned by the XattrReceiver when its item commits, so
    the reader can be fed a byte at a time and a partial value leaves no trace.
    """

    def __init__(self, owner: XattrReceiver, items: XattrSet, fname: bytes) -> None:
        self._owner = owner
        self._items = items
        self._fname = fname
        self._num = 0
        self._got: set[int] = set()

    def read(self, cur: Cursor) -> bool:
        rel = cur.varint()
        if rel == 0:
            return True
        num = self._num + rel
        item = _find(self._items, num, self._fname, "receiver")
        if not item.abbreviated or num in self._got:
            raise _abbrev_error(item, self._fname, "receiver")
        length = _size(cur.varint(), 0x7FFFFFFF, "xattr datum_len")
        if length > MAX_XATTR_VALUE_LEN:
            raise RemoteProtocolError("xattr datum_len exceeds per-value limit [receiver]")
        value = cur.take(length)

        def commit() -> None:
            self._num = num
            self._got.add(num)
            self._owner.learn(item, value)

        cur.on_commit(commit)
        return False


def _without_long_value(item: XattrItem) -> XattrItem:
    if not item.abbreviated:
        return item
    return XattrItem(item.name, item.length, None, item.digest, item.num)


# --- errors ----------------------------------------------------------------------------


def _find(items: XattrSet, num: int, fname: bytes, who: str) -> XattrItem:
    for item in items:
        if item.num == num:
            return item
    raise RemoteProtocolError(f"[{who}] could not find xattr #{num} for {_text(fname)}")


def _abbrev_error(item: XattrItem, fname: bytes, who: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"[{who}] internal abbrev error on {_text(fname)} ({_text(item.name)}, len={item.length})!"
    )


def _size(value: int, limit: int, what: str) -> int:
    """io.c read_varint_size: a non-negative size no larger than `limit`."""
    if value < 0 or value > limit:
        raise RemoteProtocolError(f"wire size {what} out of range: {value} > {limit} [receiver]")
    return value


def _out_of_range(what: str, value: int, high: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"wire value {what} out of range: {value} not in [0,{high}] [receiver]"
    )


def _text(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")
