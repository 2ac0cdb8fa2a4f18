"""The pack layer's local index: object id -> (pack, offset, length), on disk, O(1).

Theory of operation. The index is a hash table in a memory-mapped file (`slots`) with
linear probing, no wrap-around (a slack area at the end takes the last cluster), and
ids that are already uniform hashes (mixed once more, so even hand-made keys spread).
Slots are 44 bytes: id (32) | offset u32 | length u32 | packword u32, where packword =
pack number | kind << 28 (0: empty, all ones: deleted). Lookups are two `mmap.find`
calls in C: the first empty slot after the home slot bounds the probe run, then the id
is searched within that run (a match must be slot-aligned). No Python loop per slot.

Size: the table grows by 1.2x when more than 92% of slots are used, so it stays 77-92%
full: 48-57 bytes per object. At the default 64 KiB mean chunk, 1 TiB of unique data is
16.8M objects, i.e. 0.80-0.96 GB on disk (docs/STORE.md). Growth (and purging deleted
slots) rewrites the table into a new file in one streaming pass: the home slot is a
monotone function of the id, so the old table read in order, cut at empty slots and
sorted within each piece, is already in the new table's order, and positions follow
from a running maximum (numpy), in bounded memory. The new file replaces the old one
with a rename.

Packs are numbered in `packs` (fixed 64-byte records: name, size, time, count, flags),
so a slot needs 4 bytes for its pack. A pack name is registered once: `add_pack` of a
name already live returns its number, because two syncs from the bucket (threads of
one process, or two processes sharing the state dir) may both find the same new pack,
and a second record would look like an empty pack to gc, which would delete the pack
object the first record's entries still point into.

Crash safety. An entry is inserted only after its pack is uploaded, so the index never
points at data that is not in the bucket. A process crash loses nothing (the mapping's
pages live in the kernel); an insert writes the slot body before the packword, and an
interrupted one leaves at worst an unreachable slot. After an OS crash pages may be
torn, so the header records a dirty flag (with the boot id) that is cleared only after
`sync`; an index found dirty from an earlier boot reports `needs_rebuild` and the pack
layer rebuilds it from the bucket (pack trailers). Processes sharing a state directory
coordinate with `flock` on `lock` (shared for lookups, exclusive for changes); a rewrite
bumps a generation counter there so other processes reopen the new table.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

SLOT = np.dtype([("id", "V32"), ("offset", "<u4"), ("length", "<u4"), ("packword", "<u4")])
SLOT_SIZE = SLOT.itemsize
HEADER_SIZE = 4096
EMPTY_SLOT = bytes(SLOT_SIZE)
DELETED = 0xFFFFFFFF
PACK_BITS = 28
MAX_PACKS = (1 << PACK_BITS) - 1
MAX_LOAD = 0.92
GROWTH = 1.2
SLACK = 4096
MIN_CAPACITY = 1 << 12
_MIX = np.uint64(0x9E3779B97F4A7C15)
_HEADER = struct.Struct("<8sQQQQQ16s")
_MAGIC = b"RPIDX002"  # 002: homes mix both ends of the id
_PACK = struct.Struct("<32sQQII8x")  # name, size, created ns, count, flags
PACK_DELETED = 1
_GEN = struct.Struct("<8sQ")
_LOCATION = struct.Struct("<III")  # a slot after its id: offset, length, packword
_SLOT_BODY = struct.Struct("<32sII")  # id, offset, length: written before the packword
_PACKWORD = struct.Struct("<I")
_LIVE = struct.Struct("<Q")
_LIVE_AT = 16  # the header's live count (after magic and capacity)


class _Header(NamedTuple):
    magic: bytes
    capacity: int
    live: int
    deleted: int
    dirty: int
    spare: int
    boot: bytes


@dataclass(frozen=True, slots=True)
class PackInfo:
    """One pack as the index knows it."""

    number: int
    name: str
    size: int
    created_ns: int
    count: int
    deleted: bool


def _boot_id() -> bytes:
    """The current boot's id: tells a crash of the OS (pages may be torn) from a process crash."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text()
        return bytes.fromhex(text.strip().replace("-", ""))
    except (OSError, ValueError):
        return bytes(16)


def _homes(ids: np.ndarray, capacity: int) -> np.ndarray:
    """Home slots of `ids` (V32 array): fastrange of the mixed first and last 8 bytes.

    Real ids are uniform hashes already; mixing both ends spreads hand-made ids too
    (counters, zero-padded names), which would otherwise pile into one probe run.
    """
    words = np.frombuffer(ids.tobytes(), dtype=">u8").reshape(-1, 4)
    mixed = ((words[:, 0] ^ words[:, 3]).astype(np.uint64) * _MIX) >> np.uint64(32)
    return ((mixed * np.uint64(capacity)) >> np.uint64(32)).astype(np.int64)


def _home(ident: bytes, capacity: int) -> int:
    key = int.from_bytes(ident[:8]) ^ int.from_bytes(ident[24:32])
    mixed = ((key * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 32
    return (mixed * capacity) >> 32


class PackIndex:
    """The on-disk index of one state directory (see the module docstring); thread-safe."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self._mutex = threading.RLock()
        self._lock_fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._lock_fd).st_size < _GEN.size:
            os.write(self._lock_fd, _GEN.pack(_MAGIC, 0))
        self._gen_map = mmap.mmap(self._lock_fd, _GEN.size)
        self._generation = -1
        self._mm: mmap.mmap | None = None
        self._capacity = 0
        self._packs: list[PackInfo] = []
        self._live_by_name: dict[str, int] = {}  # pack name -> number, packs not deleted
        self.needs_rebuild = False
        with self._locked(exclusive=True):  # opening may already have asked for a rebuild
            self.needs_rebuild = self.needs_rebuild or self._dirty_from_earlier_boot()

    # -- locking and (re)opening ------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        with self._mutex:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                generation = _GEN.unpack_from(self._gen_map)[1]
                if generation != self._generation or self._mm is None:
                    self._open_files()
                    self._generation = generation
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _open_files(self) -> None:
        path = self.dir / "slots"
        if not path.exists():
            self._write_table(path, MIN_CAPACITY, [])
        if self._mm is not None:
            self._mm.close()
        with open(path, "r+b") as f:
            self._mm = mmap.mmap(f.fileno(), 0)
        magic, self._capacity = _HEADER.unpack_from(self._mm)[:2]
        if magic != _MAGIC or len(self._mm) != HEADER_SIZE + (self._capacity + SLACK) * SLOT_SIZE:
            self._mm.close()
            self._mm = None
            path.unlink()
            self._open_files()
            self.needs_rebuild = True
            return
        self._load_packs()

    def _load_packs(self, *, full: bool = True) -> None:
        """Read the pack table: all of it, or (full=False) only records appended since.

        Records are only ever appended, except for the deleted flag, whose change bumps
        the generation (so every process then reloads in full).
        """
        path = self.dir / "packs"
        if full:
            self._packs = []
            self._live_by_name = {}
        try:
            with open(path, "rb") as f:
                f.seek(len(self._packs) * _PACK.size)
                data = f.read()
        except FileNotFoundError:
            data = b""
        first = len(self._packs) + 1
        added = [
            PackInfo(first + i, name.hex(), size, created, count, bool(flags & PACK_DELETED))
            for i, (name, size, created, count, flags) in enumerate(
                _PACK.iter_unpack(data[: len(data) - len(data) % _PACK.size])
            )
        ]
        self._packs += added
        self._live_by_name.update((info.name, info.number) for info in added if not info.deleted)

    def _bump_generation(self) -> None:
        generation = _GEN.unpack_from(self._gen_map)[1] + 1
        _GEN.pack_into(self._gen_map, 0, _MAGIC, generation)
        self._generation = generation

    # -- header state ------------------------------------------------------------------------

    def _header(self) -> _Header:
        assert self._mm is not None
        return _Header(*_HEADER.unpack_from(self._mm))

    def _set_header(self, **changes: Any) -> None:
        assert self._mm is not None
        _HEADER.pack_into(self._mm, 0, *self._header()._replace(**changes))

    def _dirty_from_earlier_boot(self) -> bool:
        header = self._header()
        return bool(header.dirty) and header.boot != _boot_id()

    def _mark_dirty(self) -> None:
        """Flag the table as changing (persisted before the change itself)."""
        if not self._header().dirty:
            self._set_header(dirty=1, boot=_boot_id())
            assert self._mm is not None
            self._mm.flush(0, mmap.PAGESIZE)

    def sync(self) -> None:
        """Make every change durable, then mark the table clean."""
        with self._locked(exclusive=True):
            assert self._mm is not None
            if self._header().dirty:
                self._mm.flush()
                self._set_header(dirty=0)
                self._mm.flush(0, mmap.PAGESIZE)

    # -- lookups --------------------------------------------------------------------------

    def _probe_end(self, start: int) -> int:
        assert self._mm is not None
        pos = self._mm.find(EMPTY_SLOT, start)
        while pos != -1 and (pos - HEADER_SIZE) % SLOT_SIZE:
            pos = self._mm.find(EMPTY_SLOT, pos + 1)
        return pos if pos != -1 else len(self._mm)

    def _locate(self, kind: int, ident: bytes) -> int:
        """Byte position of the live slot for (kind, ident), or -1."""
        return self._probe(kind, ident)[0]

    def _probe(self, kind: int, ident: bytes) -> tuple[int, int]:
        """`_locate`'s answer, and the end of the probe run it searched.

        The end is the first empty slot after the home of `ident` (or the end of the
        table).
        """
        mm = self._mm
        assert mm is not None
        start = HEADER_SIZE + _home(ident, self._capacity) * SLOT_SIZE
        end = self._probe_end(start)
        pos = mm.find(ident, start, end)
        while pos != -1:
            if not (pos - HEADER_SIZE) % SLOT_SIZE:
                word = int.from_bytes(mm[pos + 40 : pos + 44], "little")
                if word not in (0, DELETED) and word >> PACK_BITS == kind:
                    return pos, end
            pos = mm.find(ident, pos + 1, end)
        return -1, end

    def lookup(self, kind: int, ident: bytes) -> tuple[int, int, int] | None:
        """(pack number, offset, length) of an object, or None."""
        return self.lookup_many([(kind, ident)])[0]

    def lookup_many(
        self, objects: Sequence[tuple[int, bytes]]
    ) -> list[tuple[int, int, int] | None]:
        """`lookup` of every (kind, id) of `objects`, under one lock (a run of blocks)."""
        found: list[tuple[int, int, int] | None] = []
        with self._locked(exclusive=False):
            mm = self._mm
            assert mm is not None
            for kind, ident in objects:
                pos = self._locate(kind, ident)
                if pos < 0:
                    found.append(None)
                    continue
                offset, length, word = _LOCATION.unpack_from(mm, pos + 32)
                found.append((word & MAX_PACKS, offset, length))
        return found

    # -- changes ----------------------------------------------------------------------------

    def insert(self, entries: list[tuple[int, bytes, int, int]], pack: int) -> None:
        """Record objects (kind, id, offset, length) as stored in `pack`."""
        with self._locked(exclusive=True):
            # grow first if the batch could take the table past MAX_LOAD: a pack of small
            # objects (16,384 of them) filled a young table to its slack, and every
            # probe run then crawled (40-110 us an entry instead of 5)
            header = self._header()
            if header.live + header.deleted + len(entries) > MAX_LOAD * header.capacity:
                needed = header.live + len(entries)
                self._rewrite(max(int(needed / MAX_LOAD * GROWTH), MIN_CAPACITY))
            for kind, ident, offset, length in entries:
                pos = self._slot_for(kind, ident)
                self._mark_dirty()
                mm = self._mm
                assert mm is not None
                _SLOT_BODY.pack_into(mm, pos, ident, offset, length)
                _PACKWORD.pack_into(mm, pos + 40, pack | kind << PACK_BITS)
            header = self._header()
            if header.live + header.deleted > MAX_LOAD * header.capacity:
                self._rewrite(max(int(header.live / MAX_LOAD * GROWTH), MIN_CAPACITY))

    def _slot_for(self, kind: int, ident: bytes) -> int:
        """Position of the live slot for (kind, ident), else of a free one now counted live.

        One probe serves both: the first empty slot after the home, which bounds the
        search, is where a new entry goes.
        """
        pos, end = self._probe(kind, ident)
        if pos >= 0:
            return pos
        if end >= len(self._mm):  # type: ignore[arg-type]
            end = self._free_slot(ident)  # grows the table
        mm = self._mm
        assert mm is not None
        (live,) = _LIVE.unpack_from(mm, _LIVE_AT)
        _LIVE.pack_into(mm, _LIVE_AT, live + 1)
        return end

    def _free_slot(self, ident: bytes) -> int:
        """Position of the first empty slot at or after the home of `ident`."""
        assert self._mm is not None
        pos = self._probe_end(HEADER_SIZE + _home(ident, self._capacity) * SLOT_SIZE)
        if pos >= len(self._mm):  # the slack is full: practically impossible below 92%
            self._rewrite(int(self._capacity * GROWTH))
            return self._free_slot(ident)
        return pos

    def delete(self, kind: int, ident: bytes) -> bool:
        """Forget an object; return whether it was indexed."""
        with self._locked(exclusive=True):
            pos = self._locate(kind, ident)
            if pos < 0:
                return False
            self._mark_dirty()
            assert self._mm is not None
            self._mm[pos + 40 : pos + 44] = struct.pack("<I", DELETED)
            header = self._header()
            self._set_header(live=header.live - 1, deleted=header.deleted + 1)
            if header.deleted + 1 > header.capacity // 4:
                self._rewrite(self._capacity)
            return True

    def clear(self) -> None:
        """Drop every entry and pack (before a rebuild from the bucket)."""
        with self._locked(exclusive=True):
            (self.dir / "packs").write_bytes(b"")
            self._write_table(self.dir / "slots.new", MIN_CAPACITY, [])
            os.replace(self.dir / "slots.new", self.dir / "slots")
            self._bump_generation()
            self._open_files()
            self.needs_rebuild = False

    # -- packs --------------------------------------------------------------------------

    def add_pack(self, name: str, size: int, created_ns: int, count: int) -> int:
        """Register an uploaded pack; return its number (its old one if already known)."""
        with self._locked(exclusive=True):
            self._load_packs(full=False)  # packs another process added since
            known = self._live_by_name.get(name)
            if known is not None:
                return known
            number = len(self._packs) + 1
            if number > MAX_PACKS:
                raise OverflowError("pack index full")
            record = _PACK.pack(bytes.fromhex(name), size, created_ns, count, 0)
            with open(self.dir / "packs", "ab") as f:
                f.write(record)
            self._packs.append(PackInfo(number, name, size, created_ns, count, False))
            self._live_by_name[name] = number
            return number

    def remove_pack(self, number: int) -> None:
        """Mark a pack deleted (its number is never reused)."""
        with self._locked(exclusive=True):
            with open(self.dir / "packs", "r+b") as f:
                f.seek((number - 1) * _PACK.size + 32 + 8 + 8 + 4)
                f.write(struct.pack("<I", PACK_DELETED))
            self._bump_generation()
            self._load_packs()

    def pack(self, number: int) -> PackInfo:
        """The pack numbered `number` (KeyError if the index has no such pack)."""
        with self._locked(exclusive=False):
            if number > len(self._packs):
                self._load_packs(full=False)
            if not 0 < number <= len(self._packs):
                raise KeyError(f"pack number {number} not in the index")
            return self._packs[number - 1]

    def packs(self) -> list[PackInfo]:
        """Every pack ever registered (deleted ones flagged)."""
        with self._locked(exclusive=False):
            self._load_packs(full=False)
            return list(self._packs)

    # -- bulk reads -----------------------------------------------------------------------

    def entries(self, chunk_slots: int = 1 << 18) -> Iterator[np.ndarray]:
        """Yield copies of the live slots (SLOT records), a piece at a time.

        The lock is held per piece, not across yields: entries changed while iterating
        may be missed or seen twice (callers such as gc tolerate that).
        """
        start = 0
        while True:
            with self._locked(exclusive=False):
                assert self._mm is not None
                total = self._capacity + SLACK
                if start >= total:
                    return
                count = min(chunk_slots, total - start)
                table = np.frombuffer(self._mm, SLOT, count, HEADER_SIZE + start * SLOT_SIZE)
                words = table["packword"]
                piece = table[(words != 0) & (words != DELETED)]
                del table, words  # no view of the mapping may outlive the lock
            start += count
            yield piece

    def count(self) -> int:
        """Number of live entries."""
        with self._locked(exclusive=False):
            return self._header().live

    # -- rewriting ------------------------------------------------------------------------

    def _rewrite(self, capacity: int) -> None:
        """Rebuild the table at `capacity` without deleted slots (streaming, see top)."""
        assert self._mm is not None
        new_path = self.dir / "slots.new"
        pieces = self._ordered_pieces()
        self._write_table(new_path, capacity, pieces)
        os.replace(new_path, self.dir / "slots")
        self._bump_generation()
        self._open_files()

    def _ordered_pieces(self) -> Iterator[np.ndarray]:
        """Live slots in home order: pieces cut at empty slots, each sorted by id head."""
        mm = self._mm
        assert mm is not None
        total = self._capacity + SLACK
        start = 0
        while start < total:
            end = min(start + (1 << 18), total)
            if end < total:
                end = (self._probe_end(HEADER_SIZE + end * SLOT_SIZE) - HEADER_SIZE) // SLOT_SIZE
                end = min(end, total)
            table = np.frombuffer(mm, SLOT, end - start, HEADER_SIZE + start * SLOT_SIZE)
            words = table["packword"]
            live = table[(words != 0) & (words != DELETED)]
            del table, words
            yield live[np.argsort(_homes(live["id"], 1 << 32), kind="stable")]
            start = end

    @staticmethod
    def _write_table(
        path: Path, capacity: int, pieces: Iterator[np.ndarray] | list[np.ndarray]
    ) -> None:
        """Write a table of `capacity` holding `pieces` (in home order), durably."""
        size = HEADER_SIZE + (capacity + SLACK) * SLOT_SIZE
        with open(path, "w+b") as f:
            f.truncate(size)
            mm = mmap.mmap(f.fileno(), size)
            try:
                table = np.frombuffer(mm, SLOT, capacity + SLACK, HEADER_SIZE)
                carry = 0
                live = 0
                for piece in pieces:
                    if not len(piece):
                        continue
                    homes = _homes(piece["id"], capacity)
                    steps = np.arange(len(piece), dtype=np.int64)
                    positions = np.maximum.accumulate(np.maximum(homes - steps, carry)) + steps
                    if positions[-1] >= capacity + SLACK - 1:
                        raise OverflowError("index slack exhausted")  # cannot happen below 92%
                    table[positions] = piece
                    carry = int(positions[-1]) + 1
                    live += len(piece)
                del table
                _HEADER.pack_into(mm, 0, _MAGIC, capacity, live, 0, 0, 0, _boot_id())
                mm.flush()
            finally:
                mm.close()
            os.fsync(f.fileno())

    def close(self) -> None:
        self.sync()
        with self._mutex:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            self._gen_map.close()
            os.close(self._lock_fd)
